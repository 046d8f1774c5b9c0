#include "model/calibrate/calibration.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "model/attention/attention_ops.h"

namespace longenc::calibrate {
namespace {

using attention::internal::CastSettings;
using torch::indexing::Slice;

constexpr uint64_t kKMeansStream = 0x6b6d65616e73;  // "kmeans"
// Elements of the largest per-head intermediates one backward may hold per head group: bounds
// calibration memory to a few hundred MB whatever the cluster settings.
constexpr int64_t kElementsPerHeadGroup = int64_t{1} << 23;

// An exact attention core that records its inputs and output (one forward = one document).
class Recorder final : public attention::Attention {
 public:
  explicit Recorder(LayerSamples* samples) : samples_(samples) {}
  torch::Tensor Forward(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                        const torch::Tensor& key_valid) override {
    // In float32 whatever the model's dtype, as every attention core computes.
    samples_->q.push_back(q.to(torch::kFloat).contiguous());
    samples_->k.push_back(k.to(torch::kFloat).contiguous());
    samples_->v.push_back(v.to(torch::kFloat).contiguous());
    samples_->valid.push_back(key_valid);
    torch::Tensor exact = attention::internal::ExactAttention(samples_->q.back(), samples_->k.back(),
                                                              samples_->v.back(), key_valid);
    samples_->exact.push_back(exact);
    return exact.to(q.scalar_type());
  }
  std::string_view name() const override { return "calibration-recorder"; }

