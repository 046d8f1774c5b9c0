// Improved clustered attention ("iclustered"; Vyas, Katharopoulos, Fleuret, NeurIPS 2020,
// arXiv 2007.04825; reference code idiap/fast-transformers).
//
// Clustered attention (see clustered_attention.cc) plus, for every cluster, its centroid's
// top-k keys attended exactly by each member query: on those keys a query's weights are
// m̂_c · softmax(s · q_i k_topᵀ), where m̂_c is the centroid's attention mass on them; the other
// keys keep the centroid's weights. Rows still sum to 1, and per row the L1 error never
// exceeds plain clustered attention's (docs/ATTENTION.md §2.1, T5). Cost
// O(N·(D·bits + C·iterations + C·D + k·D)), memory O(C·N + N·k) per (batch, head).
//
// Options (defaults chosen on real text, see below):
//   clusters           int   default 128  C (fixed, so a row's result never depends on the
//                                         length of its batch-mates; cost stays linear in N)
//   topk               int   default 256  keys per cluster attended exactly
//   bits               int   default 32   hash planes (1..63)
//   iterations         int   default 0    Hamming Lloyd rounds after the initial assignment
//   refine             int   default 2    Lloyd rounds on the raw queries (squared L2) after
//                                         the Hamming clustering
//   hash_bias          bool  default 1    random plane offsets (Hamming ~ L2 distance)
//   min_len_efficient  int   default 8192 rows with fewer valid tokens run exact attention,
//                                         which is faster than i-clustered below ~8k tokens
//                                         on CPU (docs/BENCHMARKS.md) and exact
//
// Why these defaults (document-embedding cosine to exact attention on linux-doc text,
// bench/quality/fidelity.py; docs/BENCHMARKS.md "i-clustered defaults"): the paper's
// pretrained-RoBERTa setting (25 clusters, top-32, Hamming k-means only) reaches only 0.96 /
// 0.92 / 0.91 at 512 / 2k / 8k tokens in all-MiniLM-L6-v2, whose heads are partly positional.
// Hamming k-means on 1-bit projections is a coarse proxy for the L2 distance that bounds the
// error (docs/ATTENTION.md §2.1); a few L2 Lloyd rounds on the queries themselves cost one
// centroid-attention-sized GEMM pair each and lift 64 clusters at 512 tokens from 0.988 to
// 0.995. After them the Hamming rounds barely matter (hash-rank initialisation plus one
// Hamming assignment is enough) and top-k matters again: at 2k, 128 clusters reach 0.9945
// with top-128 and 0.9977 with top-256, more than 256 clusters with top-128 (0.9970) at lower
// cost. Fidelity still falls with N at a fixed C (0.98 at 8k); 0.995 at every N would need
// C growing like N/8, i.e. quadratic cost.
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
  defaults.clusters = 128;
  defaults.topk = 256;
  defaults.bits = 32;
  defaults.iterations = 0;
  defaults.refine = 2;
  defaults.min_len_efficient = 8192;
  return internal::CreateClusteredFamily("iclustered", spec, defaults, /*improved=*/true);
}

}  // namespace

LONGENC_REGISTER_ATTENTION("iclustered", CreateImprovedClustered);

}  // namespace longenc::attention
