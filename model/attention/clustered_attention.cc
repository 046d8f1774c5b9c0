// Clustered attention ("clustered"; Vyas, Katharopoulos, Fleuret, NeurIPS 2020,
// arXiv 2007.04825; reference code idiap/fast-transformers).
//
// Queries are hashed with seeded random hyperplanes, grouped by Lloyd k-means in Hamming space,
// and every query receives the exact attention output of its cluster's centroid (mean query):
//   out_i = softmax(s · Qc_{c(i)} kᵀ + mask) v.
// Cost O(N·(D·bits + C·iterations + C·D)), memory O(C·N) per (batch, head).
//
// Options (defaults: docs/ATTENTION.md §2.4, official builder defaults):
//   clusters           int   default 100  C; plain clustered needs more clusters than
//                                         i-clustered for the same error (docs/ATTENTION.md §2.5)
//   bits               int   default 63   hash planes (1..63)
//   iterations         int   default 10   Lloyd rounds in Hamming space
//   refine             int   default 0    Lloyd rounds on the raw queries afterwards (L2; see
//                                         iclustered_attention.cc); 0 = the paper's algorithm
//   hash_bias          bool  default 1    random plane offsets (Hamming ~ L2 distance)
//   min_len_efficient  int   default 512  rows with fewer valid tokens run exact attention
//
// Deviations from the official code (docs/ATTENTION.md §2.2, all for determinism): planes are
// drawn once per (layer, head) from spec.seed, not per call; content-based initial centroids;
// deterministic vote ties and empty-cluster re-seeding; a row with ≤ C valid queries puts each
// in its own cluster. Limitations: every member of a cluster gets the same output row, so the
// approximation is coarse (use "iclustered" in a pretrained model); no causal masks.
#include "model/attention/clustering.h"
#include "model/attention/registry.h"

namespace longenc::attention {
namespace {

absl::StatusOr<std::unique_ptr<Attention>> CreateClustered(const AttentionSpec& spec) {
  internal::ClusteringOptions defaults;
  defaults.clusters = 100;
  return internal::CreateClusteredFamily("clustered", spec, defaults, /*improved=*/false);
}

}  // namespace

LONGENC_REGISTER_ATTENTION("clustered", CreateClustered);

}  // namespace longenc::attention
