// The encoder's architecture as read from a Hugging Face config.json: one typed description for
// every family (bert, xlm_roberta, nomic_bert, gte, modernbert), whichever config dialect wrote it
// (the hub's original keys or what transformers 5 writes). model/encoder/families/ holds one
// parser per family; this header is what the rest of the code sees.
//
// Torch-free so that it can be fuzzed and validated before any tensor is allocated.
#ifndef LONGENC_MODEL_ENCODER_CONFIG_H_
#define LONGENC_MODEL_ENCODER_CONFIG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace longenc::encoder {

enum class PositionKind { kLearned, kRotary };

// RoPE frequency schemes, as transformers names them in rope_parameters.rope_type.
enum class RopeType {
  kDefault,  // inv_freq_i = theta^(-2i/d)
  kLinear,   // inv_freq / factor (also GTE's static NTK, rewritten as transformers does)
  kDynamic,  // NTK: theta grows with the document length past original_max_positions
  kYarn,     // YaRN: per-frequency blend of interpolation and extrapolation, cos/sin scaled
};

struct RopeConfig {
  RopeType type = RopeType::kDefault;
  double theta = 10000.0;
  double factor = 1.0;                 // linear, dynamic, yarn
  int64_t original_max_positions = 0;  // dynamic, yarn: the trained length
  double attention_factor = 0.0;       // yarn: cos/sin scale; 0 = derived from factor
  double beta_fast = 32.0;             // yarn
  double beta_slow = 1.0;              // yarn
  bool truncate = true;                // yarn: integer correction range
  double fraction = 1.0;               // rotary dims = head_dim * fraction (rest pass through)
};

struct EncoderConfig {
  std::string model_type = "bert";  // the family's canonical name
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t intermediate_size = 0;
  // "gelu" (erf), "gelu_new"/"gelu_pytorch_tanh" (tanh), "relu", "silu"
  std::string hidden_act = "gelu";
  double layer_norm_eps = 1e-12;
  // Positions the model was trained for (usable ones: learned tables lose position_offset).
  int64_t max_position_embeddings = 512;
  int64_t type_vocab_size = 2;  // 0 = no token type table
  int64_t pad_token_id = 0;

  // Block layout. The defaults are BERT's.
  bool pre_norm = false;        // x + f(norm(x)) instead of norm(x + f(x))
  bool gated_mlp = false;       // out(act(in[:I]) * in[I:]) instead of out(act(in(x)))
  bool attention_bias = true;   // q, k, v and output projections
  bool mlp_in_bias = true;
  bool mlp_out_bias = true;
  bool norm_bias = true;
  bool final_norm = false;      // a norm after the last layer (pre-norm families)

  PositionKind positions = PositionKind::kLearned;
  int64_t position_offset = 0;  // learned: row of position 0 (RoBERTa: pad_token_id + 1)
  RopeConfig rope;              // rotary: global layers
  RopeConfig local_rope;        // rotary: local layers
  std::vector<bool> local_layers;  // per layer; empty = every layer global
  int64_t local_window = 0;        // local layers: query i sees key j iff |i - j| <= local_window

  int64_t head_dim() const { return hidden_size / num_attention_heads; }
  // Positions the model can encode in one pass without a position mode (the learned table's rows).
  int64_t usable_positions() const { return max_position_embeddings - position_offset; }
  bool is_local(int64_t layer) const {
    return layer < static_cast<int64_t>(local_layers.size()) && local_layers[layer];
  }
};

// Parses and validates config.json text; `source` names the file in errors. A key the code
// cannot honour is refused, naming the key.
absl::StatusOr<EncoderConfig> ParseEncoderConfig(const std::string& json_text,
                                                 const std::string& source);
// Overrides the RoPE scaling of a rotary model's global layers (local layers see only their
// window): "" keeps the config's, "none" turns it off, "linear:F", "dynamic:F" (NTK) and
// "yarn:F" scale past max_position_embeddings by F >= 1. InvalidArgument for learned-position
// models and bad specs; `flag` names the setting in errors.
absl::Status ApplyRopeScaling(const std::string& spec, const std::string& flag, EncoderConfig* config);

// Reads <path> and parses it.
absl::StatusOr<EncoderConfig> LoadEncoderConfig(const std::string& path);

}  // namespace longenc::encoder

#endif  // LONGENC_MODEL_ENCODER_CONFIG_H_
