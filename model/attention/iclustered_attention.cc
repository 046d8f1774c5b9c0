// Improved clustered attention ("iclustered"; Vyas, Katharopoulos, Fleuret, NeurIPS 2020,
// arXiv 2007.04825; reference code idiap/fast-transformers).
//
// Clustered attention (see clustered_attention.cc) plus, for every cluster, its centroid's
// top-k keys attended exactly by each member query: on those keys a query's weights are
// m̂_c · softmax(s · q_i k_topᵀ), where m̂_c is the centroid's attention mass on them; the other
// keys keep the centroid's weights. Rows still sum to 1, and per row the L1 error never
// exceeds plain clustered attention's (spec §2.1). Cost O(N·(D·bits + C·iterations + C·D +
// k·D)), memory O(C·N + N·k) per (batch, head).
//
// Options (defaults: spec §2.4 recommendation and official builder defaults):
//   clusters           int   default 25   C (the paper's pretrained-RoBERTa setting)
//   topk               int   default 32   keys per cluster attended exactly
//   bits               int   default 63   hash planes (1..63)
//   iterations         int   default 10   Lloyd rounds
//   hash_bias          bool  default 1    random plane offsets (Hamming ~ L2 distance)
//   min_len_efficient  int   default 512  rows with fewer valid tokens run exact attention
//
// Deviations from the official code: as clustered_attention.cc, plus top-k slots masked per
// (batch, head, cluster, slot) rather than by head 0 / cluster 0's pattern (P4), m̂ from
// log-sum-exps. With topk ≥ the valid length the result equals exact attention for any
// clustering (T1). Limitations: no causal masks.
#include "model/attention/clustering.h"
#include "model/attention/registry.h"

namespace longenc::attention {
namespace {

absl::StatusOr<std::unique_ptr<Attention>> CreateImprovedClustered(const AttentionSpec& spec) {
  internal::ClusteringOptions defaults;
  defaults.clusters = 25;
  defaults.topk = 32;
  return internal::CreateClusteredFamily("iclustered", spec, defaults, /*improved=*/true);
}

}  // namespace

LONGENC_REGISTER_ATTENTION("iclustered", CreateImprovedClustered);

}  // namespace longenc::attention
