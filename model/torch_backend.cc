// The LibTorch implementation of model::Backend: loads a model directory of any encoder family
// (model/encoder/families/), owns the encoder and one set of attention cores per
// EncodeSettings, and encodes packed batches.
//
// Long documents (over the trained positions) are encoded one at a time in one pass with the
// chosen position scheme (RoPE models: natively), or in windows for "chunk"; short ones are
// padded together.
// Late chunks (Batch::chunks) are means of the same pass's final hidden states; under "chunk"
// each chunk's come from the window, of overlapping ones, where it has the most context
// ("long late chunking", model/late_windows.h, docs/API.md).
// Settings come in two trust levels: the operator's (defaults, --attention_preset) are used as
// given; a request's options pass model/request_policy.h first.
// Thread-safety: Embed() runs on one thread (the batcher's), and batches it runs from a
// checkpoint run on that thread too; the cache of attention cores is touched only there.
// ValidateSettings() may run on any thread (its cache has its own lock).
#include "model/torch_backend.h"

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <torch/torch.h>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "common/process_memory.h"
#include "common/status_macros.h"
#include "model/attention/options.h"
#include "model/attention/registry.h"
#include "model/checkpoint.h"
#include "model/cuda_memory.h"
#include "model/device.h"
#include "model/encoder/config.h"
#include "model/encoder/encoder_model.h"
#include "model/encoder/packed_encoder.h"
#include "model/encoder/weight_files.h"
#include "model/encoder/pooling.h"
#include "model/encoder/sentence_transformers.h"
#include "model/late_windows.h"
#include "model/positions/positions.h"
#include "model/request_policy.h"

namespace longenc::model {
namespace {

using AttentionSet = std::vector<std::unique_ptr<attention::Attention>>;

// Attention-core sets kept besides the pinned ones (the default and the presets): requests may
// choose their own options, so the cache is bounded; least recently used goes first.
constexpr size_t kCachedCoreSets = 8;
// Validation results kept (requests repeat their settings); the cache is cleared when full.
constexpr size_t kCachedValidations = 1024;

// Whole-encoder cost per token of each efficient variant on long documents, relative to one
// token through the linear layers: exact attention's per-token cost at 16k tokens divided by
// the variant's measured speed-up over exact there (docs/BENCHMARKS.md). Rough on purpose: it
// ranks documents for admission and preemption; the batcher's throughput estimate absorbs
// the scale.
double EfficientCostPerToken(const std::string& variant) {
  if (variant == "clustered") return 1.7;
  if (variant == "iclustered") return 2.6;
  return 2.0;  // yoso, cast, and variants not measured yet
}

// Batches nested in a checkpoint must not reset the peak-memory mark of the batch they paused.
thread_local int embed_depth = 0;

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
  TorchBackend(ModelInfo info, std::unique_ptr<encoder::EncoderModel> model,
               torch::Device device, uint64_t seed,
               RequestPolicy policy, std::map<std::string, EncodeSettings> presets,
               int64_t max_exact_tokens)
      : info_(std::move(info)),
        model_(std::move(model)),
        device_(device),
        seed_(seed),
        policy_(std::move(policy)),
        presets_(std::move(presets)),
        max_exact_tokens_(max_exact_tokens) {
    if (device_.is_cpu()) {
      packed_ = encoder::PackedEncoder::Create(model_->module(), model_->config(), model_->position_table());
    }
  }

  const ModelInfo& info() const override { return info_; }

  // A request's settings: the request policy, then a core built from them (which checks the
  // name and every option; cheap: no N-sized state). Results are cached.
  absl::Status ValidateSettings(const EncodeSettings& settings) const override {
    const std::string key = absl::StrCat(SettingsKey(settings), "|", settings.position_mode);
    {
      absl::MutexLock lock(&validated_mu_);
      if (auto it = validated_.find(key); it != validated_.end()) return it->second;
    }
    absl::Status status = ValidateUncached(settings);
    absl::MutexLock lock(&validated_mu_);
    if (validated_.size() >= kCachedValidations) validated_.clear();
    validated_.emplace(key, status);
    return status;
  }

