// The torch-free contract between the batcher and whatever runs the encoder.
//
// Plain C++ and absl only: server/ and server/batching/ hold a Backend& and never see
// LibTorch. The one concrete implementation (LibTorch) is created by CreateTorchBackend()
// in model/torch_backend.h, called only by the server's wiring and the offline encoder.
//
// Thread-safety: info(), ValidateSettings(), Cost() and MaxTokens() are thread-safe; Embed() is
// called from a single inference thread (the batcher), which owns the model. The batcher may
// call Embed() again from inside a checkpoint of a running Embed() (model/checkpoint.h), on
// the same thread: a short batch runs while a long one is paused.
#ifndef LONGENC_MODEL_BACKEND_H_
#define LONGENC_MODEL_BACKEND_H_

#include <cstdint>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace longenc::model {

// How a sequence's hidden states become one vector: mean over its tokens, its first token's
// state ([CLS]) or its last token's (sentence-transformers' lasttoken).
enum class Pooling { kMean, kCls, kLastToken };

// How a batch is encoded. Documents are batched together only when their settings are
// equal; empty fields mean "the server's default".
struct EncodeSettings {
  std::string attention;          // a variant ("full", "iclustered", ...) or an operator preset
  std::string attention_options;  // "key=value,key=value"; parsed by the variant
  std::string position_mode;      // how documents beyond the position table are encoded

  bool operator==(const EncodeSettings& o) const {
    return attention == o.attention && attention_options == o.attention_options &&
           position_mode == o.position_mode;
  }
  bool operator!=(const EncodeSettings& o) const { return !(*this == o); }
};

// Tokens [begin, end) of one sequence (special tokens included in the indexing).
struct TokenRange {
  int64_t begin = 0;
  int64_t end = 0;
  bool operator==(const TokenRange& o) const { return begin == o.begin && end == o.end; }
};

// A packed ("ragged") batch: sequences are concatenated; offsets has size() + 1 entries and
// sequence i is token_ids[offsets[i], offsets[i+1]). Sequences already carry their special
// tokens ([CLS] ... [SEP]) and fit the backend's limits (the caller truncates or rejects).
struct Batch {
  EncodeSettings settings;
  std::vector<int32_t> token_ids;
  std::vector<int64_t> offsets = {0};
  std::vector<Pooling> pooling;      // per sequence
  std::vector<uint8_t> normalize;    // per sequence; 1 = L2-normalise the pooled vector
  // Late chunks (model/chunking.h), ragged like the tokens: sequence i's are
  // chunks[chunk_offsets[i], chunk_offsets[i+1]), each within the sequence.
  std::vector<TokenRange> chunks;
  std::vector<int64_t> chunk_offsets = {0};

  int64_t size() const { return static_cast<int64_t>(offsets.size()) - 1; }
  int64_t length(int64_t i) const { return offsets[i + 1] - offsets[i]; }
  int64_t num_chunks() const { return static_cast<int64_t>(chunks.size()); }
  void Add(absl::Span<const int32_t> ids, Pooling p = Pooling::kMean, bool l2 = true,
           absl::Span<const TokenRange> seq_chunks = {}) {
    token_ids.insert(token_ids.end(), ids.begin(), ids.end());
    offsets.push_back(static_cast<int64_t>(token_ids.size()));
    pooling.push_back(p);
    normalize.push_back(l2 ? 1 : 0);
    chunks.insert(chunks.end(), seq_chunks.begin(), seq_chunks.end());
    chunk_offsets.push_back(static_cast<int64_t>(chunks.size()));
  }
};

// Row i is the embedding of sequence i; all rows have `dim` floats.
struct BatchResult {
  int64_t dim = 0;
  std::vector<float> embeddings;  // size() * dim, row-major
  // Row c is the vector of Batch::chunks[c]: the mean of its tokens' final hidden states,
  // normalised like its sequence; num_chunks() * dim.
  std::vector<float> chunk_embeddings;
  // Memory high-water mark while this batch ran (device allocator on CUDA, process RSS on
  // CPU), in bytes; 0 when unknown.
  int64_t peak_memory_bytes = 0;
  // The CUDA caching allocator after this batch; all 0 on CPU.
  int64_t device_allocated_bytes = 0;
  int64_t device_reserved_bytes = 0;
};

