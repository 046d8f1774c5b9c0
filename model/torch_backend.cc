// The LibTorch implementation of model::Backend: loads a BERT directory, owns the encoder
// and one set of attention cores per EncodeSettings, and encodes packed batches.
//
// Long documents (over the position table) are encoded one at a time in one pass with the
// chosen position scheme, or in windows for "chunk"; short ones are padded together.
// Thread-safety: Embed() runs on one thread (the batcher's); the cache of attention cores
// is touched only there. info() and ValidateSettings() read immutable state.
#include "model/torch_backend.h"

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <c10/cuda/CUDACachingAllocator.h>
#include <torch/torch.h>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/process_memory.h"
#include "common/status_macros.h"
#include "model/attention/options.h"
#include "model/attention/registry.h"
#include "model/encoder/bert.h"
#include "model/encoder/config.h"
#include "model/encoder/pooling.h"
#include "model/encoder/safetensors.h"
#include "model/encoder/weights.h"
#include "model/positions/positions.h"

namespace longenc::model {
namespace {

using AttentionSet = std::vector<std::unique_ptr<attention::Attention>>;

// Chunk mode encodes windows in groups so memory stays bounded for 100k-token documents.
constexpr int64_t kChunkWindowsPerForward = 16;

absl::StatusOr<torch::Device> ParseDevice(const std::string& text) {
  if (text == "cpu") return torch::Device(torch::kCPU);
  if (text == "cuda" || absl::StartsWith(text, "cuda:")) {
    int index = 0;
    if (text.size() > 5 && !absl::SimpleAtoi(text.substr(5), &index)) {
      return absl::InvalidArgumentError(absl::StrCat("--device=", text, ": expected cpu, cuda or cuda:N"));
    }
    if (!torch::cuda::is_available()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "--device=", text, ": CUDA is not available on this machine (no GPU or driver); use --device=cpu"));
    }
    if (index < 0 || index >= static_cast<int>(torch::cuda::device_count())) {
      return absl::FailedPreconditionError(absl::StrCat("--device=", text, ": this machine has ",
                                                        torch::cuda::device_count(), " CUDA device(s)"));
    }
    return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
  }
  return absl::InvalidArgumentError(absl::StrCat("--device=", text, ": expected cpu, cuda or cuda:N"));
}

std::string SettingsKey(const EncodeSettings& s) {
  return absl::StrCat(s.attention, "|", s.attention_options);
}

class TorchBackend final : public Backend {
 public:
  TorchBackend(ModelInfo info, encoder::BertModel model, torch::Device device, uint64_t seed)
      : info_(std::move(info)), model_(std::move(model)), device_(device), seed_(seed) {}

  const ModelInfo& info() const override { return info_; }

  absl::Status ValidateSettings(const EncodeSettings& settings) const override {
    const EncodeSettings s = Resolve(settings);
    RETURN_IF_ERROR(positions::ParsePositionScheme(s.position_mode).status());
    // Building a core checks the name and every option; it is cheap (no N-sized state).
    return MakeCore(s, 0, torch::kCPU).status();
  }

  absl::StatusOr<BatchResult> Embed(const Batch& batch) override {
    try {
      return EmbedOrThrow(batch);
    } catch (const c10::Error& e) {
      return absl::InternalError(absl::StrCat("model failure: ", e.what_without_backtrace()));
    } catch (const std::exception& e) {
      return absl::InternalError(absl::StrCat("model failure: ", e.what()));
    }
  }

  absl::Status WarmUp() {
    Batch batch;
    std::vector<int32_t> ids(16, static_cast<int32_t>(info_.vocab_size - 1));
    batch.Add(ids);
    return Embed(batch).status();
  }

 private:
  EncodeSettings Resolve(EncodeSettings s) const {
    if (s.attention.empty()) {
      s.attention = info_.default_attention;
      if (s.attention_options.empty()) s.attention_options = info_.default_attention_options;
    }
    if (s.position_mode.empty()) s.position_mode = info_.default_position_mode;
    return s;
  }

