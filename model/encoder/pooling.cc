#include "model/encoder/pooling.h"

namespace longenc::encoder {

torch::Tensor SumPool(const torch::Tensor& hidden, const torch::Tensor& key_valid) {
  return (hidden * key_valid.unsqueeze(-1).to(hidden.dtype())).sum(1, /*keepdim=*/false, torch::kFloat);
}

torch::Tensor MeanPool(const torch::Tensor& hidden, const torch::Tensor& key_valid) {
  torch::Tensor counts = key_valid.sum(1, /*keepdim=*/true).to(torch::kFloat).clamp_min(1e-9);
  return SumPool(hidden, key_valid) / counts;
}

torch::Tensor ClsPool(const torch::Tensor& hidden) { return hidden.select(1, 0); }

torch::Tensor L2Normalize(const torch::Tensor& x) {
  return x / x.norm(2, -1, /*keepdim=*/true).clamp_min(1e-12);
}

}  // namespace longenc::encoder
