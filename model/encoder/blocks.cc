#include "model/encoder/blocks.h"

#include <algorithm>
#include <utility>

#include "model/checkpoint.h"

namespace longenc::encoder {

NormImpl::NormImpl(int64_t dim, double eps, bool bias) : dim_(dim), eps_(eps) {
  weight_ = register_parameter("weight", torch::ones({dim}));
  if (bias) bias_ = register_parameter("bias", torch::zeros({dim}));
}

torch::Tensor NormImpl::forward(const torch::Tensor& x) {
  return torch::layer_norm(x, {dim_}, weight_, bias_, eps_);
}

namespace {

bool IsNorm(const torch::nn::Module& m) {
  return dynamic_cast<const torch::nn::LayerNormImpl*>(&m) != nullptr ||
         dynamic_cast<const NormImpl*>(&m) != nullptr;
}

void CastOwnParameters(torch::nn::Module& m, torch::ScalarType dtype) {
  if (IsNorm(m)) return;
  for (auto& item : m.named_parameters(/*recurse=*/false)) {
    torch::Tensor& p = item.value();
    if (p.scalar_type() != dtype) p.set_data(p.to(dtype));
  }
}

}  // namespace

void CastParameters(torch::nn::Module& module, torch::ScalarType dtype) {
  torch::NoGradGuard no_grad;
  CastOwnParameters(module, dtype);  // a top-level module is not held by a shared_ptr
  for (const auto& child : module.modules(/*include_self=*/false)) CastOwnParameters(*child, dtype);
}

torch::Tensor Activate(const torch::Tensor& x, const std::string& name) {
  if (name == "gelu") return torch::gelu(x);
  if (name == "relu") return torch::relu(x);
  if (name == "silu" || name == "swish") return torch::silu(x);
  return torch::gelu(x, "tanh");  // gelu_new, gelu_pytorch_tanh
}

FeedForward::FeedForward(torch::nn::Module& owner, int64_t hidden, int64_t intermediate, bool gated,
                         bool in_bias, bool out_bias, std::string activation)
    : intermediate_(intermediate), gated_(gated), activation_(std::move(activation)) {
  in_ = owner.register_module(
      "mlp_in", torch::nn::Linear(torch::nn::LinearOptions(hidden, gated ? 2 * intermediate : intermediate)
                                      .bias(in_bias)));
  out_ = owner.register_module(
      "mlp_out", torch::nn::Linear(torch::nn::LinearOptions(intermediate, hidden).bias(out_bias)));
}

torch::Tensor FeedForward::Block(const torch::Tensor& rows) {
  torch::Tensor h = in_->forward(rows);  // [R, I] or [R, 2I]
  if (gated_) {
    h = Activate(h.narrow(-1, 0, intermediate_), activation_) * h.narrow(-1, intermediate_, intermediate_);
  } else {
    h = Activate(h, activation_);
  }
  return out_->forward(h);
}

torch::Tensor FeedForward::operator()(const torch::Tensor& rows, int64_t block_rows) {
  const int64_t n = rows.size(0);
  if (n <= block_rows) return Block(rows);
  torch::Tensor out = torch::empty_like(rows);
  for (int64_t start = 0; start < n; start += block_rows) {
    model::AtCheckpoint();
    const int64_t count = std::min(block_rows, n - start);
    out.narrow(0, start, count).copy_(Block(rows.narrow(0, start, count)));
  }
  return out;
}

}  // namespace longenc::encoder
