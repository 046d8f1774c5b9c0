// CAST attention ("cast"; van Engelenhoven, Strisciuglio, Talavera, "CAST: Clustering
// Self-Attention using Surrogate Tokens for Efficient Transformers", arXiv 2402.04239, Pattern
// Recognition Letters 2024). No official code was found; this is longenc's reconstruction
// "CAST-JS" (docs/ATTENTION.md §4.2), per head:
//   A_q = s·Q Sᵀ, A_k = s·K Sᵀ, A_g = A_q + A_k (padded tokens -inf)      S: surrogates [N_c, D]
//   clusters of at most kappa tokens from A_g (single-assignment Top-K by default)
//   summaries R_c = Σ_{j∈c} softmax_j(A_k[j, c]) v_j
//   token i in cluster c: one softmax over [s·q_i·k_j, j ∈ c] ⊕ [A_q[i, c'], c' ≠ c non-empty],
//   output = Σ p_j v_j + Σ p_c' R_c'; tokens in no cluster: softmax(A_q[i, ·]) · R.
// Cost O(N·N_c·D + N_c·kappa²·D); memory O(N·N_c + N_c·kappa²) per (batch, head) — linear in N
// for fixed N_c and kappa (tokens beyond N_c·kappa are summarised, not clustered).
//
// Options:
//   clusters           int     default 64    N_c surrogate tokens per head (ignored when a
//                                            surrogates file gives them)
//   kappa              int     default 256   tokens per cluster; N_c·kappa = 16384 tokens are
//                                            clustered, the rest only see summaries
//   assignment         string  default sa    sa (single assignment, full coverage when
//                                            N_c·kappa ≥ N) | topk (a token in 0..N_c clusters)
//   mix                string  default joint joint (one softmax, exact anchor T16) | additive
//                                            (½ intra + ½ summaries, separately normalised)
//   surrogates         path    default none  safetensors file with tensors
//                                            "layer.<L>.surrogates" F32 [H, N_c, D], one per
//                                            layer (written by longenc-calibrate, which trains
//                                            them through CastAttend for given kappa/assignment/
//                                            mix, recorded in the file's "cast_options" metadata
//                                            and used here unless given); without it surrogates
//                                            are seeded N(0, 1) per (layer, head) — a
//                                            placeholder that approximates a pretrained model
//                                            poorly
//   min_len_efficient  int     default 512   rows with fewer valid tokens run exact attention
//
// Open choices of the reconstruction (docs/ATTENTION.md §4.2): A_g as a sum, joint-softmax
// mixing, own summary excluded, multi-membership averaged, s scales the surrogate affinities.
// Limitations: no causal or arbitrary masks; a training-free drop-in needs calibrated
// surrogates (docs/ATTENTION.md §4.4).
#include <algorithm>
#include <map>
#include <memory>
#include <string>

#include "model/attention/attention_ops.h"
#include "model/attention/cast.h"
#include "model/attention/registry.h"

namespace longenc::attention {
namespace {

using torch::indexing::Slice;

constexpr uint64_t kSurrogateStream = 0x63617374;  // "cast"

class CastAttention final : public Attention {
 public:
  CastAttention(const internal::CastSettings& settings, torch::Tensor surrogates)
      : settings_(settings), surrogates_(std::move(surrogates)) {}

  torch::Tensor Forward(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                        const torch::Tensor& key_valid) override {
    return internal::DispatchByLength(
        q, k, v, key_valid, settings_.min_len_efficient,
        [this](const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
               const torch::Tensor& valid) {
          const torch::Tensor& surrogates = internal::StateOn(surrogates_, q.device());
          // Heads are independent: run them in groups to bound the per-call memory. On an
          // accelerator a document's κ×κ blocks are not trimmed to its clusters' fill (that
          // would read the fill on the host), so the groups are sized for them too: about four
          // [N_c, κ, κ + N_c] fp32 tensors per head, spread over the group's tokens.
          const int64_t n = q.size(2), nc = surrogates.size(1);
          const int64_t kappa = std::min(settings_.kappa, n);
          const int64_t block_bytes = 4 * nc * kappa * (kappa + nc) * 4;
          return internal::RunInHeadGroups(
              q.size(0), q.size(1), n,
              [&](const Slice& hs) {
                return internal::CastAttend(q.index({Slice(), hs}), k.index({Slice(), hs}),
                                            v.index({Slice(), hs}), valid,
                                            surrogates.index({hs}), settings_);
              },
              internal::TokensPerHeadGroup(
                  q.device(), internal::kGroupBytesPerTokenHead +
                                  block_bytes / std::max<int64_t>(1, q.size(0) * n)));
        });
  }
  std::string_view name() const override { return "cast"; }

 private:
  internal::CastSettings settings_;
  torch::Tensor surrogates_;  // [H, N_c, D]
};

absl::StatusOr<std::unique_ptr<Attention>> CreateCast(const AttentionSpec& spec) {
  ASSIGN_OR_RETURN(internal::CastSettings settings, internal::ParseCastSettings(spec.options));
  if (!settings.surrogates_file.empty()) {
    // The settings the file was calibrated for are the defaults; given options override them.
    using OptionMap = std::map<std::string, std::string>;
    ASSIGN_OR_RETURN(OptionMap merged, internal::SurrogateFileOptions(settings.surrogates_file));
    for (const auto& [key, value] : spec.options) merged[key] = value;
    ASSIGN_OR_RETURN(settings, internal::ParseCastSettings(merged));
  }
  torch::Tensor surrogates;
  if (!settings.surrogates_file.empty()) {
    ASSIGN_OR_RETURN(surrogates,
                     internal::LoadSurrogates(settings.surrogates_file, spec.layer,
                                              spec.num_layers, spec.num_heads, spec.head_dim));
    surrogates = surrogates.to(spec.device);
  } else {
    surrogates = internal::SeededNormal(spec, kSurrogateStream, {settings.clusters, spec.head_dim});
  }
  return std::unique_ptr<Attention>(std::make_unique<CastAttention>(settings, surrogates));
}

}  // namespace

LONGENC_REGISTER_ATTENTION("cast", CreateCast);

}  // namespace longenc::attention
