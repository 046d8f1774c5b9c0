#include "model/encoder/banded_attention.h"

#include <algorithm>

namespace longenc::encoder {

BandedAttention::BandedAttention(int64_t window, int64_t block)
    : window_(window), block_(block > 0 ? block : std::max<int64_t>(64, 2 * window)) {}

torch::Tensor BandedAttention::Forward(const torch::Tensor& q, const torch::Tensor& k,
                                       const torch::Tensor& v, const torch::Tensor& key_valid) {
  TORCH_CHECK(q.dim() == 4 && q.sizes() == k.sizes() && k.sizes() == v.sizes(),
              "banded attention: q, k, v must be [B, H, N, D] of one shape");
  const int64_t b = q.size(0), h = q.size(1), n = q.size(2), d = q.size(3);
  const int64_t w = window_, block = block_;
  const int64_t blocks = (n + block - 1) / block;
  const int64_t padded = blocks * block;
  const int64_t span = block + 2 * w;  // keys one query block sees

  namespace F = torch::nn::functional;
  // Queries [B, H, blocks, block, D]; keys/values padded by w on the left and w plus the tail on
  // the right, then cut into overlapping spans [B, H, blocks, span, D].
  torch::Tensor qb = F::pad(q, F::PadFuncOptions({0, 0, 0, padded - n})).view({b, h, blocks, block, d});
  auto spans = [&](const torch::Tensor& t) {
    return F::pad(t, F::PadFuncOptions({0, 0, w, padded - n + w}))
        .unfold(2, span, block)      // [B, H, blocks, D, span]
        .transpose(-1, -2);          // [B, H, blocks, span, D]
  };
  torch::Tensor kb = spans(k), vb = spans(v);
  torch::Tensor valid = F::pad(key_valid, F::PadFuncOptions({w, padded - n + w}))
                            .unfold(1, span, block);  // [B, blocks, span]
  // Query r of a block sits at span column r + w: the band is 0 <= c - r <= 2w.
  torch::Tensor r = torch::arange(block, torch::TensorOptions().dtype(torch::kLong).device(q.device()));
  torch::Tensor c = torch::arange(span, r.options());
  torch::Tensor offset = c.unsqueeze(0) - r.unsqueeze(1);  // [block, span]
  torch::Tensor band = offset.ge(0).logical_and(offset.le(2 * w));
  torch::Tensor mask = band.unsqueeze(0).unsqueeze(0).logical_and(valid.unsqueeze(2));  // [B, blocks, block, span]

  // Fold blocks into the batch: [B·blocks, H, rows, D].
  auto fold = [&](const torch::Tensor& t, int64_t rows) {
    return t.permute({0, 2, 1, 3, 4}).reshape({b * blocks, h, rows, d});
  };
  torch::Tensor out = at::scaled_dot_product_attention(
      fold(qb, block), fold(kb, span), fold(vb, span), mask.reshape({b * blocks, 1, block, span}));
  out = out.view({b, blocks, h, block, d}).permute({0, 2, 1, 3, 4}).reshape({b, h, padded, d});
  out = out.narrow(2, 0, n);
  // Padded queries may see no key at all (NaN rows): zero them, as every variant does.
  return torch::where(key_valid.view({b, 1, n, 1}), out, torch::zeros({}, out.options()));
}

}  // namespace longenc::encoder
