#include "model/encoder/packed_encoder.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <optional>
#include <string>
#include <utility>

#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include "model/checkpoint.h"
#include "model/encoder/short_attention.h"

// at::parallel_for is an inline OpenMP loop in this LibTorch: compiled without -fopenmp it
// runs on one thread (model/encoder/CMakeLists.txt sets the flag).
#if AT_PARALLEL_OPENMP && !defined(_OPENMP)
#error "packed_encoder.cc must be compiled with -fopenmp"
#endif

namespace longenc::encoder {
namespace {

// Token rows per feed-forward block, as BertLayer (bounded temporaries, a checkpoint each).
constexpr int64_t kFeedForwardRows = 4096;
// The most memory the reordered copy of the linear weights may take (bert-base: 340 MB).
constexpr int64_t kMaxReorderedBytes = int64_t{512} << 20;

// oneDNN's fused linear ops, registered by LibTorch's CPU library (the ones torch.compile's
// CPU backend emits); looked up once.
using LinearFn = at::Tensor(const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
                            c10::string_view, c10::List<std::optional<at::Scalar>>,
                            std::optional<c10::string_view>);
using LinearAddFn = at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                               const std::optional<at::Tensor>&, c10::string_view);
using ReorderFn = at::Tensor(const at::Tensor&, std::optional<int64_t>);

const c10::TypedOperatorHandle<LinearFn>& LinearOp() {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("mkldnn::_linear_pointwise", "")
                             .typed<LinearFn>();
  return op;
}

const c10::TypedOperatorHandle<LinearAddFn>& LinearAddOp() {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("mkldnn::_linear_pointwise", "binary")
                             .typed<LinearAddFn>();
  return op;
}

// y = x Wᵀ + b, then the post-op `attr` ("none", "gelu", "relu").
torch::Tensor Project(const torch::Tensor& x, const torch::Tensor& weight,
                      const torch::Tensor& bias, const char* attr, const char* algorithm) {
  return LinearOp().call(x, weight, bias, attr, c10::List<std::optional<at::Scalar>>(),
                         std::optional<c10::string_view>(algorithm));
}

// y = x Wᵀ + b + residual.
torch::Tensor ProjectAdd(const torch::Tensor& x, const torch::Tensor& residual,
                         const torch::Tensor& weight, const torch::Tensor& bias) {
  return LinearAddOp().call(x, residual, weight, bias, "add");
}

// Calls attend(first row, length, head) for every head of every document, on the intra-op
// threads: (document, head) pairs are dealt to one list per thread, longest first, each to the
// least-loaded list (cost ~ n²), so that one long document beside short ones does not leave a
// thread idle.
template <typename Attend>
void ForEachHead(const std::vector<int64_t>& lengths, int64_t heads, const Attend& attend) {
  std::vector<int64_t> first(lengths.size(), 0), order(lengths.size());
  for (size_t i = 1; i < lengths.size(); ++i) first[i] = first[i - 1] + lengths[i - 1];
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return lengths[a] > lengths[b]; });
  const int64_t units = static_cast<int64_t>(lengths.size()) * heads;
  const int64_t workers = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), units));
  std::vector<std::vector<std::pair<int64_t, int64_t>>> lists(workers);  // (document, head)
  std::vector<double> load(workers, 0.0);
  for (int64_t doc : order) {
    const double cost = static_cast<double>(lengths[doc]) * static_cast<double>(lengths[doc] + 64);
    for (int64_t head = 0; head < heads; ++head) {
      const auto least = std::min_element(load.begin(), load.end()) - load.begin();
      lists[least].emplace_back(doc, head);
      load[least] += cost;
    }
  }
  at::parallel_for(0, workers, 1, [&](int64_t begin, int64_t end) {
    for (int64_t w = begin; w < end; ++w) {
      for (const auto& [doc, head] : lists[w]) attend(first[doc], lengths[doc], head);
    }
  });
}

}  // namespace