  absl::StatusOr<std::unique_ptr<attention::Attention>> MakeCore(const EncodeSettings& s,
                                                                 int64_t layer,
                                                                 torch::Device device) const {
    const auto& config = model_->config();
    attention::AttentionSpec spec;
    spec.layer = layer;
    spec.num_layers = config.num_hidden_layers;
    spec.num_heads = config.num_attention_heads;
    spec.head_dim = config.head_dim();
    spec.seed = seed_;
    spec.device = device;
    ASSIGN_OR_RETURN(spec.options, attention::ParseAttentionOptions(s.attention_options));
    return attention::Registry::Global().Create(s.attention, spec);
  }

  absl::StatusOr<std::vector<attention::Attention*>> Cores(const EncodeSettings& s) {
    const std::string key = SettingsKey(s);
    auto it = cores_.find(key);
    if (it == cores_.end()) {
      AttentionSet set;
      for (int64_t layer = 0; layer < model_->config().num_hidden_layers; ++layer) {
        ASSIGN_OR_RETURN(auto core, MakeCore(s, layer, device_));
        set.push_back(std::move(core));
      }
      it = cores_.emplace(key, std::move(set)).first;
    }
    std::vector<attention::Attention*> raw;
    for (auto& core : it->second) raw.push_back(core.get());
    return raw;
  }

  absl::Status Validate(const Batch& batch) const {
    if (batch.size() < 0 || batch.offsets.empty() || batch.offsets.back() != static_cast<int64_t>(batch.token_ids.size()) ||
        batch.pooling.size() != static_cast<size_t>(batch.size()) ||
        batch.normalize.size() != static_cast<size_t>(batch.size())) {
      return absl::InvalidArgumentError("malformed batch: offsets, pooling and normalize disagree");
    }
    for (int64_t i = 0; i < batch.size(); ++i) {
      const int64_t n = batch.length(i);
      if (n < 1 || n > info_.max_tokens_per_document) {
        return absl::InvalidArgumentError(absl::StrCat("sequence ", i, " has ", n,
                                                       " tokens; accepted: 1 to ",
                                                       info_.max_tokens_per_document));
      }
    }
    for (size_t j = 0; j < batch.token_ids.size(); ++j) {
      const int32_t id = batch.token_ids[j];
      if (id < 0 || id >= info_.vocab_size) {
        return absl::InvalidArgumentError(absl::StrCat("token id ", id, " is outside the vocabulary [0, ",
                                                       info_.vocab_size, ")"));
      }
    }
    return absl::OkStatus();
  }

  // Pads sequences `rows` of `batch` into ids [B, N] and key_valid [B, N] on the device.
  std::pair<torch::Tensor, torch::Tensor> Pad(const Batch& batch, const std::vector<int64_t>& rows) const {
    int64_t n = 0;
    for (int64_t r : rows) n = std::max(n, batch.length(r));
    torch::Tensor ids = torch::full({static_cast<int64_t>(rows.size()), n},
                                    model_->config().pad_token_id, torch::kLong);
    torch::Tensor valid = torch::zeros({static_cast<int64_t>(rows.size()), n}, torch::kBool);
    auto ids_a = ids.accessor<int64_t, 2>();
    auto valid_a = valid.accessor<bool, 2>();
    for (size_t b = 0; b < rows.size(); ++b) {
      const int64_t begin = batch.offsets[rows[b]];
      for (int64_t t = 0; t < batch.length(rows[b]); ++t) {
        ids_a[b][t] = batch.token_ids[begin + t];
        valid_a[b][t] = true;
      }
    }
    return {ids.to(device_), valid.to(device_)};
  }

  // Last hidden states [B, N, Hd] of padded sequences, one-pass positions.
  torch::Tensor Forward(const torch::Tensor& ids, const torch::Tensor& valid,
                        const positions::PositionScheme& scheme,
                        const std::vector<attention::Attention*>& cores) {
    const int64_t n = ids.size(1);
    const int64_t table = info_.max_positions;
    return model_->forward(ids, valid, positions::PositionEmbeddings(scheme, model_->position_table(), n),
                           cores, positions::QueryScale(scheme, n, table));
  }