  double Cost(const EncodeSettings& settings, int64_t tokens) const override {
    const EncodeSettings s = Resolve(settings);
    const auto& c = model_->config();
    const double hidden = static_cast<double>(c.hidden_size);
    const double linear = 2.0 * (4.0 * hidden * hidden + 2.0 * hidden * c.intermediate_size);
    auto exact = [&](double length) { return 1.0 + 4.0 * hidden * length / linear; };
    const double n = static_cast<double>(tokens);
    if (absl::StartsWith(s.position_mode, "chunk") && tokens > info_.max_positions) {
      return n * exact(static_cast<double>(info_.max_positions));
    }
    double per_token = exact(n);
    if (s.attention != "full") per_token = std::min(per_token, EfficientCostPerToken(s.attention));
    return n * per_token;
  }

  int64_t MaxTokens(const EncodeSettings& settings) const override {
    const EncodeSettings s = Resolve(settings);
    if (s.attention == "full" && !absl::StartsWith(s.position_mode, "chunk")) {
      return std::min(info_.max_tokens_per_document, max_exact_tokens_);
    }
    return info_.max_tokens_per_document;
  }

  absl::StatusOr<BatchResult> Embed(const Batch& batch) override {
    ++embed_depth;
    struct Leave {
      ~Leave() { --embed_depth; }
    } leave;
    try {
      return EmbedOrThrow(batch);
    } catch (const StepStopped& stopped) {
      return stopped.status();
    } catch (const c10::Error& e) {
      return absl::InternalError(absl::StrCat("model failure: ", e.what_without_backtrace()));
    } catch (const std::exception& e) {
      return absl::InternalError(absl::StrCat("model failure: ", e.what()));
    }
  }

  // One short document; on an accelerator also one of a realistic length (min(2048, the
  // limit)) per operator setting, so the allocator, the BLAS handles, the attention kernels and
  // the head-group sizing are set up before the first request.
  absl::Status WarmUp() {
    Batch batch;
    std::vector<int32_t> ids(16, static_cast<int32_t>(info_.vocab_size - 1));
    batch.Add(ids);
    RETURN_IF_ERROR(Embed(batch).status());
    if (device_.is_cpu()) return absl::OkStatus();
    std::vector<EncodeSettings> all = {EncodeSettings{}};
    for (const auto& [name, preset] : presets_) all.push_back(EncodeSettings{name, "", ""});
    for (const EncodeSettings& settings : all) {
      Batch longer;
      longer.settings = settings;
      longer.Add(std::vector<int32_t>(std::min<int64_t>(2048, MaxTokens(settings)),
                                      static_cast<int32_t>(info_.vocab_size - 1)));
      RETURN_IF_ERROR(Embed(longer).status());
    }
    return absl::OkStatus();
  }

  // Builds and pins the cores of the operator's settings (the default and every preset), so
  // files they name are read once, here, and never on a request's path.
  absl::Status PinOperatorSettings() {
    std::vector<EncodeSettings> all = {EncodeSettings{}};
    for (const auto& [name, preset] : presets_) all.push_back(EncodeSettings{name, "", ""});
    for (const EncodeSettings& settings : all) {
      const EncodeSettings s = Resolve(settings);
      RETURN_IF_ERROR(positions::ParsePositionScheme(s.position_mode).status());
      RETURN_IF_ERROR(Cores(s).status());
      cores_[SettingsKey(s)].pinned = true;
    }
    return absl::OkStatus();
  }

 private:
  absl::Status ValidateUncached(const EncodeSettings& settings) const {
    const EncodeSettings s = Resolve(settings);
    RETURN_IF_ERROR(positions::ParsePositionScheme(s.position_mode).status());
    if (presets_.count(settings.attention) > 0) {
      // Its cores were built and pinned at start-up: nothing to build (or read) here.
      if (settings.attention_options.empty()) return absl::OkStatus();
      return absl::InvalidArgumentError(absl::StrCat(
          "attention_options: attention \"", settings.attention,
          "\" is an operator preset and takes no options; leave attention_options empty"));
    }
    if (!settings.attention.empty() || !settings.attention_options.empty()) {
      ASSIGN_OR_RETURN(const auto options,
                       attention::ParseAttentionOptions(settings.attention_options));
      const std::string variant =
          settings.attention.empty() ? info_.default_attention : settings.attention;
      if (!IsVariant(variant)) {  // the registry's error lists the variants
        return attention::Registry::Global().Create(variant, BaseSpec(0, torch::kCPU)).status();
      }
      RETURN_IF_ERROR(policy_.Check(variant, options));
    }
    return MakeCore(s, 0, torch::kCPU).status();
  }

