// The encoder of the RoPE families (nomic_bert, gte, modernbert): token embeddings (+ token
// type 0) and a norm, then layers of fused-QKV attention with rotated queries and keys and a
// (gated) feed-forward, post-norm or pre-norm as the config says, optionally a final norm.
// Parameter names are the encoder's own ("layers.3.qkv.weight"); each family's WeightRules map
// its published checkpoint names onto them (families/).
//
// Attention variants receive rotated q/k and never know the family. Local layers (ModernBERT's
// sliding window) own a BandedAttention and ignore the variant passed for them; global layers
// use the variant. Precision as in bert.h: weights and hidden states in the model's dtype, norms in
// float32; the rotation and every attention core run in float32 and the context returns in the
// model's dtype. Thread-compatible: run forwards from one thread.
#ifndef LONGENC_MODEL_ENCODER_ROTARY_ENCODER_H_
#define LONGENC_MODEL_ENCODER_ROTARY_ENCODER_H_

#include <memory>
#include <vector>

#include <torch/torch.h>

#include "model/attention/attention.h"
#include "model/encoder/banded_attention.h"
#include "model/encoder/blocks.h"
#include "model/encoder/config.h"
#include "model/encoder/rope.h"

namespace longenc::encoder {

class RotaryLayerImpl : public torch::nn::Module {
 public:
  RotaryLayerImpl(const EncoderConfig& config, int64_t index);
  // x: [B, N, Hd]; cos/sin: this layer's rotary tables [N, rotary_dim].
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& key_valid,
                        const torch::Tensor& cos, const torch::Tensor& sin,
                        attention::Attention& core, double query_scale);
  bool local() const { return banded_ != nullptr; }
  void set_feed_forward_rows(int64_t rows) { feed_forward_rows_ = rows; }

 private:
  torch::Tensor Attend(const torch::Tensor& x, const torch::Tensor& key_valid,
                       const torch::Tensor& cos, const torch::Tensor& sin,
                       attention::Attention& core, double query_scale);

  int64_t heads_, head_dim_;
  bool pre_norm_;
  Rope rope_;
  Norm attn_norm_{nullptr}, mlp_norm_{nullptr};  // attn_norm_ is null for ModernBERT's layer 0
  torch::nn::Linear qkv_{nullptr}, out_{nullptr};
  std::unique_ptr<FeedForward> feed_forward_;
  std::unique_ptr<BandedAttention> banded_;
  int64_t feed_forward_rows_ = kFeedForwardBlockRows;
};
TORCH_MODULE(RotaryLayer);

class RotaryEncoderImpl : public torch::nn::Module {
 public:
  // Parameters in `dtype` (CastParameters' rule), converted layer by layer as they are built.
  explicit RotaryEncoderImpl(const EncoderConfig& config, torch::ScalarType dtype = torch::kFloat);
  // input_ids, key_valid: [B, N]; one core per layer (local layers ignore theirs); query_scale
  // multiplies the rotated queries. Returns the last hidden state [B, N, Hd].
  torch::Tensor forward(const torch::Tensor& input_ids, const torch::Tensor& key_valid,
                        const std::vector<attention::Attention*>& cores, double query_scale);
  const EncoderConfig& config() const { return config_; }
  torch::ScalarType dtype() const { return dtype_; }

 private:
  EncoderConfig config_;
  torch::ScalarType dtype_;
  Rope global_rope_, local_rope_;
  torch::nn::Embedding word_{nullptr}, token_type_{nullptr};
  Norm embeddings_norm_{nullptr}, final_norm_{nullptr};
  std::vector<RotaryLayer> layers_;
};
TORCH_MODULE(RotaryEncoder);

}  // namespace longenc::encoder

#endif  // LONGENC_MODEL_ENCODER_ROTARY_ENCODER_H_
