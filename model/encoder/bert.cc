#include "model/encoder/bert.h"

#include <algorithm>
#include <string>

#include "model/checkpoint.h"
#include "model/encoder/blocks.h"

namespace longenc::encoder {
namespace {

torch::nn::LayerNorm MakeLayerNorm(int64_t dim, double eps) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim}).eps(eps));
}

// A child module registered under a dotted HF path ("attention.self") needs one Module per
// path segment; this holder is that intermediate node.
struct Holder : torch::nn::Module {};

// Token rows per feed-forward block. The feed-forward is position-wise, so blocks give the same
// result while its [rows, intermediate] temporaries stay at 24 MiB instead of growing with the
// document (384 MiB per copy at 64k tokens for MiniLM's 1536).
constexpr int64_t kFeedForwardRows = 4096;

}  // namespace

BertOutputImpl::BertOutputImpl(int64_t in, int64_t out, double eps) {
  dense_ = register_module("dense", torch::nn::Linear(in, out));
  layer_norm_ = register_module("LayerNorm", MakeLayerNorm(out, eps));
}

torch::Tensor BertOutputImpl::forward(const torch::Tensor& x, const torch::Tensor& residual) {
  return layer_norm_(dense_(x) + residual);
}

BertSelfAttentionImpl::BertSelfAttentionImpl(const EncoderConfig& config)
    : heads_(config.num_attention_heads), head_dim_(config.head_dim()) {
  query_ = register_module("query", torch::nn::Linear(config.hidden_size, config.hidden_size));
  key_ = register_module("key", torch::nn::Linear(config.hidden_size, config.hidden_size));
  value_ = register_module("value", torch::nn::Linear(config.hidden_size, config.hidden_size));
}

torch::Tensor BertSelfAttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& key_valid,
                                             attention::Attention& core, double query_scale) {
  const int64_t batch = x.size(0), length = x.size(1);
  auto split = [&](const torch::Tensor& t) {  // [B, N, Hd] -> [B, H, N, D]
    return t.view({batch, length, heads_, head_dim_}).transpose(1, 2).contiguous();
  };
  // A checkpoint between the projections: at 100k tokens each takes a few tenths of a second.
  torch::Tensor q = split(query_(x));
  if (query_scale != 1.0) q = q * query_scale;
  model::AtCheckpoint();
  const torch::Tensor k = split(key_(x));
  model::AtCheckpoint();
  const torch::Tensor v = split(value_(x));
  model::AtCheckpoint();
  torch::Tensor context = core.Forward(q, k, v, key_valid);
  return context.transpose(1, 2).reshape({batch, length, heads_ * head_dim_});  // [B, N, Hd]
}

BertLayerImpl::BertLayerImpl(const EncoderConfig& config)
    : activation_(config.hidden_act), feed_forward_rows_(kFeedForwardRows) {
  // HF names: attention.self.{query,key,value}, attention.output.{dense,LayerNorm},
  // intermediate.dense, output.{dense,LayerNorm}.
  auto attention = register_module("attention", std::make_shared<Holder>());
  self_attention_ = attention->register_module("self", BertSelfAttention(config));
  attention_output_ = attention->register_module(
      "output", BertOutput(config.hidden_size, config.hidden_size, config.layer_norm_eps));
  auto intermediate = register_module("intermediate", std::make_shared<Holder>());
  intermediate_ = intermediate->register_module(
      "dense", torch::nn::Linear(config.hidden_size, config.intermediate_size));
  output_ = register_module(
      "output", BertOutput(config.intermediate_size, config.hidden_size, config.layer_norm_eps));
}

torch::Tensor BertLayerImpl::FeedForward(const torch::Tensor& rows) {
  torch::Tensor hidden = intermediate_(rows);  // [R, intermediate]
  if (activation_ == "gelu") {
    hidden = torch::gelu(hidden);
  } else if (activation_ == "relu") {
    hidden = torch::relu(hidden);
  } else {  // gelu_new, gelu_pytorch_tanh
    hidden = torch::gelu(hidden, "tanh");
  }
  return output_(hidden, rows);
}

torch::Tensor BertLayerImpl::forward(const torch::Tensor& x, const torch::Tensor& key_valid,
                                     attention::Attention& core, double query_scale) {
  const torch::Tensor attended =
      attention_output_(self_attention_(x, key_valid, core, query_scale), x)
          .reshape({-1, x.size(-1)});  // [B·N, hidden]
  const int64_t rows = attended.size(0);
  if (rows <= feed_forward_rows_) return FeedForward(attended).view(x.sizes());
  torch::Tensor out = torch::empty_like(attended);
  for (int64_t start = 0; start < rows; start += feed_forward_rows_) {
    model::AtCheckpoint();
    const int64_t count = std::min(feed_forward_rows_, rows - start);
    out.narrow(0, start, count).copy_(FeedForward(attended.narrow(0, start, count)));
  }
  return out.view(x.sizes());
}

BertModelImpl::BertModelImpl(const EncoderConfig& config, torch::ScalarType dtype)
    : config_(config), dtype_(dtype) {
  auto embeddings = register_module("embeddings", std::make_shared<Holder>());
  // The largest tensor is made in `dtype` directly and left uninitialised: the loader fills
  // every row or points it into the file's mapping, so initialising it would make a
  // bge-m3-sized table (1 GB) resident for nothing (bench/load_memory.py). Tests that build a
  // module without weights give it finite values themselves.
  word_embeddings_ = embeddings->register_module(
      "word_embeddings",
      torch::nn::Embedding(torch::nn::EmbeddingOptions(config.vocab_size, config.hidden_size)
                               ._weight(torch::empty({config.vocab_size, config.hidden_size},
                                                     torch::TensorOptions().dtype(dtype)))));
  position_embeddings_ = embeddings->register_module(
      "position_embeddings",
      torch::nn::Embedding(config.max_position_embeddings, config.hidden_size));
  token_type_embeddings_ = embeddings->register_module(
      "token_type_embeddings", torch::nn::Embedding(config.type_vocab_size, config.hidden_size));
  embeddings_norm_ = embeddings->register_module(
      "LayerNorm", MakeLayerNorm(config.hidden_size, config.layer_norm_eps));
  auto encoder = register_module("encoder", std::make_shared<Holder>());
  auto layer_list = encoder->register_module("layer", std::make_shared<Holder>());
  for (int64_t i = 0; i < config.num_hidden_layers; ++i) {
    layers_.push_back(layer_list->register_module(std::to_string(i), BertLayer(config)));
    CastParameters(*layers_.back(), dtype);
  }
  CastParameters(*this, dtype);
}

torch::Tensor BertModelImpl::forward(const torch::Tensor& input_ids, const torch::Tensor& key_valid,
                                     const torch::Tensor& position_embeddings,
                                     const std::vector<attention::Attention*>& cores,
                                     double query_scale) {
  TORCH_CHECK(cores.size() == layers_.size(), "one attention core per layer is required");
  // Every document is a single segment, so the token type is 0 everywhere. The sum and its norm
  // are formed in float32 (the position rows come from model/positions/ in float32).
  torch::Tensor x = word_embeddings_(input_ids).to(torch::kFloat) +
                    position_embeddings.to(torch::kFloat).unsqueeze(0) +
                    token_type_embeddings_->weight[0].to(torch::kFloat);  // [B, N, Hd]
  x = embeddings_norm_(x).to(dtype_);
  for (size_t i = 0; i < layers_.size(); ++i) {
    model::AtCheckpoint();
    x = layers_[i]->forward(x, key_valid, *cores[i], query_scale);
  }
  return x;
}

}  // namespace longenc::encoder