  // Pooled (unnormalised) vector [Hd] of one long document encoded in windows of the
  // position table, each window framed by the document's own first and last token.
  torch::Tensor EncodeChunked(const Batch& batch, int64_t row, Pooling pooling,
                              const std::vector<attention::Attention*>& cores) {
    const int64_t window = info_.max_positions - 2;
    const int32_t* doc = batch.token_ids.data() + batch.offsets[row];
    const int64_t n = batch.length(row);
    const int32_t first = doc[0], last = doc[n - 1];
    Batch windows;
    for (int64_t begin = 1; begin < n - 1; begin += window) {
      const int64_t end = std::min(begin + window, n - 1);
      std::vector<int32_t> ids = {first};
      ids.insert(ids.end(), doc + begin, doc + end);
      ids.push_back(last);
      windows.Add(ids);
    }
    const positions::PositionScheme scheme{positions::Mode::kChunk, false};
    torch::Tensor sum = torch::zeros({info_.embedding_dim}, torch::TensorOptions().device(device_));
    double count = 0;
    for (int64_t begin = 0; begin < windows.size(); begin += kChunkWindowsPerForward) {
      std::vector<int64_t> rows;
      for (int64_t w = begin; w < std::min(begin + kChunkWindowsPerForward, windows.size()); ++w) rows.push_back(w);
      auto [ids, valid] = Pad(windows, rows);
      torch::Tensor hidden = Forward(ids, valid, scheme, cores);
      if (pooling == Pooling::kCls) return encoder::ClsPool(hidden)[0];  // first window's [CLS]
      sum += encoder::SumPool(hidden, valid).sum(0);
      count += valid.sum().item<double>();
    }
    return sum / count;
  }

  absl::StatusOr<BatchResult> EmbedOrThrow(const Batch& batch) {
    RETURN_IF_ERROR(Validate(batch));
    const EncodeSettings settings = Resolve(batch.settings);
    ASSIGN_OR_RETURN(const positions::PositionScheme scheme,
                     positions::ParsePositionScheme(settings.position_mode));
    ASSIGN_OR_RETURN(std::vector<attention::Attention*> cores, Cores(settings));

    c10::InferenceMode inference;
    const bool cpu = device_.is_cpu();
    if (cpu) {
      ResetPeakResident();  // so the batch reports its own peak
    } else {
      c10::cuda::CUDACachingAllocator::resetPeakStats(device_.index());
    }
    const int64_t dim = info_.embedding_dim;
    torch::Tensor pooled = torch::empty({batch.size(), dim}, torch::TensorOptions().device(device_));

    // Documents within the position table share one padded forward.
    std::vector<int64_t> short_rows;
    for (int64_t i = 0; i < batch.size(); ++i) {
      if (batch.length(i) <= info_.max_positions) {
        short_rows.push_back(i);
      } else if (scheme.mode == positions::Mode::kChunk) {
        pooled[i] = EncodeChunked(batch, i, batch.pooling[i], cores);
      } else {
        auto [ids, valid] = Pad(batch, {i});
        torch::Tensor hidden = Forward(ids, valid, scheme, cores);
        pooled[i] = batch.pooling[i] == Pooling::kCls ? encoder::ClsPool(hidden)[0]
                                                      : encoder::MeanPool(hidden, valid)[0];
      }
    }
    if (!short_rows.empty()) {
      auto [ids, valid] = Pad(batch, short_rows);
      torch::Tensor hidden = Forward(ids, valid, scheme, cores);
      torch::Tensor mean = encoder::MeanPool(hidden, valid);
      torch::Tensor cls = encoder::ClsPool(hidden);
      for (size_t b = 0; b < short_rows.size(); ++b) {
        const int64_t i = short_rows[b];
        pooled[i] = batch.pooling[i] == Pooling::kCls ? cls[b] : mean[b];
      }
    }
    torch::Tensor normalize =
        torch::from_blob(const_cast<uint8_t*>(batch.normalize.data()), {batch.size(), 1}, torch::kUInt8)
            .to(device_, torch::kBool);
    torch::Tensor out = torch::where(normalize, encoder::L2Normalize(pooled), pooled)
                            .to(torch::kCPU, torch::kFloat32).contiguous();

    BatchResult result;
    result.dim = dim;
    result.embeddings.assign(out.data_ptr<float>(), out.data_ptr<float>() + out.numel());
    if (cpu) {
      absl::StatusOr<ProcessMemory> memory = ReadProcessMemory();
      result.peak_memory_bytes = memory.ok() ? memory->peak_resident_bytes : 0;
    } else {
      // Index 0 of each stat array is the aggregate over pool types.
      const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device_.index());
      result.peak_memory_bytes = stats.allocated_bytes[0].peak;
      result.device_allocated_bytes = stats.allocated_bytes[0].current;
      result.device_reserved_bytes = stats.reserved_bytes[0].current;
    }
    return result;
  }

  const ModelInfo info_;
  encoder::BertModel model_;
  const torch::Device device_;
  const uint64_t seed_;
  std::map<std::string, AttentionSet> cores_;  // by SettingsKey; inference thread only
};

