#include "model/attention/yoso.h"

#include <algorithm>
#include <cmath>

#include "model/attention/attention_ops.h"

namespace longenc::attention::internal {
namespace {

using torch::indexing::Slice;

constexpr uint64_t kProjectionStream = 0x796f736f;  // "yoso"
// Budget for one chunk of hash projections in YosoCodes.
constexpr int64_t kChunkBytes = 64 << 20;
constexpr int64_t kExpectationBlockBytes = 64 << 20;

}  // namespace

torch::Tensor MakeYosoProjections(const AttentionSpec& spec, int64_t hashes, int64_t tau) {
  return SeededNormal(spec, kProjectionStream, {spec.head_dim, hashes * tau});
}

torch::Tensor YosoCodes(const torch::Tensor& x, const torch::Tensor& projections, int64_t tau) {
  const int64_t hashes = tau == 0 ? 0 : projections.size(-1) / tau;
  TORCH_CHECK(tau == 0 || projections.size(-1) == hashes * tau, "yoso: bad projections");
  if (tau == 0) {
    // No bits: every code is 0, every pair collides (T10). The hash count is carried by the
    // projections' width, which is 0 here, so callers pass codes of the wanted width instead.
    return torch::zeros({x.size(0), x.size(1), x.size(2), 1}, x.options().dtype(torch::kLong));
  }
  // Codes as a GEMM of the sign bits with powers of two (exact in fp32 for tau ≤ 24), in
  // chunks of hashes so the projections stay below kChunkBytes.
  const int64_t b = x.size(0), h = x.size(1), n = x.size(2);
  const torch::Tensor powers = torch::pow(2.0, torch::arange(tau, x.options()));  // [tau]
  const int64_t chunk = std::clamp<int64_t>(kChunkBytes / std::max<int64_t>(1, b * h * n * tau * 4),
                                            1, hashes);
  std::vector<torch::Tensor> codes;
  for (int64_t f0 = 0; f0 < hashes; f0 += chunk) {
    const int64_t mc = std::min(chunk, hashes - f0);
    const torch::Tensor bits =
        torch::matmul(x, projections.index({Slice(), Slice(), Slice(f0 * tau, (f0 + mc) * tau)}))
            .gt(0)
            .to(x.scalar_type())
            .view({b, h, n, mc, tau});
    codes.push_back(torch::matmul(bits, powers).to(torch::kLong));  // [B,H,N,mc]
  }
  return torch::cat(codes, -1);  // [B,H,N,m]
}

torch::Tensor YosoCumulation(const torch::Tensor& q_codes, const torch::Tensor& k_codes,
                             const torch::Tensor& v, const torch::Tensor& key_valid, int64_t tau) {
  const int64_t batch = v.size(0), heads = v.size(1), n = v.size(2), dim = v.size(3);
  const int64_t hashes = q_codes.size(-1);
  const int64_t bh = batch * heads, buckets = int64_t{1} << tau;
  const torch::Tensor values =
      v.masked_fill(key_valid.logical_not().unsqueeze(1).unsqueeze(-1), 0.0).reshape({bh * n, dim});
  const auto long_opts = v.options().dtype(torch::kLong);
  // Table slot of (bh, code) for one hash: (bh << tau) + code, int64 (Y6).
  const torch::Tensor base = torch::arange(bh, long_opts).mul(buckets).view({bh, 1});
  const torch::Tensor flat_k = (k_codes.reshape({bh, n, hashes}) + base.unsqueeze(-1))
                                   .permute({2, 0, 1}).contiguous();  // [m, BH, N]
  const torch::Tensor flat_q = (q_codes.reshape({bh, n, hashes}) + base.unsqueeze(-1))
                                   .permute({2, 0, 1}).contiguous();
  // One hash at a time: the table is [BH·2^tau, D] and the values are never copied per hash,
  // so memory stays O(N·D + BH·2^tau·D) whatever m is.
  torch::Tensor table = torch::empty({bh * buckets, dim}, v.options());
  torch::Tensor y = torch::zeros({bh * n, dim}, v.options());
  for (int64_t f = 0; f < hashes; ++f) {
    table.zero_();
    table.index_put_({flat_k[f].reshape(-1)}, values, /*accumulate=*/true);
    y.add_(table.index_select(0, flat_q[f].reshape(-1)));
  }
  y = (y / static_cast<double>(hashes)).view({batch, heads, n, dim});
  return ZeroPaddedQueries(y, key_valid);
}

namespace {
// YOSO-E weights of a block of queries against all keys (padded keys 0): [B, H, M, N].
torch::Tensor ExpectationBlock(const torch::Tensor& q, const torch::Tensor& k,
                               const torch::Tensor& key_valid, int64_t tau) {
  const torch::Tensor qn = torch::nn::functional::normalize(
      q, torch::nn::functional::NormalizeFuncOptions().dim(-1).eps(1e-12));
  const torch::Tensor kn = torch::nn::functional::normalize(
      k, torch::nn::functional::NormalizeFuncOptions().dim(-1).eps(1e-12));
  const torch::Tensor cosine = torch::matmul(qn, kn.transpose(-1, -2)).clamp(-1.0, 1.0);
  const torch::Tensor w = torch::pow(1.0 - torch::acos(cosine) / M_PI, static_cast<double>(tau));
  const torch::Tensor keys_ok = key_valid.unsqueeze(1).unsqueeze(1);  // [B,1,1,N]
  return w.masked_fill(keys_ok.logical_not(), 0.0);
}
}  // namespace

torch::Tensor YosoExpectationWeights(const torch::Tensor& q, const torch::Tensor& k,
                                     const torch::Tensor& key_valid, int64_t tau) {
  return ZeroPaddedQueries(ExpectationBlock(q, k, key_valid, tau), key_valid);
}

torch::Tensor YosoExpectationCumulation(const torch::Tensor& q, const torch::Tensor& k,
                                        const torch::Tensor& v, const torch::Tensor& key_valid,
                                        int64_t tau) {
  const int64_t n = q.size(2);
  const int64_t block = std::max<int64_t>(
      1, kExpectationBlockBytes / std::max<int64_t>(1, q.size(0) * q.size(1) * n * 4 * 3));
  std::vector<torch::Tensor> out;
  for (int64_t start = 0; start < n; start += block) {
    const Slice rows(start, std::min(n, start + block));
    const torch::Tensor w =
        ExpectationBlock(q.index({Slice(), Slice(), rows}), k, key_valid, tau);  // [B,H,m,N]
    out.push_back(torch::matmul(w, v));
  }
  return ZeroPaddedQueries(torch::cat(out, 2), key_valid);
}

torch::Tensor L2NormalizeRows(const torch::Tensor& y) {
  return y / y.norm(2, -1, /*keepdim=*/true).clamp_min(1e-12);
}

}  // namespace longenc::attention::internal