  bool IsVariant(const std::string& name) const {
    const std::vector<std::string>& names = info_.attention_variants;
    return std::find(names.begin(), names.end(), name) != names.end();
  }

  // Presets and the server's defaults filled in; no checks (ValidateSettings did them).
  EncodeSettings Resolve(EncodeSettings s) const {
    if (auto it = presets_.find(s.attention); it != presets_.end()) {
      const std::string mode = s.position_mode;
      s = it->second;
      s.position_mode = mode;
    }
    if (s.attention.empty()) {
      s.attention = info_.default_attention;
      if (s.attention_options.empty()) s.attention_options = info_.default_attention_options;
    }
    if (s.position_mode.empty()) s.position_mode = info_.default_position_mode;
    return s;
  }

  attention::AttentionSpec BaseSpec(int64_t layer, torch::Device device) const {
    const auto& config = model_->config();
    attention::AttentionSpec spec;
    spec.layer = layer;
    spec.num_layers = config.num_hidden_layers;
    spec.num_heads = config.num_attention_heads;
    spec.head_dim = config.head_dim();
    spec.seed = seed_;
    spec.device = device;
    return spec;
  }

  absl::StatusOr<std::unique_ptr<attention::Attention>> MakeCore(const EncodeSettings& s,
                                                                 int64_t layer,
                                                                 torch::Device device) const {
    attention::AttentionSpec spec = BaseSpec(layer, device);
    ASSIGN_OR_RETURN(spec.options, attention::ParseAttentionOptions(s.attention_options));
    return attention::Registry::Global().Create(s.attention, spec);
  }

  // The cores of resolved settings `s`, one per layer; the caller holds the set while it runs
  // (a batch run from a checkpoint may evict it from the cache meanwhile).
  absl::StatusOr<std::shared_ptr<const AttentionSet>> Cores(const EncodeSettings& s) {
    const std::string key = SettingsKey(s);
    auto it = cores_.find(key);
    if (it == cores_.end()) {
      auto set = std::make_shared<AttentionSet>();
      for (int64_t layer = 0; layer < model_->config().num_hidden_layers; ++layer) {
        ASSIGN_OR_RETURN(auto core, MakeCore(s, layer, device_));
        set->push_back(std::move(core));
      }
      size_t unpinned = 0;
      for (const auto& [k, entry] : cores_) unpinned += entry.pinned ? 0 : 1;
      if (unpinned >= kCachedCoreSets) {
        auto oldest = cores_.end();
        for (auto e = cores_.begin(); e != cores_.end(); ++e) {
          if (!e->second.pinned && (oldest == cores_.end() || e->second.used < oldest->second.used)) {
            oldest = e;
          }
        }
        cores_.erase(oldest);
      }
      it = cores_.emplace(key, CoreEntry{std::move(set)}).first;
    }
    it->second.used = ++core_clock_;
    return it->second.set;
  }

  static std::vector<attention::Attention*> Raw(const AttentionSet& set) {
    std::vector<attention::Attention*> raw;
    for (const auto& core : set) raw.push_back(core.get());
    return raw;
  }