std::string BaseName(const std::string& dir) {
  std::string d = dir;
  while (d.size() > 1 && d.back() == '/') d.pop_back();
  const size_t slash = d.rfind('/');
  return slash == std::string::npos ? d : d.substr(slash + 1);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Backend>> CreateTorchBackend(const BackendOptions& options) {
  try {
    ASSIGN_OR_RETURN(const torch::Device device, ParseDevice(options.device));
    if (options.threads < 0) {
      return absl::InvalidArgumentError(absl::StrCat("--threads=", options.threads, ": must be >= 0"));
    }
    const int threads = options.threads > 0 ? options.threads
                                            : std::max(1u, std::thread::hardware_concurrency());
    at::set_num_threads(threads);
    try {
      at::set_num_interop_threads(1);  // one inference thread: no inter-op pool to oversubscribe
    } catch (const c10::Error&) {
      // Already set in this process (a second backend in tests); keep the first value.
    }

    const std::string dir = options.model_dir;
    ASSIGN_OR_RETURN(const encoder::EncoderConfig config,
                     encoder::LoadEncoderConfig(dir + "/config.json"));
    ASSIGN_OR_RETURN(const encoder::SafetensorsFile weights,
                     encoder::SafetensorsFile::Open(dir + "/model.safetensors"));
    encoder::BertModel model(config);
    RETURN_IF_ERROR(encoder::LoadWeights(weights, model));
    model->eval();
    model->to(device);

    ModelInfo info;
    info.model_name = BaseName(dir);
    info.version = LONGENC_VERSION;
    info.embedding_dim = config.hidden_size;
    info.max_positions = config.max_position_embeddings;
    info.max_tokens_per_document = options.max_tokens_per_document;
    info.vocab_size = config.vocab_size;
    info.device = device.str();
    info.dtype = "float32";
    info.attention_variants = attention::Registry::Global().Names();
    info.default_attention = options.attention;
    info.default_attention_options = options.attention_options;
    info.position_modes = positions::PositionSchemeNames();
    info.default_position_mode = options.position_mode.empty() ? "grouped,logscale" : options.position_mode;
    if (options.max_tokens_per_document < 1) {
      return absl::InvalidArgumentError("--max_tokens_per_document must be at least 1");
    }

    auto backend = std::make_unique<TorchBackend>(std::move(info), std::move(model), device, options.seed);
    EncodeSettings defaults;  // the server's defaults must be valid before anything is served
    if (absl::Status s = backend->ValidateSettings(defaults); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--attention/--attention_options/--position_mode: ", s.message()));
    }
    RETURN_IF_ERROR(backend->WarmUp());
    return std::unique_ptr<Backend>(std::move(backend));
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("loading ", options.model_dir, ": ", e.what_without_backtrace()));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("loading ", options.model_dir, ": ", e.what()));
  }
}

}  // namespace longenc::model
