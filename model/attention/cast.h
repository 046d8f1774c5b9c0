// CAST pieces (Clustering self-Attention using Surrogate Tokens; van Engelenhoven,
// Strisciuglio, Talavera, arXiv 2402.04239): surrogate affinities, the two cluster assignments
// (Top-K and single-assignment Top-K) and the attention core of longenc's reconstruction
// "CAST-JS" (docs/ATTENTION.md §4.2). Exposed so tests can check coverage (T17), padding (T18),
// the N_c = 1 anchor (T16) and the mixing weights (T20), and so the calibration command
// (model/calibrate/) trains surrogates through the very function the variant runs (CastAttend)
// and reads and writes the same surrogate files.
//
// Ownership: functions only; tensors in, tensors out.
// Thread-safety: stateless; safe from any thread.
#ifndef LONGENC_MODEL_ATTENTION_CAST_H_
#define LONGENC_MODEL_ATTENTION_CAST_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "absl/status/statusor.h"
#include "model/attention/attention.h"
#include "model/attention/attention_ops.h"

namespace longenc::attention::internal {

// Cluster membership: slot s of cluster c holds token members[b, h, c, s] when
// slot_ok[b, h, c, s]; other slots hold an arbitrary index and must be ignored.
struct CastClusters {
  torch::Tensor members;  // [B, H, N_c, kappa] int64
  torch::Tensor slot_ok;  // [B, H, N_c, kappa] bool
};

// Top-K: each cluster takes the kappa tokens of highest affinity (a token may be in 0, 1 or
// several clusters). affinity: [B, H, N, N_c], -inf on padded tokens.
CastClusters CastTopK(const torch::Tensor& affinity, int64_t kappa);

// Single-assignment Top-K: each valid token in at most one cluster, each cluster at most kappa
// tokens. Defined as the greedy assignment over (token, cluster) pairs in descending affinity;
// computed by capacitated deferred acceptance (tokens propose to their best cluster not yet
// refused, clusters keep their kappa best proposers), which reaches the same matching when
// affinities have no ties, in rounds of sorts that run on any device. Stops when no token
// proposes or after `max_rounds`; tokens still unmatched then stay unclustered. Rounds after the
// last proposal change nothing, so stopping late gives the same result: `stop_lag` < 0 lets the
// device decide (at once on CPU, up to RoundStopper::kDefaultLag rounds late on an accelerator,
// which never waits for each round); > 0 stops exactly that many rounds late (tests).
CastClusters CastSingleAssignment(const torch::Tensor& affinity, int64_t kappa,
                                  int64_t max_rounds, int64_t stop_lag = -1);

enum class CastMix {
  kJoint,     // one softmax over [intra logits ; other clusters' summary logits] (CAST-JS)
  kAdditive,  // ½ intra softmax output + ½ summary softmax output (separately normalised)
};

// The CAST-JS core. surrogates: [H, N_c, D]. Returns [B, H, N, D], padded rows 0; a valid
// token in no cluster gets softmax(A_q[i, nonempty]) · R; a token in several clusters the mean
// of its per-cluster outputs. With `mixing` non-null (joint mix) also returns the mixing
// weights [B, H, N_c, kappa, kappa + N_c] of every slot (tests).
torch::Tensor CastCore(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                       const torch::Tensor& key_valid, const torch::Tensor& surrogates,
                       const CastClusters& clusters, CastMix mix,
                       torch::Tensor* mixing = nullptr);

// The options of the "cast" variant (documented in cast_attention.cc).
struct CastSettings {
  int64_t clusters = 64;
  int64_t kappa = 256;
  bool single_assignment = true;
  CastMix mix = CastMix::kJoint;
  int64_t min_len_efficient = kDefaultMinLenEfficient;
  std::string surrogates_file;  // empty: seeded N(0, 1) surrogates
};

// Parses the variant's options; InvalidArgument names the option (unknown keys rejected).
absl::StatusOr<CastSettings> ParseCastSettings(const std::map<std::string, std::string>& options);

// The efficient path of the variant for q, k, v [B, H, N, D] and surrogates [H, N_c, D]
// (any subset of heads): affinities, cluster assignment, CastCore. Differentiable with respect
// to `surrogates` (the assignment is piecewise constant in them and is computed without
// autograd), which is how calibration trains them.
torch::Tensor CastAttend(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                         const torch::Tensor& key_valid, const torch::Tensor& surrogates,
                         const CastSettings& settings);

// Cluster affinity A_g = s·q Sᵀ + s·k Sᵀ, -inf on padded tokens: [B, H, N, N_c].
torch::Tensor CastAffinity(const torch::Tensor& q, const torch::Tensor& k,
                           const torch::Tensor& key_valid, const torch::Tensor& surrogates);

// Surrogates of one layer from a safetensors file: tensor "layer.<layer>.surrogates", F32,
// shape [num_heads, clusters, head_dim], finite. The file must hold surrogates for exactly
// layers 0 … num_layers - 1 of the model, all with the same number of clusters (a file
// calibrated for another model is refused). InvalidArgument/NotFound naming file and tensor.
absl::StatusOr<torch::Tensor> LoadSurrogates(const std::string& path, int64_t layer,
                                             int64_t num_layers, int64_t num_heads,
                                             int64_t head_dim);

// The cast options a surrogate file was calibrated for (its "cast_options" metadata, as
// longenc-calibrate writes it); empty when the file has none. The variant uses them as
// defaults, so `surrogates=FILE` alone runs the calibrated settings.
absl::StatusOr<std::map<std::string, std::string>> SurrogateFileOptions(const std::string& path);

// Writes one [H, N_c, D] tensor per layer (layer i as SurrogateTensorName(i)), F32, with
// `metadata` (e.g. the settings they were calibrated for), atomically.
absl::Status SaveSurrogates(const std::string& path, const std::vector<torch::Tensor>& layers,
                            const std::map<std::string, std::string>& metadata = {});

// The tensor name LoadSurrogates reads for `layer`.
std::string SurrogateTensorName(int64_t layer);

}  // namespace longenc::attention::internal

#endif  // LONGENC_MODEL_ATTENTION_CAST_H_