  absl::Status Validate(const Batch& batch) const {
    if (batch.size() < 0 || batch.offsets.empty() || batch.offsets.back() != static_cast<int64_t>(batch.token_ids.size()) ||
        batch.pooling.size() != static_cast<size_t>(batch.size()) ||
        batch.normalize.size() != static_cast<size_t>(batch.size()) ||
        batch.chunk_offsets.size() != batch.offsets.size() || batch.chunk_offsets.back() != batch.num_chunks()) {
      return absl::InvalidArgumentError("malformed batch: offsets, pooling, normalize and chunks disagree");
    }
    for (int64_t i = 0; i < batch.size(); ++i) {
      for (int64_t c = batch.chunk_offsets[i]; c < batch.chunk_offsets[i + 1]; ++c) {
        if (batch.chunks[c].begin < 0 || batch.chunks[c].begin >= batch.chunks[c].end ||
            batch.chunks[c].end > batch.length(i)) {
          return absl::InvalidArgumentError(absl::StrCat("sequence ", i, ": chunk [", batch.chunks[c].begin, ", ",
                                                         batch.chunks[c].end, ") is empty or outside it"));
        }
      }
    }
    const int64_t limit = MaxTokens(batch.settings);
    for (int64_t i = 0; i < batch.size(); ++i) {
      const int64_t n = batch.length(i);
      if (n < 1 || n > limit) {
        return absl::InvalidArgumentError(absl::StrCat("sequence ", i, " has ", n,
                                                       " tokens; accepted: 1 to ", limit));
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
    return InputsToDevice(ids, valid, device_);
  }

  // Last hidden states [B, N, Hd] of padded sequences, one-pass positions.
  torch::Tensor Forward(const torch::Tensor& ids, const torch::Tensor& valid,
                        const positions::PositionScheme& scheme,
                        const std::vector<attention::Attention*>& cores) {
    const int64_t n = ids.size(1);
    const int64_t table = info_.max_positions;
    const torch::Tensor learned = model_->position_table();  // undefined for RoPE models
    return model_->Forward(ids, valid,
                           learned.defined() ? positions::PositionEmbeddings(scheme, learned, n) : learned,
                           cores, positions::QueryScale(scheme, n, table));
  }

  // Late chunks of sequence `row` from `states` [N, Hd], its final hidden states from token
  // `first` on: sums over each chunk's tokens in [first, first + N) added into `chunk_sums`.
  static void AddChunkSums(const Batch& batch, int64_t row, const torch::Tensor& states,
                           int64_t first, torch::Tensor& chunk_sums) {
    const int64_t last = first + states.size(0);
    for (int64_t c = batch.chunk_offsets[row]; c < batch.chunk_offsets[row + 1]; ++c) {
      const int64_t begin = std::max(batch.chunks[c].begin, first);
      const int64_t end = std::min(batch.chunks[c].end, last);
      if (begin < end) chunk_sums[c] += states.slice(0, begin - first, end - first).sum(0, false, torch::kFloat);
    }
  }

  // One vector [Hd] from `states` [n, Hd], the hidden states of one document's n tokens,
  // pooled as `pooling` says.
  static torch::Tensor Pool(const torch::Tensor& states, Pooling pooling) {
    switch (pooling) {
      case Pooling::kCls:
        return states[0];
      case Pooling::kLastToken:
        return states[states.size(0) - 1];
      case Pooling::kMean:
        break;
    }
    return states.mean(0);
  }

  // Pooled (unnormalised) vector [Hd] of one long document encoded in windows of the
  // position table, each framed by the document's own first and last token: the tiling
  // windows give the document vector; each late chunk is pooled from the window where it has
  // the most context, windows shifted by half a window included (model/late_windows.h).
  torch::Tensor EncodeChunked(const Batch& batch, int64_t row, Pooling pooling,
                              const std::vector<attention::Attention*>& cores,
                              torch::Tensor& chunk_sums) {
    const int32_t* doc = batch.token_ids.data() + batch.offsets[row];
    const int64_t n = batch.length(row), first_chunk = batch.chunk_offsets[row];
    const std::vector<LateWindow> plan = PlanLateWindows(
        n, info_.max_positions - 2,
        absl::MakeConstSpan(batch.chunks).subspan(first_chunk, batch.chunk_offsets[row + 1] - first_chunk));
    Batch windows;
    for (const LateWindow& w : plan) {
      std::vector<int32_t> ids = {doc[0]};
      ids.insert(ids.end(), doc + w.begin, doc + w.end);
      ids.push_back(doc[n - 1]);
      windows.Add(ids);
    }
    const bool any_chunks = batch.chunk_offsets[row + 1] > first_chunk;
    const positions::PositionScheme scheme{positions::Mode::kChunk, false};
    torch::Tensor sum = torch::zeros({info_.embedding_dim}, torch::TensorOptions().device(device_));
    torch::Tensor cls, last_token;  // the first tiling window's first token, the last one's last
    double count = 0;
    for (int64_t begin = 0; begin < windows.size(); begin += kChunkWindowsPerForward) {
      AtCheckpoint();
      std::vector<int64_t> rows;
      for (int64_t w = begin; w < std::min(begin + kChunkWindowsPerForward, windows.size()); ++w) rows.push_back(w);
      auto [ids, valid] = Pad(windows, rows);
      torch::Tensor hidden = Forward(ids, valid, scheme, cores);
      for (size_t b = 0; b < rows.size(); ++b) {
        const LateWindow& w = plan[static_cast<size_t>(rows[b])];
        // Window position p holds document token w.begin - 1 + p.
        for (const LateSegment& s : w.segments) {
          chunk_sums[first_chunk + s.chunk] += hidden[b].slice(0, s.begin - w.begin + 1, s.end - w.begin + 1).sum(0);
        }
        if (!w.tiling) continue;
        const int64_t length = windows.length(rows[b]);
        if (w.begin == 1) cls = hidden[b][0];
        if (w.end == n - 1) last_token = hidden[b][length - 1];
        sum += hidden[b].slice(0, 0, length).sum(0);
        count += static_cast<double>(length);
      }
      if (pooling == Pooling::kCls && !any_chunks) break;
    }
    if (pooling == Pooling::kLastToken) return last_token;
    return pooling == Pooling::kCls ? cls : sum / count;
  }

  // Rows of `vectors` [R, Hd], L2-normalised where `normalize` says, as floats on the CPU.
  std::vector<float> Finish(const torch::Tensor& vectors, const std::vector<uint8_t>& normalize) const {
    torch::Tensor mask = torch::from_blob(const_cast<uint8_t*>(normalize.data()),
                                          {static_cast<int64_t>(normalize.size()), 1}, torch::kUInt8)
                             .to(torch::kBool);
    mask = ToDeviceAsync(mask, device_);
    torch::Tensor out = torch::where(mask, encoder::L2Normalize(vectors), vectors)
                            .to(torch::kCPU, torch::kFloat32).contiguous();
    return std::vector<float>(out.data_ptr<float>(), out.data_ptr<float>() + out.numel());
  }

  // Short documents under exact attention with its default options: one unpadded forward
  // (model/encoder/packed_encoder.h).
  void EmbedPacked(const Batch& batch, const std::vector<int64_t>& rows, torch::Tensor& pooled,
                   torch::Tensor& chunk_sums) const {
    std::vector<int64_t> ids, lengths;
    for (int64_t i : rows) {
      ids.insert(ids.end(), batch.token_ids.begin() + batch.offsets[i],
                 batch.token_ids.begin() + batch.offsets[i + 1]);
      lengths.push_back(batch.length(i));
    }
    const torch::Tensor hidden = packed_->Forward(torch::tensor(ids).to(device_), lengths);
    int64_t first = 0;
    for (size_t b = 0; b < rows.size(); ++b) {
      const int64_t i = rows[b], n = lengths[b];
      const torch::Tensor states = hidden.narrow(0, first, n);
      pooled[i] = Pool(states, batch.pooling[i]);
      AddChunkSums(batch, i, states, 0, chunk_sums);
      first += n;
    }
  }

  absl::StatusOr<BatchResult> EmbedOrThrow(const Batch& batch) {
    RETURN_IF_ERROR(Validate(batch));
    const EncodeSettings settings = Resolve(batch.settings);
    ASSIGN_OR_RETURN(const positions::PositionScheme scheme,
                     positions::ParsePositionScheme(settings.position_mode));
    if (scheme.mode == positions::Mode::kNative && model_->position_table().defined()) {
      for (int64_t i = 0; i < batch.size(); ++i) {
        if (batch.length(i) > info_.max_positions) {
          return absl::InvalidArgumentError(absl::StrCat(
              "sequence ", i, " has ", batch.length(i), " tokens, more than the model's ",
              info_.max_positions, " learned positions; position mode 'native' cannot encode it "
              "(chunk, grouped, recurrent and interpolate can)"));
        }
      }
    }
    ASSIGN_OR_RETURN(const std::shared_ptr<const AttentionSet> core_set, Cores(settings));
    const std::vector<attention::Attention*> cores = Raw(*core_set);

    c10::InferenceMode inference;
    const bool cpu = device_.is_cpu();
    if (embed_depth > 1) {
      // Nested in a paused batch: its peak mark stays (this batch's peak is within it).
    } else if (cpu) {
      ResetPeakResident();  // so the batch reports its own peak
    } else {
      ResetCudaPeakMemory(device_.index());
    }
    const int64_t dim = info_.embedding_dim;
    torch::Tensor pooled = torch::empty({batch.size(), dim}, torch::TensorOptions().device(device_));
    torch::Tensor chunk_sums = torch::zeros({batch.num_chunks(), dim}, pooled.options());

    // Documents within the position table share one padded forward.
    std::vector<int64_t> short_rows;
    for (int64_t i = 0; i < batch.size(); ++i) {
      if (batch.length(i) <= info_.max_positions) {
        short_rows.push_back(i);
      } else if (scheme.mode == positions::Mode::kChunk) {
        pooled[i] = EncodeChunked(batch, i, batch.pooling[i], cores, chunk_sums);
      } else {
        auto [ids, valid] = Pad(batch, {i});
        torch::Tensor hidden = Forward(ids, valid, scheme, cores);
        AddChunkSums(batch, i, hidden[0], 0, chunk_sums);
        pooled[i] = Pool(hidden[0].narrow(0, 0, batch.length(i)), batch.pooling[i]);
      }
    }
    if (!short_rows.empty() && packed_ != nullptr && settings.attention == "full" &&
        settings.attention_options.empty()) {
      EmbedPacked(batch, short_rows, pooled, chunk_sums);
    } else if (!short_rows.empty()) {
      auto [ids, valid] = Pad(batch, short_rows);
      torch::Tensor hidden = Forward(ids, valid, scheme, cores);
      for (size_t b = 0; b < short_rows.size(); ++b) {
        const int64_t i = short_rows[b];
        const torch::Tensor states = hidden[static_cast<int64_t>(b)].narrow(0, 0, batch.length(i));
        pooled[i] = Pool(states, batch.pooling[i]);
        AddChunkSums(batch, i, states, 0, chunk_sums);
      }
    }
    BatchResult result;
    result.dim = dim;
    result.embeddings = Finish(pooled, batch.normalize);
    if (batch.num_chunks() > 0) {
      std::vector<float> sizes;
      std::vector<uint8_t> normalize;
      for (int64_t i = 0; i < batch.size(); ++i) {
        for (int64_t c = batch.chunk_offsets[i]; c < batch.chunk_offsets[i + 1]; ++c) {
          sizes.push_back(static_cast<float>(batch.chunks[c].end - batch.chunks[c].begin));
          normalize.push_back(batch.normalize[i]);
        }
      }
      chunk_sums /= ToDeviceAsync(torch::tensor(sizes).unsqueeze(1), device_);
      result.chunk_embeddings = Finish(chunk_sums, normalize);
    }
    if (cpu) {
      absl::StatusOr<ProcessMemory> memory = ReadProcessMemory();
      result.peak_memory_bytes = memory.ok() ? memory->peak_resident_bytes : 0;
    } else {
      const CudaMemory memory = ReadCudaMemory(device_.index());
      result.peak_memory_bytes = memory.peak_allocated_bytes;
      result.device_allocated_bytes = memory.allocated_bytes;
      result.device_reserved_bytes = memory.reserved_bytes;
    }
    return result;
  }

  const ModelInfo info_;
  std::unique_ptr<encoder::EncoderModel> model_;
  std::unique_ptr<encoder::PackedEncoder> packed_;  // null: every batch takes the padded path
  const torch::Device device_;
  const uint64_t seed_;
  const RequestPolicy policy_;
  const std::map<std::string, EncodeSettings> presets_;  // by name; resolved, position mode empty
  const int64_t max_exact_tokens_;

  struct CoreEntry {
    std::shared_ptr<const AttentionSet> set;
    uint64_t used = 0;
    bool pinned = false;
  };
  std::map<std::string, CoreEntry> cores_;  // by SettingsKey; inference thread only
  uint64_t core_clock_ = 0;

  mutable absl::Mutex validated_mu_;
  mutable std::map<std::string, absl::Status> validated_ ABSL_GUARDED_BY(validated_mu_);
};

// --attention_preset: "NAME=variant:options;NAME=variant:options".
absl::StatusOr<std::map<std::string, EncodeSettings>> ParsePresets(const std::string& flag) {
  std::map<std::string, EncodeSettings> presets;
  const std::vector<std::string> variants = attention::Registry::Global().Names();
  for (absl::string_view item : absl::StrSplit(flag, ';', absl::SkipWhitespace())) {
    const std::vector<absl::string_view> kv = absl::StrSplit(item, absl::MaxSplits('=', 1));
    const std::vector<absl::string_view> spec =
        kv.size() == 2 ? absl::StrSplit(kv[1], absl::MaxSplits(':', 1))
                       : std::vector<absl::string_view>{};
    if (kv.size() != 2 || kv[0].empty() || spec.empty() || spec[0].empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--attention_preset: \"", item, "\": expected NAME=variant:options (several separated by ';')"));
    }
    const std::string name(kv[0]);
    if (std::find(variants.begin(), variants.end(), name) != variants.end() ||
        presets.count(name) > 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--attention_preset: the name \"", name, "\" is taken (a variant or another preset)"));
    }
    presets[name] = EncodeSettings{std::string(spec[0]), spec.size() > 1 ? std::string(spec[1]) : "", ""};
  }
  return presets;
}

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
    ASSIGN_OR_RETURN(const torch::ScalarType dtype, encoder::ParseModelDType(options.dtype, device));
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
    ASSIGN_OR_RETURN(encoder::EncoderConfig config, encoder::LoadEncoderConfig(dir + "/config.json"));
    RETURN_IF_ERROR(encoder::ApplyRopeScaling(options.rope_scaling, "--rope_scaling", &config));
    ASSIGN_OR_RETURN(const encoder::SentenceTransformerInfo st,
                     encoder::LoadSentenceTransformerInfo(dir));
    std::unique_ptr<encoder::EncoderModel> model;
    {
      ASSIGN_OR_RETURN(const encoder::WeightFiles weights, encoder::WeightFiles::Open(dir));
      ASSIGN_OR_RETURN(model, encoder::LoadEncoderModel(config, weights, dtype));
    }  // unmaps the weight files
    model->module().to(device);
    const bool rotary = config.positions == encoder::PositionKind::kRotary;

    ModelInfo info;
    info.model_name = BaseName(dir);
    info.version = LONGENC_VERSION;
    info.embedding_dim = config.hidden_size;
    info.max_positions = config.usable_positions();
    info.max_tokens_per_document = options.max_tokens_per_document;
    info.vocab_size = config.vocab_size;
    info.device = device.str();
    info.dtype = encoder::ModelDTypeName(dtype);
    info.attention_variants = attention::Registry::Global().Names();
    info.default_attention = options.attention;
    info.default_attention_options = options.attention_options;
    info.position_modes = positions::PositionSchemeNames();
    info.default_position_mode = !options.position_mode.empty() ? options.position_mode
                                 : rotary                        ? "native"
                                                                 : "grouped,logscale";
    info.family = config.model_type;
    info.default_pooling = st.pooling == encoder::PoolingMode::kCls         ? Pooling::kCls
                           : st.pooling == encoder::PoolingMode::kLastToken ? Pooling::kLastToken
                                                                            : Pooling::kMean;
    info.default_normalize = st.normalize;
    info.max_seq_length = st.max_seq_length;
    info.prompts = st.prompts;
    info.default_prompt_name = st.default_prompt_name;
    if (options.max_tokens_per_document < 1) {
      return absl::InvalidArgumentError("--max_tokens_per_document must be at least 1");
    }

    ASSIGN_OR_RETURN(RequestPolicy policy, RequestPolicy::Create(options.request_option_limits));
    ASSIGN_OR_RETURN(auto presets, ParsePresets(options.attention_presets));
    for (const auto& [name, preset] : presets) info.attention_presets.push_back(name);
    if (options.max_exact_tokens < 1) {
      return absl::InvalidArgumentError("--max_exact_tokens must be at least 1");
    }
    info.max_exact_tokens = std::min(options.max_exact_tokens, options.max_tokens_per_document);
    auto backend = std::make_unique<TorchBackend>(std::move(info), std::move(model), device,
                                                  options.seed, std::move(policy),
                                                  std::move(presets), options.max_exact_tokens);
    // The server's defaults and presets must be valid before anything is served.
    if (absl::Status s = backend->PinOperatorSettings(); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--attention/--attention_options/--position_mode/--attention_preset: ", s.message()));
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
