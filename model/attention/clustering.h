// Clustered and improved clustered attention (Vyas, Katharopoulos, Fleuret, NeurIPS 2020,
// arXiv 2007.04825): the shared pieces behind the "clustered" and "iclustered" variants —
// seeded hash planes, Hamming-space Lloyd k-means, and the two attention cores. The cores take
// the cluster assignment as an argument so tests can inject one (docs/ATTENTION.md T2) and can
// read the effective attention weights (T5, T8).
//
// Ownership: functions only; tensors in, tensors out.
// Thread-safety: stateless; safe from any thread.
#ifndef LONGENC_MODEL_ATTENTION_CLUSTERING_H_
#define LONGENC_MODEL_ATTENTION_CLUSTERING_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include <torch/torch.h>

#include "absl/status/statusor.h"
#include "model/attention/attention.h"
#include "model/attention/options.h"

namespace longenc::attention::internal {

struct ClusteringOptions {
  int64_t clusters = 25;    // C
  int64_t bits = 63;        // hash planes; ≤ 63 (P10)
  int64_t iterations = 10;  // Hamming Lloyd rounds (assign + update), then one final assignment
  int64_t refine = 0;       // Euclidean Lloyd rounds on the raw queries after the Hamming ones
  bool hash_bias = true;    // random plane offsets: Hamming distance tracks L2, not cosine
  int64_t topk = 32;        // i-clustered only: keys per cluster attended exactly
  int64_t min_len_efficient = 512;
};

// Reads clusters, bits, iterations, refine, hash_bias, min_len_efficient (and topk when with_topk)
// with `defaults`; the caller calls reader.Finish().
absl::StatusOr<ClusteringOptions> ReadClusteringOptions(OptionReader& reader,
                                                        const ClusteringOptions& defaults,
                                                        bool with_topk);

// Mean of each cluster's members, [B, H, C, D], and the member counts [B, H, C] (the division
// clamps them to 1, P5), for x [B, H, N, D] and ids [B, H, N] in [0, C] (C: padding, left out).
// The sums have a fixed order on every device: index_add_ on CPU (sequential there, and cheaper:
// i-clustered at 16k tokens 9.78 -> 9.06 s per document, commit dac23a1), a one-hot
// GEMM elsewhere (index_add_ is atomic on CUDA) or with `one_hot` (tests).
std::pair<torch::Tensor, torch::Tensor> ClusterMeans(const torch::Tensor& x,
                                                     const torch::Tensor& assign,
                                                     int64_t clusters, bool one_hot = false);

// Hash planes [H, bits, D + 1] (last column = offset, zero without hash_bias), drawn from
// spec.seed per (layer, head).
torch::Tensor MakeHashPlanes(const AttentionSpec& spec, const ClusteringOptions& options);

// Hash bits of x [B, H, N, D] as {0, 1} floats [B, H, N, bits]:
// bit b = [x · planes[h, b, :D] > planes[h, b, D]].
torch::Tensor HashBits(const torch::Tensor& x, const torch::Tensor& planes);

// How HammingClusters multiplies centroid and query bits. Both give the same exact integers;
// kAuto takes int8 GEMMs on CPU (VNNI; one clustered layer of 16k tokens 0.64 -> 0.53 s,
// commit 91bc984) and fp32 elsewhere (int8 GEMMs on CUDA have shape rules). Tests
// force each.
enum class BitProduct { kAuto, kFloat, kInt8 };

// Lloyd k-means in Hamming space per (b, h) over valid queries. Returns [B, H, N] int64
// cluster ids in [0, C) for valid queries and C for padded ones. Deterministic and
// content-based (docs/ATTENTION.md §2.2, differences from the reference code): initial
// centroids are the queries at evenly spaced ranks of the hash value; Hamming distances come
// from the GEMM identity |x| + |μ| − 2⟨x, μ⟩ (exact in fp32); ties go to the lowest cluster
// id, vote ties to bit 0; an empty cluster is re-seeded with the valid query farthest from its
// centroid. When a row has at most C valid queries each gets its own cluster (so clustering is
// exact). `product` says how centroid and query bits are multiplied (BitProduct, above).
torch::Tensor HammingClusters(const torch::Tensor& bits, const torch::Tensor& key_valid,
                              int64_t clusters, int64_t iterations,
                              BitProduct product = BitProduct::kAuto);

// Lloyd k-means rounds on the queries themselves (squared L2 distance), starting from `assign`
// (ids as returned by HammingClusters): centroid = mean of the valid members, each valid
// query moves to its nearest non-empty centroid (ties to the lowest id). The Hamming clusters
// only approximate L2 neighbourhoods through 1-bit projections; these rounds minimise the
// quantity that bounds the attention error (docs/ATTENTION.md §2.1) directly, at the cost of one
// centroid-attention-sized GEMM pair per round. Rows with at most C valid queries keep their
// one-query clusters. rounds = 0 returns `assign`.
torch::Tensor RefineClusters(const torch::Tensor& q, const torch::Tensor& key_valid,
                             const torch::Tensor& assign, int64_t clusters, int64_t rounds);

// Clustered attention for a given assignment [B, H, N] (ids as returned above; C = padded):
// every valid query gets softmax(s · mean(q of its cluster) kᵀ + mask) v; padded rows are 0.
// With `weights` non-null also returns the effective attention [B, H, N, N] (tests only).
torch::Tensor ClusteredCore(const torch::Tensor& q, const torch::Tensor& k,
                            const torch::Tensor& v, const torch::Tensor& key_valid,
                            const torch::Tensor& assign, int64_t clusters,
                            torch::Tensor* weights = nullptr);

// Improved clustered attention for a given assignment: the top-k keys of each centroid are
// re-attended exactly per query and share the centroid's probability mass on them; the other
// keys keep the centroid's weights. Top-k slots are masked per (b, h, cluster, slot) (P4),
// cluster counts are clamped (P5). Memory O(C·N + N·k); per-query gathers run in query
// blocks. With `weights` non-null also returns the effective attention [B, H, N, N] (tests).
torch::Tensor ImprovedClusteredCore(const torch::Tensor& q, const torch::Tensor& k,
                                    const torch::Tensor& v, const torch::Tensor& key_valid,
                                    const torch::Tensor& assign, int64_t clusters, int64_t topk,
                                    torch::Tensor* weights = nullptr);

// The Attention behind both "clustered" and "iclustered" (they differ only in the core and
// their option defaults). Holds the hash planes; moves them to the input's device on first use.
class ClusteredFamilyAttention final : public Attention {
 public:
  ClusteredFamilyAttention(std::string name, const ClusteringOptions& options, bool improved,
                           torch::Tensor planes);
  torch::Tensor Forward(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                        const torch::Tensor& key_valid) override;
  std::string_view name() const override { return name_; }

 private:
  std::string name_;
  ClusteringOptions options_;
  bool improved_;
  torch::Tensor planes_;  // [H, bits, D + 1]
};

// Parses the options of the variant `name` (defaults `defaults`) and builds it.
absl::StatusOr<std::unique_ptr<Attention>> CreateClusteredFamily(
    const std::string& name, const AttentionSpec& spec, const ClusteringOptions& defaults,
    bool improved);

}  // namespace longenc::attention::internal

#endif  // LONGENC_MODEL_ATTENTION_CLUSTERING_H_
