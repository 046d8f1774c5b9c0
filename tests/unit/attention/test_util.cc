#include "tests/unit/attention/test_util.h"

#include <utility>

#include <gtest/gtest.h>

#include "model/attention/registry.h"

namespace longenc::attention::testing {

Qkv RandomQkv(int64_t batch, int64_t heads, int64_t n, int64_t dim, uint64_t seed,
              double qk_scale) {
  torch::manual_seed(seed);
  Qkv out;
  out.q = torch::randn({batch, heads, n, dim}) * qk_scale;
  out.k = torch::randn({batch, heads, n, dim}) * qk_scale;
  out.v = torch::randn({batch, heads, n, dim});
  return out;
}

torch::Tensor RightPadded(const std::vector<int64_t>& lengths, int64_t n) {
  torch::Tensor valid = torch::zeros({static_cast<int64_t>(lengths.size()), n}, torch::kBool);
  for (size_t b = 0; b < lengths.size(); ++b) {
    valid.index_put_({static_cast<int64_t>(b), torch::indexing::Slice(0, lengths[b])}, true);
  }
  return valid;
}

Qkv WithGarbageInPadding(const Qkv& in, const torch::Tensor& key_valid) {
  const torch::Tensor pad = key_valid.logical_not().unsqueeze(1).unsqueeze(-1);
  torch::manual_seed(12345);
  Qkv out;
  out.q = torch::where(pad, torch::randn_like(in.q) * 1e3, in.q);
  out.k = torch::where(pad, torch::randn_like(in.k) * 1e3, in.k);
  out.v = torch::where(pad, torch::full_like(in.v, 1e3), in.v);
  return out;
}

std::unique_ptr<Attention> MakeVariant(const std::string& name,
                                       std::map<std::string, std::string> options,
                                       int64_t num_heads, int64_t head_dim, uint64_t seed,
                                       int64_t layer) {
  if (name != "full" && options.count("min_len_efficient") == 0) {
    options["min_len_efficient"] = "0";
  }
  AttentionSpec spec;
  spec.layer = layer;
  spec.num_layers = 6;
  spec.num_heads = num_heads;
  spec.head_dim = head_dim;
  spec.seed = seed;
  spec.options = std::move(options);
  auto attention = Registry::Global().Create(name, spec);
  EXPECT_TRUE(attention.ok()) << attention.status();
  if (!attention.ok()) return nullptr;
  return std::move(attention).value();
}

torch::Tensor DenseReference(const torch::Tensor& q, const torch::Tensor& k,
                             const torch::Tensor& v, const torch::Tensor& key_valid) {
  const torch::Tensor qd = q.to(torch::kDouble), kd = k.to(torch::kDouble),
                      vd = v.to(torch::kDouble);
  torch::Tensor logits = torch::matmul(qd, kd.transpose(-1, -2)) / std::sqrt(double(q.size(-1)));
  logits = logits.masked_fill(key_valid.logical_not().unsqueeze(1).unsqueeze(1),
                              -std::numeric_limits<double>::infinity());
  torch::Tensor out = torch::matmul(torch::softmax(logits, -1), vd);
  return out.masked_fill(key_valid.logical_not().unsqueeze(1).unsqueeze(-1), 0.0)
      .to(torch::kFloat);
}

double MaxAbsDiff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kDouble) - b.to(torch::kDouble)).abs().max().item<double>();
}

double MaxAbsDiffValid(const torch::Tensor& a, const torch::Tensor& b,
                       const torch::Tensor& key_valid) {
  const torch::Tensor rows = key_valid.unsqueeze(1).unsqueeze(-1).expand_as(a);
  return MaxAbsDiff(a.masked_select(rows), b.masked_select(rows));
}

}  // namespace longenc::attention::testing