 private:
  LayerSamples* samples_;
};

// Heads per CastAttend call so that one group's autograd state stays bounded.
int64_t HeadGroup(int64_t heads, int64_t n, const CastSettings& settings, int64_t clusters) {
  const int64_t kappa = std::min(settings.kappa, n);
  const int64_t per_head = clusters * kappa * (kappa + clusters) + 4 * n * clusters;
  return std::clamp<int64_t>(kElementsPerHeadGroup / std::max<int64_t>(1, per_head), 1, heads);
}

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

}  // namespace

std::vector<LayerSamples> CaptureLayers(encoder::BertModel& model,
                                        const std::vector<std::vector<int32_t>>& documents,
                                        const positions::PositionScheme& scheme) {
  torch::NoGradGuard no_grad;  // not InferenceMode: the recordings feed autograd later
  const auto& config = model->config();
  const auto device = model->position_table().device();
  std::vector<LayerSamples> layers(static_cast<size_t>(config.num_hidden_layers));
  std::vector<std::unique_ptr<attention::Attention>> recorders;
  std::vector<attention::Attention*> cores;
  for (LayerSamples& layer : layers) {
    recorders.push_back(std::make_unique<Recorder>(&layer));
    cores.push_back(recorders.back().get());
  }
  for (const std::vector<int32_t>& doc : documents) {
    const int64_t n = static_cast<int64_t>(doc.size());
    const torch::Tensor ids =
        torch::tensor(std::vector<int64_t>(doc.begin(), doc.end()), torch::kLong)
            .view({1, n})
            .to(device);
    const torch::Tensor valid = torch::ones({1, n}, torch::TensorOptions(torch::kBool).device(device));
    model->forward(ids, valid,
                   positions::PositionEmbeddings(scheme, model->position_table().to(torch::kFloat), n),
                   cores, positions::QueryScale(scheme, n, config.max_position_embeddings));
  }
  return layers;
}

torch::Tensor KMeans(const torch::Tensor& points, int64_t k, int64_t iterations, uint64_t seed) {
  torch::NoGradGuard no_grad;
  const int64_t heads = points.size(0), m = points.size(1);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  const torch::Tensor cpu = points.to(torch::kCPU, torch::kFloat).contiguous();
  torch::Tensor centroids = torch::empty({heads, k, points.size(2)}, cpu.options());
  // k-means++: each new centroid drawn with probability ∝ squared distance to the nearest one.
  for (int64_t h = 0; h < heads; ++h) {
    const torch::Tensor p = cpu[h];  // [M, D]
    torch::Tensor nearest = torch::full({m}, std::numeric_limits<float>::infinity(), cpu.options());
    torch::Tensor weights = torch::ones({m}, cpu.options());
    for (int64_t j = 0; j < k; ++j) {
      if (!(weights.sum().item<double>() > 0)) weights = torch::ones({m}, cpu.options());
      const int64_t pick = torch::multinomial(weights, 1, /*replacement=*/false, gen).item<int64_t>();
      centroids[h][j] = p[pick];
      nearest = torch::minimum(nearest, (p - p[pick]).pow(2).sum(-1));
      weights = nearest.clone();
    }
  }
  const torch::Tensor norms = cpu.pow(2).sum(-1, /*keepdim=*/true);  // [H, M, 1]
  for (int64_t it = 0; it < iterations; ++it) {
    const torch::Tensor dist = norms - 2 * torch::matmul(cpu, centroids.transpose(1, 2)) +
                               centroids.pow(2).sum(-1).unsqueeze(1);  // [H, M, k]
    const torch::Tensor assign = dist.argmin(-1);                      // [H, M]
    const torch::Tensor sums = torch::zeros_like(centroids).scatter_add_(
        1, assign.unsqueeze(-1).expand_as(cpu), cpu);
    const torch::Tensor counts = torch::zeros({heads, k}, cpu.options())
                                     .scatter_add_(1, assign, torch::ones({heads, m}, cpu.options()))
                                     .unsqueeze(-1);
    centroids = torch::where(counts.gt(0), sums / counts.clamp_min(1.0), centroids);
  }
  return centroids.to(points.device());
}

double RelativeError(const LayerSamples& samples, size_t begin, size_t end,
                     const torch::Tensor& surrogates, const CastSettings& settings,
                     bool backward) {
  std::unique_ptr<torch::NoGradGuard> no_grad;
  if (!backward) no_grad = std::make_unique<torch::NoGradGuard>();
  double denominator = 0;
  for (size_t d = begin; d < end; ++d) denominator += samples.exact[d].pow(2).sum().item<double>();
  denominator = std::max(denominator, 1e-30);
  double total = 0;
  for (size_t d = begin; d < end; ++d) {
    const torch::Tensor& q = samples.q[d];
    const int64_t heads = q.size(1);
    const int64_t group = HeadGroup(heads, q.size(2), settings, surrogates.size(1));
    for (int64_t h0 = 0; h0 < heads; h0 += group) {
      const Slice hs(h0, std::min(heads, h0 + group));
      const torch::Tensor out = attention::internal::CastAttend(
          q.index({Slice(), hs}), samples.k[d].index({Slice(), hs}),
          samples.v[d].index({Slice(), hs}), samples.valid[d], surrogates.index({hs}), settings);
      // Padded rows are zero on both sides, so the sum runs over valid rows only.
      const torch::Tensor error =
          (out - samples.exact[d].index({Slice(), hs})).pow(2).sum() / denominator;
      if (backward) error.backward();
      total += error.item<double>();
    }
  }
  return total;
}

absl::StatusOr<CalibrationResult> Calibrate(encoder::BertModel& model,
                                            const std::vector<std::vector<int32_t>>& documents,
                                            const CalibrationOptions& options,
                                            const std::function<void(const std::string&)>& progress) {
  const int64_t validation = std::max<int64_t>(0, options.validation_documents);
  if (static_cast<int64_t>(documents.size()) <= validation) {
    return absl::InvalidArgumentError(absl::StrCat(
        "calibration needs more documents than the ", validation,
        " held out for validation; got ", documents.size()));
  }
  for (const auto& doc : documents) {
    if (doc.size() < 2) return absl::InvalidArgumentError("a calibration document has < 2 tokens");
  }
  const size_t train = documents.size() - static_cast<size_t>(validation);
  const auto start = std::chrono::steady_clock::now();
  int64_t tokens = 0;
  for (const auto& doc : documents) tokens += static_cast<int64_t>(doc.size());
  progress(absl::StrFormat("capturing attention inputs: %d documents (%d for validation), %d tokens",
                           documents.size(), validation, tokens));
  std::vector<LayerSamples> layers = CaptureLayers(model, documents, options.positions);
  progress(absl::StrFormat("captured in %.1f s", Seconds(start)));

  const CastSettings& settings = options.cast;
  const int64_t clusters = settings.clusters;
  CalibrationResult result;
  const int64_t num_layers = static_cast<int64_t>(layers.size());
  for (int64_t layer = 0; layer < num_layers; ++layer) {
    const auto layer_start = std::chrono::steady_clock::now();
    LayerSamples samples = std::move(layers[layer]);
    // k-means of this layer's keys (training documents only), a seeded sample per head.
    std::vector<torch::Tensor> keys;
    for (size_t d = 0; d < train; ++d) keys.push_back(samples.k[d][0]);  // [H, N, D]
    torch::Tensor all_keys = torch::cat(keys, 1);                          // [H, M, D]
    const uint64_t seed = attention::internal::MixSeed(options.seed, layer, 0, kKMeansStream);
    if (all_keys.size(1) > options.kmeans_samples) {
      at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
      const torch::Tensor pick =
          torch::randperm(all_keys.size(1), gen, torch::kLong).index({Slice(0, options.kmeans_samples)});
      all_keys = all_keys.index_select(1, pick.to(all_keys.device()));
    }
    torch::Tensor surrogates = KMeans(all_keys, clusters, options.kmeans_iterations, seed + 1);
    surrogates.set_requires_grad(true);

    LayerReport report;
    report.layer = layer;
    report.train_initial = RelativeError(samples, 0, train, surrogates, settings, false);
    if (validation > 0) {
      report.validation_initial =
          RelativeError(samples, train, documents.size(), surrogates, settings, false);
    }
    progress(absl::StrFormat(
        "layer %d/%d: k-means init (%d surrogates/head from %d keys/head): relative error %.4f%s",
        layer + 1, num_layers, clusters, all_keys.size(1), report.train_initial,
        validation > 0 ? absl::StrFormat(" (validation %.4f)", report.validation_initial) : ""));

    // Adam on the surrogates only; the best iterate (lowest training error) is kept.
    torch::optim::Adam adam({surrogates}, torch::optim::AdamOptions(options.learning_rate));
    torch::Tensor best = surrogates.detach().clone();
    double best_error = report.train_initial;
    for (int64_t step = 1; step <= options.steps; ++step) {
      adam.zero_grad();
      const double error = RelativeError(samples, 0, train, surrogates, settings, true);
      if (error < best_error) {  // the error of the surrogates before this step's update
        best_error = error;
        best = surrogates.detach().clone();
      }
      adam.step();
      if (step == 1 || step % 5 == 0 || step == options.steps) {
        progress(absl::StrFormat("layer %d/%d step %d/%d: relative error %.4f (%.0f s)",
                                 layer + 1, num_layers, step, options.steps, error,
                                 Seconds(layer_start)));
      }
    }
    if (options.steps > 0) {
      const double last = RelativeError(samples, 0, train, surrogates, settings, false);
      if (last < best_error) {
        best_error = last;
        best = surrogates.detach().clone();
      }
    }
    report.train_final = best_error;
    if (validation > 0) {
      report.validation_final = RelativeError(samples, train, documents.size(), best, settings, false);
    }
    progress(absl::StrFormat(
        "layer %d/%d done: relative error %.4f -> %.4f%s in %.0f s", layer + 1, num_layers,
        report.train_initial, report.train_final,
        validation > 0 ? absl::StrFormat(", validation %.4f -> %.4f", report.validation_initial,
                                         report.validation_final)
                       : "",
        Seconds(layer_start)));
    result.surrogates.push_back(best);
    result.reports.push_back(report);
  }
  return result;
}

}  // namespace longenc::calibrate