std::unique_ptr<PackedEncoder> PackedEncoder::Create(torch::nn::Module& module,
                                                     const EncoderConfig& config,
                                                     const torch::Tensor& position_table) {
  if (!at::hasMKLDNN() || config.positions != PositionKind::kLearned || config.pre_norm ||
      config.gated_mlp || !config.attention_bias || !config.mlp_in_bias ||
      !config.mlp_out_bias || !config.norm_bias || config.final_norm ||
      !config.local_layers.empty() || !position_table.defined()) {
    return nullptr;
  }
  const auto params = module.named_parameters(/*recurse=*/true);
  auto get = [&](const std::string& name) -> torch::Tensor {
    const torch::Tensor* p = params.find(name);
    return p == nullptr ? torch::Tensor() : p->detach();
  };
  torch::Tensor word = get("embeddings.word_embeddings.weight");
  // The model's dtype is its linear layers' (the word table may be a map of the file).
  const torch::Tensor first_query = get("encoder.layer.0.attention.self.query.weight");
  if (!word.defined() || !first_query.defined() || !first_query.device().is_cpu()) return nullptr;
  const torch::ScalarType dtype = first_query.scalar_type();
  if (dtype != torch::kFloat && dtype != torch::kBFloat16) return nullptr;

  // The reordered weights are a second copy of the linear layers: bounded, so that a large
  // model (bge-m3: 1.2 GB in float32) keeps its memory and the padded path.
  int64_t linear_bytes = 0;
  for (const auto& item : params) {
    if (item.key().rfind("encoder.layer.", 0) == 0 && item.value().dim() == 2) {
      linear_bytes += item.value().numel() * static_cast<int64_t>(c10::elementSize(dtype));
    }
  }
  if (linear_bytes > kMaxReorderedBytes) return nullptr;
  std::unique_ptr<PackedEncoder> encoder(new PackedEncoder());
  encoder->config_ = config;
  encoder->dtype_ = dtype;
  if (config.hidden_act == "gelu") {
    encoder->activation_ = "gelu";
  } else if (config.hidden_act == "relu") {
    encoder->activation_ = "relu";
  } else if (config.hidden_act == "gelu_new" || config.hidden_act == "gelu_pytorch_tanh") {
    encoder->activation_ = "gelu";
    encoder->algorithm_ = "tanh";
  } else {
    return nullptr;
  }
  try {
    auto reorder = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("mkldnn::_reorder_linear_weight", "")
                       .typed<ReorderFn>();
    // The reorder is tuned for a row count; a short-document batch has a few thousand rows.
    const std::optional<int64_t> rows = 2048;
    auto linear = [&](const std::string& prefix) -> std::optional<Linear> {
      torch::Tensor w = get(prefix + ".weight"), b = get(prefix + ".bias");
      if (!w.defined() || !b.defined()) return std::nullopt;
      return Linear{reorder.call(w.to(dtype).contiguous(), rows), b.to(dtype)};
    };
    auto norm = [&](const std::string& prefix) -> std::optional<Norm> {
      torch::Tensor w = get(prefix + ".weight"), b = get(prefix + ".bias");
      if (!w.defined() || !b.defined()) return std::nullopt;
      return Norm{w.to(torch::kFloat), b.to(torch::kFloat)};
    };
    encoder->word_ = word;
    encoder->positions_ = position_table.detach().to(torch::kFloat);
    if (torch::Tensor t = get("embeddings.token_type_embeddings.weight");
        t.defined() && t.size(0) > 0) {
      encoder->token_type_ = t[0].to(torch::kFloat);
    }
    auto embeddings_norm = norm("embeddings.LayerNorm");
    if (!embeddings_norm) return nullptr;
    encoder->embeddings_norm_ = *embeddings_norm;
    for (int64_t i = 0; i < config.num_hidden_layers; ++i) {
      const std::string p = "encoder.layer." + std::to_string(i) + ".";
      const std::string self = p + "attention.self.";
      torch::Tensor wq = get(self + "query.weight"), wk = get(self + "key.weight"),
                    wv = get(self + "value.weight");
      torch::Tensor bq = get(self + "query.bias"), bk = get(self + "key.bias"),
                    bv = get(self + "value.bias");
      if (!wq.defined() || !wk.defined() || !wv.defined() || !bq.defined() || !bk.defined() ||
          !bv.defined()) {
        return nullptr;
      }
      Layer layer;
      layer.qkv = Linear{reorder.call(torch::cat({wq, wk, wv}, 0).to(dtype), rows),
                         torch::cat({bq, bk, bv}, 0).to(dtype)};
      auto attention_out = linear(p + "attention.output.dense");
      auto intermediate = linear(p + "intermediate.dense");
      auto output = linear(p + "output.dense");
      auto attention_norm = norm(p + "attention.output.LayerNorm");
      auto output_norm = norm(p + "output.LayerNorm");
      if (!attention_out || !intermediate || !output || !attention_norm || !output_norm) {
        return nullptr;
      }
      layer.attention_out = *attention_out;
      layer.intermediate = *intermediate;
      layer.output = *output;
      layer.attention_norm = *attention_norm;
      layer.output_norm = *output_norm;
      encoder->layers_.push_back(std::move(layer));
    }
  } catch (const c10::Error&) {
    return nullptr;  // oneDNN's ops are missing or differ in this LibTorch: the padded path
  }
  return encoder;
}

torch::Tensor PackedEncoder::LayerNorm(const torch::Tensor& x, const Norm& norm) const {
  return torch::layer_norm(x.to(torch::kFloat), {config_.hidden_size}, norm.weight, norm.bias,
                           config_.layer_norm_eps)
      .to(dtype_);
}

