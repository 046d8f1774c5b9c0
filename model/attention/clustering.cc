#include "model/attention/clustering.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>
#include <vector>

#include "common/status_macros.h"
#include "model/attention/attention_ops.h"

namespace longenc::attention::internal {
namespace {

using torch::indexing::Slice;

constexpr uint64_t kPlaneStream = 0x636c7573;  // "clus"
// Queries per tile of the i-clustered sparse product: each tile holds queries of one cluster.
constexpr int64_t kTileRows = 32;

// Ids [B, H, N] in [0, C] made unique across (batch, head): id + (C + 1)·(b·H + h), flattened.
torch::Tensor FlatClusterIds(const torch::Tensor& assign, int64_t clusters) {
  const int64_t bh = assign.size(0) * assign.size(1);
  return (assign + torch::arange(bh, assign.options())
                       .mul(clusters + 1)
                       .view({assign.size(0), assign.size(1), 1}))
      .reshape(-1);
}

torch::Tensor Centroids(const torch::Tensor& q, const torch::Tensor& assign, int64_t clusters) {
  return ClusterMeans(q, assign, clusters).first;
}

// The queries' hash bits [B, H, N, b] as the right operand of the centroid products with C
// clusters: [BH, b, N] float, or int8 with b rounded up to a multiple of 8 (zero rows leave
// every product as is). The int8 operand holds bits · x_scale, where C = x_scale · a with
// x_scale ≤ 127 and 2a ≤ 128, so the centroid side can hold −2a · μ and the GEMM yields
// −2C⟨μ, x⟩ directly (x_scale = 0: no such factorisation, scale afterwards).
struct QueryBits {
  torch::Tensor operand;
  bool int8 = false;
  int64_t x_scale = 0;
  torch::Tensor ones;  // |x| per query, [B, H, N] int64: the same in every round
};

QueryBits PrepareQueryBits(const torch::Tensor& bits, BitProduct product, int64_t clusters) {
  const int64_t bh = bits.size(0) * bits.size(1), n = bits.size(2), nbits = bits.size(3);
  const torch::Tensor operand = bits.reshape({bh, n, nbits}).transpose(1, 2);  // [BH, b, N]
  const torch::Tensor ones = bits.sum(-1).to(torch::kLong);
  if (!(product == BitProduct::kInt8 || (product == BitProduct::kAuto && bits.is_cpu()))) {
    return {operand, false, 0, ones};
  }
  int64_t x_scale = 0;
  for (int64_t a = std::min<int64_t>(64, clusters); a >= 1 && x_scale == 0; --a) {
    if (clusters % a == 0 && clusters / a <= 127) x_scale = clusters / a;
  }
  const int64_t padded = (nbits + 7) / 8 * 8;
  const torch::Tensor scaled = x_scale > 0 ? operand * x_scale : operand;
  return {torch::constant_pad_nd(scaled, {0, 0, 0, padded - nbits}).to(torch::kInt8).contiguous(),
          true, x_scale, ones};
}

// −2C⟨μ_c, x_i⟩ for centroid bits mu [B, H, C, b]: [BH, C, N], exact integers (fp32 or int32).
torch::Tensor CentroidBitProducts(const torch::Tensor& mu, const QueryBits& x) {
  const int64_t bh = x.operand.size(0), clusters = mu.size(2), nbits = mu.size(3);
  const torch::Tensor m = mu.reshape({bh, clusters, nbits});
  if (!x.int8) return torch::bmm(m * (-2.0 * clusters), x.operand);
  const int64_t m_scale = x.x_scale > 0 ? -2 * clusters / x.x_scale : 1;
  const torch::Tensor m8 = torch::constant_pad_nd(m * m_scale, {0, x.operand.size(1) - nbits})
                               .to(torch::kInt8)
                               .contiguous();
  // _int_mm is 2-D only: one product per (batch, head); head groups keep them few (one from
  // 16k tokens up, which needs no copy).
  torch::Tensor products;
  if (bh == 1) {
    products = torch::_int_mm(m8[0], x.operand[0]).unsqueeze(0);
  } else {
    std::vector<torch::Tensor> per_head;
    for (int64_t i = 0; i < bh; ++i) per_head.push_back(torch::_int_mm(m8[i], x.operand[i]));
    products = torch::stack(per_head);
  }
  return x.x_scale > 0 ? products : products.mul_(-2 * clusters);
}

// Per query the nearest centroid in Hamming space (ties: lowest id) and its distance, [B, H, N]
// each, for query bits [B, H, N, b] and centroids [B, H, C, b] in {0, 1}. The distance
// |x| + |μ| − 2⟨x, μ⟩ is a small integer, so (distance − |x|, id) packs exactly into one key
// per (centroid, query), laid out [B, H, C, N]: a vectorised amin over C then finds both,
// several times faster than torch::min with indices.
std::pair<torch::Tensor, torch::Tensor> NearestHammingCentroids(const torch::Tensor& bits,
                                                                const QueryBits& x,
                                                                const torch::Tensor& mu) {
  const int64_t batch = bits.size(0), heads = bits.size(1), n = bits.size(2),
                nbits = bits.size(3), clusters = mu.size(2);
  // |key| ≤ (2·63 + 1)·C < 2^24 for C ≤ 2^16: every key is exact in fp32 (and in int32).
  TORCH_CHECK(nbits <= 63 && clusters <= (int64_t{1} << 16), "clustered attention: ", nbits,
              " bits and ", clusters, " clusters do not fit the packed distance keys");
  torch::Tensor products = CentroidBitProducts(mu, x);  // −2C⟨μ, x⟩: [BH, C, N]
  const torch::Tensor base = (mu.sum(-1) * clusters + torch::arange(clusters, mu.options()))
                                 .reshape({batch * heads, clusters, 1})
                                 .to(products.scalar_type());
  const torch::Tensor keys = products.add_(base);  // in place: a temporary
  const torch::Tensor key = keys.amin(1).to(torch::kLong).view({batch, heads, n});
  const torch::Tensor score = torch::div(key, clusters, "floor");  // |μ| − 2⟨x, μ⟩
  return {score + x.ones, key - score * clusters};
}

// Masked centroid logits s · Qc kᵀ, -inf on padded keys: [B, H, C, N].
torch::Tensor CentroidLogits(const torch::Tensor& centroids, const torch::Tensor& k,
                             const torch::Tensor& key_valid) {
  const double scale = 1.0 / std::sqrt(static_cast<double>(k.size(-1)));
  return (torch::matmul(centroids, k.transpose(-1, -2)) * scale)
      .masked_fill(key_valid.logical_not().unsqueeze(1).unsqueeze(1),
                   -std::numeric_limits<float>::infinity());
}

// Rows of `table` [B, H, C, X] picked per query by `assign` [B, H, M] -> [B, H, M, X].
torch::Tensor RowsFor(const torch::Tensor& table, const torch::Tensor& assign, int64_t clusters) {
  const torch::Tensor idx = assign.clamp_max(clusters - 1);
  return table.gather(2, idx.unsqueeze(-1).expand({-1, -1, -1, table.size(-1)}));
}

}  // namespace

std::pair<torch::Tensor, torch::Tensor> ClusterMeans(const torch::Tensor& x,
                                                     const torch::Tensor& assign,
                                                     int64_t clusters, bool one_hot) {
  const int64_t batch = x.size(0), heads = x.size(1), n = x.size(2), dim = x.size(3);
  if (one_hot || !x.is_cpu()) {
    torch::Tensor onehot = torch::zeros({batch, heads, n, clusters + 1}, x.options())
                               .scatter_(3, assign.unsqueeze(-1), 1.0)
                               .index({Slice(), Slice(), Slice(), Slice(0, clusters)});  // [B,H,N,C]
    const torch::Tensor counts = onehot.sum(2);                                          // [B,H,C]
    return {torch::matmul(onehot.transpose(-1, -2), x) / counts.clamp_min(1.0).unsqueeze(-1),
            counts};
  }
  // Rows of (x, 1) added into their cluster's row; id C (padding) gets a spare row.
  const torch::Tensor sums =
      torch::zeros({batch * heads * (clusters + 1), dim + 1}, x.options())
          .index_add_(0, FlatClusterIds(assign, clusters),
                      torch::cat({x, torch::ones({batch, heads, n, 1}, x.options())}, -1)
                          .reshape({-1, dim + 1}))
          .view({batch, heads, clusters + 1, dim + 1})
          .index({Slice(), Slice(), Slice(0, clusters)});
  const torch::Tensor counts = sums.index({Slice(), Slice(), Slice(), dim});  // [B,H,C]
  return {sums.index({Slice(), Slice(), Slice(), Slice(0, dim)}) /
              counts.clamp_min(1.0).unsqueeze(-1),
          counts};
}

absl::StatusOr<ClusteringOptions> ReadClusteringOptions(OptionReader& reader,
                                                        const ClusteringOptions& defaults,
                                                        bool with_topk) {
  ClusteringOptions options = defaults;
  ASSIGN_OR_RETURN(options.clusters, reader.Int("clusters", defaults.clusters, 1, 1 << 16));
  ASSIGN_OR_RETURN(options.bits, reader.Int("bits", defaults.bits, 1, 63));
  ASSIGN_OR_RETURN(options.iterations, reader.Int("iterations", defaults.iterations, 0, 1000));
  ASSIGN_OR_RETURN(options.refine, reader.Int("refine", defaults.refine, 0, 1000));
  ASSIGN_OR_RETURN(options.hash_bias, reader.Bool("hash_bias", defaults.hash_bias));
  if (with_topk) {
    ASSIGN_OR_RETURN(options.topk, reader.Int("topk", defaults.topk, 1, 1 << 20));
  }
  ASSIGN_OR_RETURN(options.min_len_efficient,
                   ReadMinLenEfficient(reader, defaults.min_len_efficient));
  return options;
}

torch::Tensor MakeHashPlanes(const AttentionSpec& spec, const ClusteringOptions& options) {
  torch::Tensor planes = SeededNormal(spec, kPlaneStream, {options.bits, spec.head_dim + 1});
  if (!options.hash_bias) planes.index_put_({Slice(), Slice(), spec.head_dim}, 0.0);
  return planes;
}

torch::Tensor HashBits(const torch::Tensor& x, const torch::Tensor& planes) {
  const int64_t dim = x.size(-1);
  TORCH_CHECK(planes.size(-1) == dim + 1, "clustered attention: head_dim ", dim,
              " does not match the hash planes (", planes.size(-1) - 1, ")");
  const torch::Tensor normals = planes.index({Slice(), Slice(), Slice(0, dim)});  // [H,bits,D]
  const torch::Tensor offsets = planes.index({Slice(), Slice(), dim});            // [H,bits]
  const torch::Tensor proj = torch::matmul(x, normals.transpose(-1, -2));         // [B,H,N,bits]
  return proj.gt(offsets.unsqueeze(1)).to(x.scalar_type());
}

torch::Tensor HammingClusters(const torch::Tensor& bits, const torch::Tensor& key_valid,
                              int64_t clusters, int64_t iterations, BitProduct product) {
  const int64_t batch = bits.size(0), heads = bits.size(1), n = bits.size(2),
                nbits = bits.size(3);
  TORCH_CHECK(nbits <= 63, "clustered attention: at most 63 hash bits");
  const auto long_opts = bits.options().dtype(torch::kLong);
  const torch::Tensor valid = key_valid.unsqueeze(1).expand({batch, heads, n});  // [B,H,N]
  const torch::Tensor invalid = valid.logical_not();
  const torch::Tensor n_valid = valid.sum(-1, /*keepdim=*/true);                  // [B,H,1]

  // Initial centroids: valid queries at evenly spaced ranks of the integer hash value (stable
  // sort: ties by position; padded queries sort last), so the start depends only on content.
  const torch::Tensor powers = torch::pow(2, torch::arange(nbits, long_opts));
  torch::Tensor hashes = (bits.to(torch::kLong) * powers).sum(-1);  // [B,H,N]
  hashes = hashes.masked_fill(invalid, std::numeric_limits<int64_t>::max());
  const torch::Tensor order =
      std::get<1>(torch::sort(hashes, /*stable=*/true, /*dim=*/-1, /*descending=*/false));
  const torch::Tensor ranks =
      torch::div(torch::arange(clusters, long_opts).mul(2).add(1).mul(n_valid), 2 * clusters,
                 "floor")
          .clamp_max(n - 1);                                    // [B,H,C]
  const torch::Tensor init = order.gather(-1, ranks);          // [B,H,C]
  torch::Tensor mu = bits.gather(2, init.unsqueeze(-1).expand({-1, -1, -1, nbits}));  // [B,H,C,b]

  const torch::Tensor signed_bits = bits * 2 - 1;
  const QueryBits query_bits = PrepareQueryBits(bits, product, clusters);
  // Key that orders queries by (distance to own centroid desc, position asc): exact in int64.
  const torch::Tensor position_penalty = torch::arange(n, long_opts);
  torch::Tensor assign;
  for (int64_t it = 0; it <= iterations; ++it) {
    const auto [min_dist, nearest] = NearestHammingCentroids(bits, query_bits, mu);
    assign = nearest.masked_fill(invalid, clusters);  // [B,H,N]
    if (it == iterations) break;
    // The mean of a cluster's ±1 bits has the sign of their sum (integers: exact in any order).
    const auto [mean_votes, counts] = ClusterMeans(signed_bits, assign, clusters);
    const torch::Tensor majority = mean_votes.gt(0).to(bits.scalar_type());  // tie -> 0
    const torch::Tensor empty = counts.eq(0);                                  // [B,H,C]
    // Re-seeding is rare and costs a top-k over N: CPU skips it when no cluster is empty. An
    // accelerator always computes it (where() keeps `majority` then), so no round waits on the
    // host.
    // host-sync-ok: CPU only.
    if (HostReadsAreFree(bits) && !empty.any().item<bool>()) {
      mu = majority;
      continue;
    }
    // Re-seed empty clusters with the valid queries farthest from their centroids, the e-th
    // empty cluster taking the e-th farthest query.
    const torch::Tensor far_key =
        (min_dist * (int64_t{1} << 32) - position_penalty)
            .masked_fill(invalid, std::numeric_limits<int64_t>::min());
    const int64_t take = std::min(clusters, n);
    const torch::Tensor farthest = std::get<1>(torch::topk(far_key, take, -1));  // [B,H,take]
    const torch::Tensor empty_rank = (empty.cumsum(-1) - 1).clamp(0, take - 1);
    const torch::Tensor reseed_rows = farthest.gather(-1, empty_rank);
    const torch::Tensor reseed =
        bits.gather(2, reseed_rows.unsqueeze(-1).expand({-1, -1, -1, nbits}));
    mu = torch::where(empty.unsqueeze(-1), reseed, majority);
  }
  // Rows with at most C valid queries: one cluster per valid query (exact).
  const torch::Tensor identity = (valid.cumsum(-1) - 1).masked_fill(invalid, clusters);
  return torch::where(n_valid.le(clusters), identity, assign);
}

torch::Tensor RefineClusters(const torch::Tensor& q, const torch::Tensor& key_valid,
                             const torch::Tensor& assign, int64_t clusters, int64_t rounds) {
  if (rounds <= 0) return assign;
  const int64_t batch = q.size(0), heads = q.size(1), n = q.size(2);
  const torch::Tensor invalid = key_valid.logical_not().unsqueeze(1).expand({batch, heads, n});
  torch::Tensor refined = assign;
  for (int64_t round = 0; round < rounds; ++round) {
    const auto [centroids, counts] = ClusterMeans(q, refined, clusters);  // [B,H,C,D]
    // ‖q − c‖² up to the per-query constant ‖q‖²; an empty cluster stays empty.
    const torch::Tensor dist =
        (centroids.pow(2).sum(-1).unsqueeze(-2) -
         2 * torch::matmul(q, centroids.transpose(-1, -2)))
            .masked_fill(counts.eq(0).unsqueeze(-2), std::numeric_limits<float>::infinity());
    refined = dist.argmin(-1).masked_fill(invalid, clusters);  // ties -> lowest id
  }
  // Rows with at most C valid queries keep their one-query clusters (exact).
  const torch::Tensor n_valid = key_valid.sum(-1).view({batch, 1, 1});
  return torch::where(n_valid.le(clusters), assign, refined);
}

torch::Tensor ClusteredCore(const torch::Tensor& q, const torch::Tensor& k,
                            const torch::Tensor& v, const torch::Tensor& key_valid,
                            const torch::Tensor& assign, int64_t clusters,
                            torch::Tensor* weights) {
  const torch::Tensor centroids = Centroids(q, assign, clusters);               // [B,H,C,D]
  const torch::Tensor attn = torch::softmax(CentroidLogits(centroids, k, key_valid), -1);
  const torch::Tensor cluster_out = torch::matmul(attn, v);                     // [B,H,C,D]
  if (weights != nullptr) {
    *weights = ZeroPaddedQueries(RowsFor(attn, assign, clusters), key_valid);   // [B,H,N,N]
  }
  return ZeroPaddedQueries(RowsFor(cluster_out, assign, clusters), key_valid);
}

torch::Tensor ImprovedClusteredCore(const torch::Tensor& q, const torch::Tensor& k,
                                    const torch::Tensor& v, const torch::Tensor& key_valid,
                                    const torch::Tensor& assign, int64_t clusters, int64_t topk,
                                    torch::Tensor* weights) {
  const int64_t batch = q.size(0), heads = q.size(1), n = q.size(2), dim = q.size(3);
  const int64_t bh = batch * heads;
  const double scale = 1.0 / std::sqrt(static_cast<double>(dim));
  const int64_t kk = std::min(topk, n);
  const auto long_opts = q.options().dtype(torch::kLong);
  const torch::Tensor centroids = Centroids(q, assign, clusters);
  const torch::Tensor logits = CentroidLogits(centroids, k, key_valid);  // [B,H,C,N]
  const auto [top_logits, top_idx] = torch::topk(logits, kk, -1);        // [B,H,C,kk]
  // Mass of the centroid's attention on its top-k keys, from log-sum-exps (no 1 - x
  // cancellation when it is close to 1).
  const torch::Tensor top_mass =
      torch::exp(torch::logsumexp(top_logits, -1) - torch::logsumexp(logits, -1));  // [B,H,C]
  const torch::Tensor bottom_attn =
      torch::softmax(logits, -1).scatter(-1, top_idx, 0.0);              // [B,H,C,N]
  const torch::Tensor bottom_out = torch::matmul(bottom_attn, v);        // [B,H,C,D]

  // Each cluster's top-k keys and values, gathered once per cluster: [BH·C, kk, D]. A top-k
  // slot on a padded key (-inf logit: fewer than kk valid keys) is masked per (b, h, cluster,
  // slot) (P4).
  const torch::Tensor cluster_base = torch::arange(bh, long_opts).mul(n).view({batch, heads, 1, 1});
  const torch::Tensor top_rows = (top_idx + cluster_base).reshape(-1);
  const torch::Tensor k_top = k.reshape({bh * n, dim}).index_select(0, top_rows)
                                  .view({bh * clusters, kk, dim});
  const torch::Tensor v_top = v.reshape({bh * n, dim}).index_select(0, top_rows)
                                  .view({bh * clusters, kk, dim});
  const torch::Tensor slot_bias =
      torch::zeros_like(top_logits)
          .masked_fill(torch::isfinite(top_logits).logical_not(),
                       -std::numeric_limits<float>::infinity())
          .view({bh * clusters, 1, kk});

  // Cluster-tiled sparse product (the layout of the official clustered kernels): queries are
  // sorted by (head, cluster) and cut into tiles of kTileRows queries of one cluster, so every
  // tile multiplies its queries with one [kk, D] block in a batched GEMM. Memory and time are
  // O(N·kk) per head; no per-query copy of keys or values is made.
  const torch::Tensor cluster_of = FlatClusterIds(assign, clusters);  // [BH·N], padded: C
  const torch::Tensor order = std::get<1>(
      torch::sort(cluster_of, /*stable=*/true, /*dim=*/0, /*descending=*/false));
  // Members per (batch·head, cluster id), the padding id C included: a scatter (bincount
  // reads its input's range on the host).
  const torch::Tensor counts_all =
      torch::zeros({bh * (clusters + 1)}, long_opts)
          .scatter_add_(0, cluster_of, torch::ones_like(cluster_of))
          .view({bh, clusters + 1});
  const torch::Tensor starts_all =
      (counts_all.reshape(-1).cumsum(0) - counts_all.reshape(-1)).view({bh, clusters + 1});
  const torch::Tensor counts =
      counts_all.index({Slice(), Slice(0, clusters)}).reshape(-1);        // [BH·C]
  const torch::Tensor starts = starts_all.index({Slice(), Slice(0, clusters)}).reshape(-1);
  const torch::Tensor tiles_per_cluster =
      torch::div(counts + (kTileRows - 1), kTileRows, "floor");           // [BH·C]
  const torch::Tensor tile_end = tiles_per_cluster.cumsum(0);            // inclusive
  // How many tiles: exactly on CPU; on an accelerator a bound from the shapes, so nothing waits
  // for the device: per (batch, head) Σ_c ⌈n_c/R⌉ ≤ ⌈N/R⌉ + min(C, N). Spare tiles get the
  // last cluster and no valid slot (their rank is past its tiles).
  const int64_t num_tiles =
      HostReadsAreFree(q) ? tile_end[-1].item<int64_t>()  // host-sync-ok: CPU only.
                          : bh * ((n + kTileRows - 1) / kTileRows + std::min(clusters, n));
  torch::Tensor out = torch::zeros({bh * n + 1, dim}, q.options());  // last row: a sink
  torch::Tensor top_p, top_cols;  // per query [BH·N + 1, kk], weights only
  if (weights != nullptr) {
    top_p = torch::zeros({bh * n + 1, kk}, q.options());
    top_cols = torch::zeros({bh * n + 1, kk}, long_opts);
  }
  if (num_tiles > 0) {
    // Tile t belongs to the first cluster whose tile_end exceeds t.
    const torch::Tensor tile_cluster =
        torch::searchsorted(tile_end, torch::arange(num_tiles, long_opts), /*out_int32=*/false,
                            /*right=*/true)
            .clamp_max(bh * clusters - 1);                                // [T]
    const torch::Tensor first_tile =
        tiles_per_cluster.cumsum(0) - tiles_per_cluster;                  // [BH·C]
    const torch::Tensor rank =
        torch::arange(num_tiles, long_opts) - first_tile.index_select(0, tile_cluster);
    const torch::Tensor slot = rank.mul(kTileRows).unsqueeze(-1) +
                               torch::arange(kTileRows, long_opts);       // [T, R]
    const torch::Tensor slot_ok = slot.lt(counts.index_select(0, tile_cluster).unsqueeze(-1));
    const torch::Tensor sorted_pos =
        (starts.index_select(0, tile_cluster).unsqueeze(-1) + slot).clamp_max(bh * n - 1);
    const torch::Tensor query_row = order.index_select(0, sorted_pos.reshape(-1));  // [T·R]
    const torch::Tensor qt = q.reshape({bh * n, dim}).index_select(0, query_row)
                                 .view({num_tiles, kTileRows, dim});
    const torch::Tensor lg = torch::baddbmm(slot_bias.index_select(0, tile_cluster), qt,
                                            k_top.index_select(0, tile_cluster).transpose(1, 2),
                                            /*beta=*/1.0, /*alpha=*/scale);  // [T, R, kk]
    const torch::Tensor p = torch::softmax(lg, -1) *
                            top_mass.reshape(-1).index_select(0, tile_cluster).view({-1, 1, 1});
    const torch::Tensor top_out = torch::bmm(p, v_top.index_select(0, tile_cluster)) +
                                  bottom_out.reshape({bh * clusters, 1, dim})
                                      .index_select(0, tile_cluster);     // [T, R, D]
    // Back to query order. Every query sits in exactly one valid slot; the padding slots of
    // each cluster's last tile (and spare tiles) write into the sink row, which is cut off.
    const torch::Tensor rows =
        torch::where(slot_ok.reshape(-1), query_row, torch::full_like(query_row, bh * n));
    out.index_copy_(0, rows, top_out.reshape({-1, dim}));
    if (weights != nullptr) {
      top_p.index_copy_(0, rows, p.reshape({-1, kk}));
      const torch::Tensor cols = top_idx.reshape({bh * clusters, kk})
                                     .index_select(0, tile_cluster)
                                     .unsqueeze(1)
                                     .expand({-1, kTileRows, -1})
                                     .reshape({-1, kk});
      top_cols.index_copy_(0, rows, cols);
    }
  }
  out = out.narrow(0, 0, bh * n);
  if (weights != nullptr) {
    *weights = RowsFor(bottom_attn, assign, clusters)
                   .reshape({bh * n, n})
                   .scatter(1, top_cols.narrow(0, 0, bh * n), top_p.narrow(0, 0, bh * n))
                   .view({batch, heads, n, n});
    *weights = ZeroPaddedQueries(*weights, key_valid);
  }
  return ZeroPaddedQueries(out.view({batch, heads, n, dim}), key_valid);
}

ClusteredFamilyAttention::ClusteredFamilyAttention(std::string name,
                                                   const ClusteringOptions& options,
                                                   bool improved, torch::Tensor planes)
    : name_(std::move(name)), options_(options), improved_(improved),
      planes_(std::move(planes)) {}

torch::Tensor ClusteredFamilyAttention::Forward(const torch::Tensor& q, const torch::Tensor& k,
                                                const torch::Tensor& v,
                                                const torch::Tensor& key_valid) {
  return DispatchByLength(
      q, k, v, key_valid, options_.min_len_efficient,
      [this](const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
             const torch::Tensor& valid) {
        const torch::Tensor& planes = StateOn(planes_, q.device());
        const auto per_group = [&](const Slice& hs) {
          const torch::Tensor qh = q.index({Slice(), hs}), kh = k.index({Slice(), hs}),
                              vh = v.index({Slice(), hs});
          const torch::Tensor assign = RefineClusters(
              qh, valid,
              HammingClusters(HashBits(qh, planes.index({hs})), valid, options_.clusters,
                              options_.iterations),
              options_.clusters, options_.refine);
          return improved_ ? ImprovedClusteredCore(qh, kh, vh, valid, assign, options_.clusters,
                                                   options_.topk)
                           : ClusteredCore(qh, kh, vh, valid, assign, options_.clusters);
        };
        return RunInHeadGroups(q.size(0), q.size(1), q.size(2), per_group,
                               TokensPerHeadGroup(q.device()));
      });
}

absl::StatusOr<std::unique_ptr<Attention>> CreateClusteredFamily(
    const std::string& name, const AttentionSpec& spec, const ClusteringOptions& defaults,
    bool improved) {
  OptionReader reader(name, spec.options);
  ASSIGN_OR_RETURN(const ClusteringOptions options,
                   ReadClusteringOptions(reader, defaults, /*with_topk=*/improved));
  RETURN_IF_ERROR(reader.Finish());
  return std::unique_ptr<Attention>(std::make_unique<ClusteredFamilyAttention>(
      name, options, improved, MakeHashPlanes(spec, options)));
}

}  // namespace longenc::attention::internal
