// Rotary position embeddings (RoPE), shared by every rotary family: the inverse frequencies of
// each scheme in config.h (default, linear, dynamic NTK, YaRN), the cos/sin tables of a
// document and their application to queries and keys. The arithmetic follows transformers'
// modeling_rope_utils op for op in fp32, so positions past 2k agree to the last bits.
//
// Rotation is GPT-NeoX's half split: x·cos + rotate_half(x)·sin on the first rotary_dim()
// dimensions of each head; the rest pass through (nomic's rotary_emb_fraction < 1).
// Thread-safety: immutable after construction.
#ifndef LONGENC_MODEL_ENCODER_ROPE_H_
#define LONGENC_MODEL_ENCODER_ROPE_H_

#include <cstdint>
#include <utility>

#include <torch/torch.h>

#include "model/encoder/config.h"

namespace longenc::encoder {

class Rope {
 public:
  Rope(const RopeConfig& config, int64_t head_dim);

  // cos and sin for positions 0..n-1: [n, rotary_dim()] fp32 on `device`. Dynamic NTK scales
  // with n itself (one document at a time), so n past the trained length changes the table.
  std::pair<torch::Tensor, torch::Tensor> CosSin(int64_t n, const torch::Device& device) const;
  // x: [B, H, N, D]; cos, sin: [N, rotary_dim()]. Returns the rotated x.
  torch::Tensor Apply(const torch::Tensor& x, const torch::Tensor& cos,
                      const torch::Tensor& sin) const;
  int64_t rotary_dim() const { return rotary_dim_; }

 private:
  torch::Tensor InverseFrequencies(int64_t n) const;  // [rotary_dim / 2] fp32

  RopeConfig config_;
  int64_t rotary_dim_;
  double attention_scaling_ = 1.0;  // YaRN's cos/sin scale
};

}  // namespace longenc::encoder

#endif  // LONGENC_MODEL_ENCODER_ROPE_H_