torch::Tensor PackedEncoder::Embed(const torch::Tensor& ids,
                                   const std::vector<int64_t>& lengths) const {
  std::vector<int64_t> position_ids;
  position_ids.reserve(static_cast<size_t>(ids.size(0)));
  for (int64_t n : lengths) {
    for (int64_t p = 0; p < n; ++p) position_ids.push_back(p);
  }
  const torch::Tensor positions =
      torch::tensor(position_ids, torch::TensorOptions().dtype(torch::kLong)).to(ids.device());
  // Every document is a single segment (token type 0); sum and norm in float32.
  torch::Tensor x = word_.index_select(0, ids).to(torch::kFloat) +
                    positions_.index_select(0, positions);
  if (token_type_.defined()) x = x + token_type_;
  return LayerNorm(x, embeddings_norm_);
}

torch::Tensor PackedEncoder::Attend(const torch::Tensor& qkv,
                                    const std::vector<int64_t>& lengths) const {
  const int64_t heads = config_.num_attention_heads, head_dim = config_.head_dim();
  const int64_t hidden = config_.hidden_size;
  torch::Tensor context = torch::empty({qkv.size(0), hidden}, qkv.options());
  const bool bf16 = dtype_ == torch::kBFloat16;
  if (qkv.is_contiguous() && (bf16 ? ShortAttentionBf16Supported(head_dim)
                                   : ShortAttentionFloatSupported(head_dim))) {
    const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
    const int64_t stride = 3 * hidden;
    auto* in = static_cast<char*>(qkv.data_ptr());
    auto* out = static_cast<char*>(context.data_ptr());
    const int64_t element = qkv.element_size();
    ForEachHead(lengths, heads, [&](int64_t first, int64_t n, int64_t head) {
      const int64_t column = head * head_dim;
      const char* q = in + (first * stride + column) * element;
      const char* k = q + hidden * element;
      const char* v = k + hidden * element;
      char* o = out + (first * hidden + column) * element;
      if (bf16) {
        ShortAttentionBf16(reinterpret_cast<const uint16_t*>(q),
                           reinterpret_cast<const uint16_t*>(k),
                           reinterpret_cast<const uint16_t*>(v), stride, n, head_dim, scale,
                           reinterpret_cast<uint16_t*>(o), hidden);
      } else {
        ShortAttentionFloat(reinterpret_cast<const float*>(q), reinterpret_cast<const float*>(k),
                            reinterpret_cast<const float*>(v), stride, n, head_dim, scale,
                            reinterpret_cast<float*>(o), hidden);
      }
    });
    return context;
  }
  int64_t first = 0;
  for (int64_t n : lengths) {
    // [n, 3·Hd] -> [3, H, n, D]: views; SDPA reads the strides.
    const torch::Tensor part =
        qkv.narrow(0, first, n).view({n, 3, heads, head_dim}).permute({1, 2, 0, 3});
    const torch::Tensor out = at::scaled_dot_product_attention(
        part[0].unsqueeze(0).to(torch::kFloat), part[1].unsqueeze(0).to(torch::kFloat),
        part[2].unsqueeze(0).to(torch::kFloat));  // [1, H, n, D]
    context.narrow(0, first, n).view({n, heads, head_dim}).copy_(out[0].transpose(0, 1));
    first += n;
  }
  return context;
}

torch::Tensor PackedEncoder::Forward(const torch::Tensor& ids,
                                     const std::vector<int64_t>& lengths) const {
  torch::Tensor x = Embed(ids, lengths);  // [T, Hd]
  const int64_t rows = x.size(0);
  for (const Layer& layer : layers_) {
    model::AtCheckpoint();
    const torch::Tensor qkv = Project(x, layer.qkv.weight, layer.qkv.bias, "none", "");
    const torch::Tensor attended = LayerNorm(
        ProjectAdd(Attend(qkv, lengths), x, layer.attention_out.weight, layer.attention_out.bias),
        layer.attention_norm);
    auto feed_forward = [&](const torch::Tensor& in) {
      const torch::Tensor h = Project(in, layer.intermediate.weight, layer.intermediate.bias,
                                      activation_, algorithm_);
      return LayerNorm(ProjectAdd(h, in, layer.output.weight, layer.output.bias),
                       layer.output_norm);
    };
    if (rows <= kFeedForwardRows) {
      x = feed_forward(attended);
      continue;
    }
    x = torch::empty_like(attended);
    for (int64_t start = 0; start < rows; start += kFeedForwardRows) {
      model::AtCheckpoint();
      const int64_t count = std::min(kFeedForwardRows, rows - start);
      x.narrow(0, start, count).copy_(feed_forward(attended.narrow(0, start, count)));
    }
  }
  return x.to(torch::kFloat);
}

}  // namespace longenc::encoder
