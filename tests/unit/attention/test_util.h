// Helpers shared by the attention tests: seeded inputs, padding masks, variant creation with
// the efficient path forced, and comparisons.
#ifndef LONGENC_TESTS_UNIT_ATTENTION_TEST_UTIL_H_
#define LONGENC_TESTS_UNIT_ATTENTION_TEST_UTIL_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "model/attention/attention.h"

namespace longenc::attention::testing {

struct Qkv {
  torch::Tensor q, k, v;  // [B, H, N, D] float32
};

// Standard normal q, k, v from a fixed seed (q and k scaled so that softmax is neither flat
// nor one-hot, like trained BERT heads).
Qkv RandomQkv(int64_t batch, int64_t heads, int64_t n, int64_t dim, uint64_t seed,
              double qk_scale = 2.0);

// [B, N] bool with the first lengths[b] positions valid (right padding).
torch::Tensor RightPadded(const std::vector<int64_t>& lengths, int64_t n);

// Overwrites padded positions of q, k, v with large garbage values.
Qkv WithGarbageInPadding(const Qkv& in, const torch::Tensor& key_valid);

// Creates `name` with `options`; unless the variant is "full", min_len_efficient=0 is added
// (when not given) so the approximate path runs even on short inputs. Aborts the test on error.
std::unique_ptr<Attention> MakeVariant(const std::string& name,
                                       std::map<std::string, std::string> options = {},
                                       int64_t num_heads = 2, int64_t head_dim = 32,
                                       uint64_t seed = 7, int64_t layer = 0);

// Exact attention in float64 computed densely (independent of the production code path).
torch::Tensor DenseReference(const torch::Tensor& q, const torch::Tensor& k,
                             const torch::Tensor& v, const torch::Tensor& key_valid);

double MaxAbsDiff(const torch::Tensor& a, const torch::Tensor& b);
// Max abs difference restricted to valid query rows ([B, H, N, D] tensors).
double MaxAbsDiffValid(const torch::Tensor& a, const torch::Tensor& b,
                       const torch::Tensor& key_valid);

}  // namespace longenc::attention::testing

#endif  // LONGENC_TESTS_UNIT_ATTENTION_TEST_UTIL_H_
