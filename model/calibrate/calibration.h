// Calibration of CAST surrogate tokens for a pretrained encoder (docs/ATTENTION.md §4.4):
// the exact model runs once over calibration documents and records, per layer, what its
// attention core received (q, k, v, padding) and returned; then, layer by layer, the surrogates
// are initialised by k-means of that layer's keys (per head) and distilled — Adam on the
// surrogates only, the pretrained weights untouched — to minimise the relative squared error
// between CAST attention (attention::internal::CastAttend, the function the "cast" variant
// runs) and exact attention on those recorded inputs.
//
// Ownership: CaptureLayers returns tensors it owns; Calibrate borrows the model.
// Thread-safety: none; run from one thread. Deterministic for a given seed and thread count.
#ifndef LONGENC_MODEL_CALIBRATE_CALIBRATION_H_
#define LONGENC_MODEL_CALIBRATE_CALIBRATION_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "absl/status/statusor.h"
#include "model/attention/cast.h"
#include "model/encoder/bert.h"
#include "model/positions/positions.h"

namespace longenc::calibrate {

struct CalibrationOptions {
  // What the surrogates are calibrated for (clusters, kappa, assignment, mix): the same
  // settings must be given to the "cast" variant that loads them.
  attention::internal::CastSettings cast;
  positions::PositionScheme positions{positions::Mode::kGrouped, /*log_scale=*/true};
  int64_t steps = 10;               // Adam steps per layer; 0 = k-means initialisation only
  double learning_rate = 0.05;
  int64_t kmeans_iterations = 25;
  int64_t kmeans_samples = 8192;    // keys per head sampled for k-means
  int64_t validation_documents = 1; // the last documents: reported, never trained on
  uint64_t seed = 0;
};

// What one layer's attention core saw and what exact attention returned, per document:
// q, k, v and exact [1, H, N, D], valid [1, N].
struct LayerSamples {
  std::vector<torch::Tensor> q, k, v, valid, exact;
};

// Runs the exact model over `documents` (token ids, [CLS] … [SEP], one forward each, no
// autograd) with one-pass positions `scheme`; returns one LayerSamples per layer.
std::vector<LayerSamples> CaptureLayers(encoder::BertModel& model,
                                        const std::vector<std::vector<int32_t>>& documents,
                                        const positions::PositionScheme& scheme);

// Seeded k-means per head: points [H, M, D] -> centroids [H, k, D] (k-means++ initialisation,
// then `iterations` Lloyd rounds; an emptied cluster keeps its centroid).
torch::Tensor KMeans(const torch::Tensor& points, int64_t k, int64_t iterations, uint64_t seed);

// Σ‖CAST − exact‖² / Σ‖exact‖² over the valid rows of documents [begin, end) of `samples`,
// computed head group by head group. With `backward`, gradients of that loss accumulate into
// surrogates.grad() (surrogates must require grad).
double RelativeError(const LayerSamples& samples, size_t begin, size_t end,
                     const torch::Tensor& surrogates,
                     const attention::internal::CastSettings& settings, bool backward);

struct LayerReport {
  int64_t layer = 0;
  double train_initial = 0, train_final = 0;           // relative error, training documents
  double validation_initial = -1, validation_final = -1;  // -1 without validation documents
};

struct CalibrationResult {
  std::vector<torch::Tensor> surrogates;  // per layer [H, N_c, D]
  std::vector<LayerReport> reports;
};

// Captures, then calibrates every layer. `progress` receives one line at a time.
// InvalidArgument for no documents or too few to keep a training document.
absl::StatusOr<CalibrationResult> Calibrate(encoder::BertModel& model,
                                            const std::vector<std::vector<int32_t>>& documents,
                                            const CalibrationOptions& options,
                                            const std::function<void(const std::string&)>& progress);

}  // namespace longenc::calibrate

#endif  // LONGENC_MODEL_CALIBRATE_CALIBRATION_H_