// What the model is and what it accepts; fixed after load.
struct ModelInfo {
  std::string model_name;
  std::string version;
  int64_t embedding_dim = 0;
  int64_t max_positions = 0;          // the model's position table size (512 for BERT)
  int64_t max_tokens_per_document = 0;  // what the backend accepts, special tokens included
  int64_t vocab_size = 0;
  std::string device;                 // "cpu", "cuda:0"
  std::string dtype;                  // the weights' and activations' dtype: --dtype's value
  std::vector<std::string> attention_variants;
  std::vector<std::string> attention_presets;  // operator presets (--attention_preset), by name
  int64_t max_exact_tokens = 0;       // the document limit of attention "full" (one pass)
  std::string default_attention;
  std::string default_attention_options;
  std::vector<std::string> position_modes;
  std::string default_position_mode;
  // The architecture family ("bert", "xlm_roberta", "nomic_bert", "gte", "modernbert").
  std::string family;
  // What the model directory's sentence-transformers files ask for (modules.json,
  // 1_Pooling/config.json, 2_Normalize, sentence_bert_config.json,
  // config_sentence_transformers.json); without them: mean, normalised, no limit, no prompts.
  Pooling default_pooling = Pooling::kMean;
  bool default_normalize = true;
  int64_t max_seq_length = 0;  // sentence_bert_config.json's limit; 0 = none given
  std::vector<std::pair<std::string, std::string>> prompts;  // name -> text prepended to inputs
  std::string default_prompt_name;                           // "" = no prompt by default
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const ModelInfo& info() const = 0;
  // InvalidArgument naming the problem if a request's `settings` name an unknown attention
  // variant, options a request may not set (model/request_policy.h), bad options or an unknown
  // position mode. Cheap enough to call per request (results are cached).
  virtual absl::Status ValidateSettings(const EncodeSettings& settings) const = 0;
  // What one document of `tokens` tokens costs to encode under `settings`, in tokens through
  // the linear layers (exact attention adds a quadratic term). Ranks work for admission and
  // preemption; the batcher measures the rate of these units.
  virtual double Cost(const EncodeSettings& settings, int64_t tokens) const {
    return static_cast<double>(tokens);
  }
  // The longest document `settings` accept, special tokens included (exact attention has its
  // own, lower limit).
  virtual int64_t MaxTokens(const EncodeSettings& settings) const {
    return info().max_tokens_per_document;
  }
  // Encodes every sequence of `batch`. Errors: InvalidArgument for bad input (ids out of
  // range, a sequence over the limit), Internal for a failure inside the model.
  virtual absl::StatusOr<BatchResult> Embed(const Batch& batch) = 0;
};

// Options of the LibTorch backend (flags map onto these one to one).
struct BackendOptions {
  std::string model_dir;             // config.json, model.safetensors (or shards), tokenizer
  std::string device = "cpu";        // "cpu", "cuda", "cuda:N"
  int threads = 0;                   // intra-op threads; 0 = all cores
  std::string dtype = "float32";     // float32, bfloat16, float16 (CUDA only)
  std::string attention = "full";    // default attention variant
  std::string attention_options;     // default options of that variant
  std::string position_mode = "";    // default long-document mode; "" = the backend's choice
  std::string rope_scaling;          // RoPE models: "", none, linear:F, dynamic:F, yarn:F
  int64_t max_tokens_per_document = 131072;
  int64_t max_exact_tokens = 16384;  // limit of attention "full" in one pass (quadratic cost)
  std::string attention_presets;     // "NAME=variant:options;..." (operator-trusted, may name files)
  std::string request_option_limits; // overrides of model/request_policy.h's table
  uint64_t seed = 0;                 // seeds every random quantity (hash planes, ...)
};

// The model directory used when none is given: $LONGENC_MODEL_DIR if set, else the
// all-MiniLM-L6-v2 exported at build time (LONGENC_DEFAULT_MODEL_DIR).
inline std::string DefaultModelDir() {
  const char* env = std::getenv("LONGENC_MODEL_DIR");
  if (env != nullptr && env[0] != '\0') return env;
  return LONGENC_DEFAULT_MODEL_DIR;
}

}  // namespace longenc::model

#endif  // LONGENC_MODEL_BACKEND_H_
