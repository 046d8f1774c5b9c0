// Small modules the encoder families compose: LayerNorm with an optional bias (ModernBERT has
// none), activations by config name, and the position-wise feed-forward, plain or gated
// (GLU: act(first half) · second half), run in blocks of token rows so its temporaries stay
// bounded for 100k-token documents; and the dtype rule of every encoder (CastParameters).
//
// Thread-compatible: forwards from one thread.
#ifndef LONGENC_MODEL_ENCODER_BLOCKS_H_
#define LONGENC_MODEL_ENCODER_BLOCKS_H_

#include <cstdint>
#include <string>

#include <torch/torch.h>

namespace longenc::encoder {

// Parameters "weight" and, with bias, "bias".
class NormImpl : public torch::nn::Module {
 public:
  NormImpl(int64_t dim, double eps, bool bias);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  int64_t dim_;
  double eps_;
  torch::Tensor weight_, bias_;
};
TORCH_MODULE(Norm);

// "gelu" (erf), "gelu_new"/"gelu_pytorch_tanh" (tanh), "relu", "silu"/"swish".
torch::Tensor Activate(const torch::Tensor& x, const std::string& name);

// in -> act (gated: act(in[:, :I]) * in[:, I:]) -> out; parameters "mlp_in.*", "mlp_out.*"
// registered on the owner so checkpoint names stay flat.
class FeedForward {
 public:
  FeedForward(torch::nn::Module& owner, int64_t hidden, int64_t intermediate, bool gated,
              bool in_bias, bool out_bias, std::string activation);
  // rows: [R, hidden] -> [R, hidden], in blocks of `block_rows` rows.
  torch::Tensor operator()(const torch::Tensor& rows, int64_t block_rows);

 private:
  torch::Tensor Block(const torch::Tensor& rows);

  torch::nn::Linear in_{nullptr}, out_{nullptr};
  int64_t intermediate_;
  bool gated_;
  std::string activation_;
};

// Converts the parameters of `module` and its children to `dtype`, except those of norms
// (torch::nn::LayerNorm, Norm): they stay float32, so a norm of a bfloat16 input computes its
// statistics and its affine step in float32 (LibTorch's mixed-dtype layer_norm) at no cost.
void CastParameters(torch::nn::Module& module, torch::ScalarType dtype);

// Token rows per feed-forward block: 24 MiB temporaries at an intermediate size of 1536.
inline constexpr int64_t kFeedForwardBlockRows = 4096;

}  // namespace longenc::encoder

#endif  // LONGENC_MODEL_ENCODER_BLOCKS_H_
