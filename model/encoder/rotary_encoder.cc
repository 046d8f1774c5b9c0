#include "model/encoder/rotary_encoder.h"

#include <string>

#include "model/checkpoint.h"

namespace longenc::encoder {
namespace {

// An intermediate node of a dotted parameter path ("embeddings.word").
struct Holder : torch::nn::Module {};

}  // namespace

RotaryLayerImpl::RotaryLayerImpl(const EncoderConfig& c, int64_t index)
    : heads_(c.num_attention_heads),
      head_dim_(c.head_dim()),
      pre_norm_(c.pre_norm),
      rope_(c.is_local(index) ? c.local_rope : c.rope, c.head_dim()) {
  // Pre-norm layer 0 reads the already normalised embeddings (ModernBERT's Identity).
  if (!(c.pre_norm && index == 0)) {
    attn_norm_ = register_module("attn_norm", Norm(c.hidden_size, c.layer_norm_eps, c.norm_bias));
  }
  qkv_ = register_module("qkv", torch::nn::Linear(torch::nn::LinearOptions(c.hidden_size, 3 * c.hidden_size)
                                                       .bias(c.attention_bias)));
  out_ = register_module("out", torch::nn::Linear(torch::nn::LinearOptions(c.hidden_size, c.hidden_size)
                                                       .bias(c.attention_bias)));
  mlp_norm_ = register_module("mlp_norm", Norm(c.hidden_size, c.layer_norm_eps, c.norm_bias));
  feed_forward_ = std::make_unique<FeedForward>(*this, c.hidden_size, c.intermediate_size, c.gated_mlp,
                                                c.mlp_in_bias, c.mlp_out_bias, c.hidden_act);
  if (c.is_local(index)) banded_ = std::make_unique<BandedAttention>(c.local_window);
}

torch::Tensor RotaryLayerImpl::Attend(const torch::Tensor& x, const torch::Tensor& key_valid,
                                      const torch::Tensor& cos, const torch::Tensor& sin,
                                      attention::Attention& core, double query_scale) {
  const int64_t batch = x.size(0), length = x.size(1);
  // [B, N, 3·Hd] -> [3, B, H, N, D]: rows are [q | k | v], each head-major.
  torch::Tensor qkv = qkv_(x).view({batch, length, 3, heads_, head_dim_}).permute({2, 0, 3, 1, 4});
  model::AtCheckpoint();  // the fused projection is the longest step before attention
  // Rotation in float32, like the cores after it (cos/sin are float32); no-ops for float32.
  torch::Tensor q = rope_.Apply(qkv[0].to(torch::kFloat), cos, sin);
  torch::Tensor k = rope_.Apply(qkv[1].to(torch::kFloat), cos, sin).contiguous();
  // Log-n scaling keeps a softmax over n keys sharp; a band always has 2w + 1 keys.
  if (query_scale != 1.0 && !banded_) q = q * query_scale;
  attention::Attention& attend = banded_ ? *banded_ : core;
  torch::Tensor context =
      attend.Forward(q.contiguous(), k, qkv[2].to(torch::kFloat).contiguous(), key_valid).to(x.scalar_type());
  return out_(context.transpose(1, 2).reshape({batch, length, heads_ * head_dim_}));
}

torch::Tensor RotaryLayerImpl::forward(const torch::Tensor& x, const torch::Tensor& key_valid,
                                       const torch::Tensor& cos, const torch::Tensor& sin,
                                       attention::Attention& core, double query_scale) {
  const int64_t hidden = x.size(-1);
  if (pre_norm_) {
    torch::Tensor h = x + Attend(attn_norm_ ? attn_norm_(x) : x, key_valid, cos, sin, core, query_scale);
    torch::Tensor rows = h.reshape({-1, hidden});
    return (rows + (*feed_forward_)(mlp_norm_(rows), feed_forward_rows_)).view(x.sizes());
  }
  torch::Tensor rows = attn_norm_(x + Attend(x, key_valid, cos, sin, core, query_scale)).reshape({-1, hidden});
  return mlp_norm_(rows + (*feed_forward_)(rows, feed_forward_rows_)).view(x.sizes());
}

RotaryEncoderImpl::RotaryEncoderImpl(const EncoderConfig& c, torch::ScalarType dtype)
    : config_(c), dtype_(dtype), global_rope_(c.rope, c.head_dim()), local_rope_(c.local_rope, c.head_dim()) {
  auto embeddings = register_module("embeddings", std::make_shared<Holder>());
  // The largest tensor is made in `dtype` directly and left uninitialised: the loader fills
  // every row or points it into the file's mapping, so initialising it would make a
  // bge-m3-sized table (1 GB) resident for nothing (bench/load_memory.py). Tests that build a
  // module without weights give it finite values themselves.
  word_ = embeddings->register_module(
      "word", torch::nn::Embedding(torch::nn::EmbeddingOptions(c.vocab_size, c.hidden_size)
                                       ._weight(torch::empty({c.vocab_size, c.hidden_size},
                                                             torch::TensorOptions().dtype(dtype)))));
  if (c.type_vocab_size > 0) {
    token_type_ = embeddings->register_module("token_type",
                                              torch::nn::Embedding(c.type_vocab_size, c.hidden_size));
  }
  embeddings_norm_ = embeddings->register_module("norm", Norm(c.hidden_size, c.layer_norm_eps, c.norm_bias));
  auto layers = register_module("layers", std::make_shared<Holder>());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    layers_.push_back(layers->register_module(std::to_string(i), RotaryLayer(c, i)));
    CastParameters(*layers_.back(), dtype);
  }
  if (c.final_norm) {
    final_norm_ = register_module("final_norm", Norm(c.hidden_size, c.layer_norm_eps, c.norm_bias));
  }
  CastParameters(*this, dtype);
}

torch::Tensor RotaryEncoderImpl::forward(const torch::Tensor& input_ids, const torch::Tensor& key_valid,
                                         const std::vector<attention::Attention*>& cores,
                                         double query_scale) {
  TORCH_CHECK(cores.size() == layers_.size(), "one attention core per layer is required");
  const int64_t n = input_ids.size(1);
  torch::Tensor x = word_(input_ids).to(torch::kFloat);  // [B, N, Hd]; summed and normed in float32
  if (token_type_) x = x + token_type_->weight[0].to(torch::kFloat);  // every document is one segment
  x = embeddings_norm_(x).to(dtype_);
  auto [cos, sin] = global_rope_.CosSin(n, x.device());
  torch::Tensor local_cos, local_sin;
  if (!config_.local_layers.empty()) std::tie(local_cos, local_sin) = local_rope_.CosSin(n, x.device());
  for (size_t i = 0; i < layers_.size(); ++i) {
    model::AtCheckpoint();
    const bool local = layers_[i]->local();
    x = layers_[i]->forward(x, key_valid, local ? local_cos : cos, local ? local_sin : sin, *cores[i],
                            query_scale);
  }
  return final_norm_ ? final_norm_(x) : x;
}

}  // namespace longenc::encoder
