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
// Batch · tokens per head group: 4 heads of a 32k-token document at a time.
constexpr int64_t kTokensPerHeadGroup = int64_t{1} << 17;
// Bytes of gathered keys + values per query block in the i-clustered sparse part.
constexpr int64_t kGatherBlockBytes = 64 << 20;

// Centroid of each cluster: mean of its valid queries. A one-hot GEMM rather than a scatter so
// the sums have a fixed order on every device. Returns [B, H, C, D] and the effective
// (clamped, P5) counts.
torch::Tensor Centroids(const torch::Tensor& q, const torch::Tensor& assign, int64_t clusters) {
  const auto sizes = q.sizes();
  torch::Tensor onehot = torch::zeros({sizes[0], sizes[1], sizes[2], clusters + 1}, q.options())
                             .scatter_(3, assign.unsqueeze(-1), 1.0)
                             .index({Slice(), Slice(), Slice(), Slice(0, clusters)});  // [B,H,N,C]
  const torch::Tensor counts = onehot.sum(2).clamp_min(1.0);                           // [B,H,C]
  return torch::matmul(onehot.transpose(-1, -2), q) / counts.unsqueeze(-1);
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

absl::StatusOr<ClusteringOptions> ReadClusteringOptions(OptionReader& reader,
                                                        const ClusteringOptions& defaults,
                                                        bool with_topk) {
  ClusteringOptions options = defaults;
  ASSIGN_OR_RETURN(options.clusters, reader.Int("clusters", defaults.clusters, 1, 1 << 16));
  ASSIGN_OR_RETURN(options.bits, reader.Int("bits", defaults.bits, 1, 63));
  ASSIGN_OR_RETURN(options.iterations, reader.Int("iterations", defaults.iterations, 0, 1000));
  ASSIGN_OR_RETURN(options.hash_bias, reader.Bool("hash_bias", defaults.hash_bias));
  if (with_topk) {
    ASSIGN_OR_RETURN(options.topk, reader.Int("topk", defaults.topk, 1, 1 << 20));
  }
  ASSIGN_OR_RETURN(options.min_len_efficient, ReadMinLenEfficient(reader));
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
                              int64_t clusters, int64_t iterations) {
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

  const torch::Tensor x_pop = bits.sum(-1, /*keepdim=*/true);  // [B,H,N,1]
  const torch::Tensor signed_bits = bits * 2 - 1;
  // Key that orders queries by (distance to own centroid desc, position asc): exact in int64.
  const torch::Tensor position_penalty = torch::arange(n, long_opts);
  torch::Tensor assign;
  for (int64_t it = 0; it <= iterations; ++it) {
    const torch::Tensor dist =
        x_pop + mu.sum(-1).unsqueeze(-2) - 2 * torch::matmul(bits, mu.transpose(-1, -2));
    const auto [min_dist, argmin] = torch::min(dist, -1);  // ties -> lowest id
    assign = argmin.masked_fill(invalid, clusters);        // [B,H,N]
    if (it == iterations) break;
    const torch::Tensor index = assign.unsqueeze(-1).expand({-1, -1, -1, nbits});
    const torch::Tensor votes =
        torch::zeros({batch, heads, clusters + 1, nbits}, bits.options())
            .scatter_add_(2, index, signed_bits)
            .index({Slice(), Slice(), Slice(0, clusters)});  // integers: exact in any order
    const torch::Tensor counts =
        torch::zeros({batch, heads, clusters + 1}, bits.options())
            .scatter_add_(2, assign, valid.to(bits.scalar_type()))
            .index({Slice(), Slice(), Slice(0, clusters)});
    const torch::Tensor majority = votes.gt(0).to(bits.scalar_type());  // tie -> 0
    // Re-seed empty clusters with the valid queries farthest from their centroids, the e-th
    // empty cluster taking the e-th farthest query.
    const torch::Tensor far_key =
        (min_dist.to(torch::kLong) * (int64_t{1} << 32) - position_penalty)
            .masked_fill(invalid, std::numeric_limits<int64_t>::min());
    const int64_t take = std::min(clusters, n);
    const torch::Tensor farthest = std::get<1>(torch::topk(far_key, take, -1));  // [B,H,take]
    const torch::Tensor empty = counts.eq(0);                                      // [B,H,C]
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
  const double scale = 1.0 / std::sqrt(static_cast<double>(dim));
  const int64_t kk = std::min(topk, n);
  const torch::Tensor centroids = Centroids(q, assign, clusters);
  const torch::Tensor logits = CentroidLogits(centroids, k, key_valid);  // [B,H,C,N]
  const auto [top_logits, top_idx] = torch::topk(logits, kk, -1);        // [B,H,C,kk]
  const torch::Tensor slot_ok = torch::isfinite(top_logits);             // per slot (P4)
  // Mass of the centroid's attention on its top-k keys, from log-sum-exps (no 1 - x
  // cancellation when it is close to 1).
  const torch::Tensor top_mass =
      torch::exp(torch::logsumexp(top_logits, -1) - torch::logsumexp(logits, -1));  // [B,H,C]
  const torch::Tensor bottom_attn =
      torch::softmax(logits, -1).scatter(-1, top_idx, 0.0);              // [B,H,C,N]
  const torch::Tensor bottom_out = torch::matmul(bottom_attn, v);        // [B,H,C,D]

  torch::Tensor out = torch::empty_like(q);
  if (weights != nullptr) *weights = RowsFor(bottom_attn, assign, clusters).contiguous();
  const int64_t block = std::max<int64_t>(
      1, kGatherBlockBytes / std::max<int64_t>(1, batch * heads * kk * dim * 4 * 2));
  for (int64_t start = 0; start < n; start += block) {
    const int64_t end = std::min(n, start + block), m = end - start;
    const Slice rows(start, end);
    const torch::Tensor a = assign.index({Slice(), Slice(), rows});               // [B,H,m]
    const torch::Tensor keys_idx = RowsFor(top_idx, a, clusters);                 // [B,H,m,kk]
    const torch::Tensor ok = RowsFor(slot_ok.to(torch::kByte), a, clusters).to(torch::kBool);
    const torch::Tensor flat = keys_idx.reshape({batch, heads, m * kk, 1}).expand({-1, -1, -1, dim});
    const torch::Tensor kg = k.gather(2, flat).view({batch, heads, m, kk, dim});
    const torch::Tensor vg = v.gather(2, flat).view({batch, heads, m, kk, dim});
    const torch::Tensor qb = q.index({Slice(), Slice(), rows}).unsqueeze(-1);     // [B,H,m,D,1]
    const torch::Tensor lg =
        (torch::matmul(kg, qb).squeeze(-1) * scale)
            .masked_fill(ok.logical_not(), -std::numeric_limits<float>::infinity());
    const torch::Tensor mass = RowsFor(top_mass.unsqueeze(-1), a, clusters);      // [B,H,m,1]
    const torch::Tensor p = torch::softmax(lg, -1) * mass;                        // [B,H,m,kk]
    const torch::Tensor top_out = torch::matmul(p.unsqueeze(-2), vg).squeeze(-2); // [B,H,m,D]
    out.index_put_({Slice(), Slice(), rows}, RowsFor(bottom_out, a, clusters) + top_out);
    if (weights != nullptr) {
      weights->index({Slice(), Slice(), rows}).scatter_(-1, keys_idx, p);
    }
  }
  if (weights != nullptr) *weights = ZeroPaddedQueries(*weights, key_valid);
  return ZeroPaddedQueries(out, key_valid);
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
        if (planes_.device() != q.device()) planes_ = planes_.to(q.device());
        // Heads are independent: run them in groups to bound the per-call memory.
        const int64_t heads = q.size(1);
        const int64_t group = std::clamp<int64_t>(
            kTokensPerHeadGroup / std::max<int64_t>(1, q.size(0) * q.size(2)), 1, heads);
        std::vector<torch::Tensor> outs;
        for (int64_t h0 = 0; h0 < heads; h0 += group) {
          const Slice hs(h0, std::min(heads, h0 + group));
          const torch::Tensor qh = q.index({Slice(), hs}), kh = k.index({Slice(), hs}),
                              vh = v.index({Slice(), hs});
          const torch::Tensor assign = HammingClusters(HashBits(qh, planes_.index({hs})), valid,
                                                       options_.clusters, options_.iterations);
          outs.push_back(improved_ ? ImprovedClusteredCore(qh, kh, vh, valid, assign,
                                                           options_.clusters, options_.topk)
                                   : ClusteredCore(qh, kh, vh, valid, assign, options_.clusters));
        }
        return torch::cat(outs, 1);
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
