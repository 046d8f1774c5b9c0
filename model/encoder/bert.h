// BERT encoder as LibTorch modules whose parameter names match Hugging Face checkpoints
// ("embeddings.word_embeddings.weight", "encoder.layer.0.attention.self.query.weight", ...),
// so weights.h can load a model.safetensors by name.
//
// The attention core is not part of the module tree: each forward receives one
// attention::Attention per layer, so one loaded model serves every attention variant.
// Position embeddings also come from outside (model/positions/), which is how documents
// longer than the position table are encoded.
//
// Precision: weights and the hidden states between modules are in the model's dtype (float32,
// bfloat16, float16); LayerNorms keep float32 parameters and statistics, the embedding sum is
// formed in float32, and attention cores receive q/k/v in the model's dtype and compute in
// float32 (docs/ATTENTION.md §1.4).
//
// Thread-compatible: run forwards from one thread (the inference thread).
#ifndef LONGENC_MODEL_ENCODER_BERT_H_
#define LONGENC_MODEL_ENCODER_BERT_H_

#include <vector>

#include <torch/torch.h>

#include "model/attention/attention.h"
#include "model/encoder/config.h"

namespace longenc::encoder {

// dense + dropout(no-op) + LayerNorm(x + residual): BertSelfOutput and BertOutput.
class BertOutputImpl : public torch::nn::Module {
 public:
  BertOutputImpl(int64_t in, int64_t out, double eps);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& residual);

 private:
  torch::nn::Linear dense_{nullptr};
  torch::nn::LayerNorm layer_norm_{nullptr};
};
TORCH_MODULE(BertOutput);

class BertSelfAttentionImpl : public torch::nn::Module {
 public:
  explicit BertSelfAttentionImpl(const EncoderConfig& config);
  // x: [B, N, Hd]; key_valid: [B, N] bool. query_scale multiplies the logits (log-n scaling
  // for long documents; 1 otherwise). Returns the merged context [B, N, Hd].
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& key_valid,
                        attention::Attention& core, double query_scale);

 private:
  int64_t heads_;
  int64_t head_dim_;
  torch::nn::Linear query_{nullptr}, key_{nullptr}, value_{nullptr};
};
TORCH_MODULE(BertSelfAttention);

class BertLayerImpl : public torch::nn::Module {
 public:
  explicit BertLayerImpl(const EncoderConfig& config);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& key_valid,
                        attention::Attention& core, double query_scale);
  // Token rows per feed-forward block (default 4096); tests set small values.
  void set_feed_forward_rows(int64_t rows) { feed_forward_rows_ = rows; }

 private:
  // intermediate -> activation -> output on rows [R, hidden]; position-wise.
  torch::Tensor FeedForward(const torch::Tensor& rows);

  BertSelfAttention self_attention_{nullptr};
  BertOutput attention_output_{nullptr};
  torch::nn::Linear intermediate_{nullptr};
  BertOutput output_{nullptr};
  std::string activation_;
  int64_t feed_forward_rows_;
};
TORCH_MODULE(BertLayer);

class BertModelImpl : public torch::nn::Module {
 public:
  // Parameters in `dtype` (CastParameters' rule), converted layer by layer as they are built so
  // that a reduced-precision model never holds a float32 copy of itself.
  explicit BertModelImpl(const EncoderConfig& config, torch::ScalarType dtype = torch::kFloat);

  // input_ids: [B, N] int64; key_valid: [B, N] bool; position_embeddings: [N, Hd] (row i is
  // the embedding of position i, as model/positions/ computes it); cores: one per layer.
  // Returns the last hidden state [B, N, Hd].
  torch::Tensor forward(const torch::Tensor& input_ids, const torch::Tensor& key_valid,
                        const torch::Tensor& position_embeddings,
                        const std::vector<attention::Attention*>& cores, double query_scale);

  // The learned position table [max_position_embeddings, Hd], in the model's dtype.
  const torch::Tensor& position_table() const { return position_embeddings_->weight; }
  const EncoderConfig& config() const { return config_; }
  torch::ScalarType dtype() const { return dtype_; }

 private:
  EncoderConfig config_;
  torch::ScalarType dtype_;
  torch::nn::Embedding word_embeddings_{nullptr}, position_embeddings_{nullptr},
      token_type_embeddings_{nullptr};
  torch::nn::LayerNorm embeddings_norm_{nullptr};
  std::vector<BertLayer> layers_;
};
TORCH_MODULE(BertModel);

}  // namespace longenc::encoder

#endif  // LONGENC_MODEL_ENCODER_BERT_H_
