// The AVX-512 attention of one head of a short document equals softmax attention computed in
// float64 on the same inputs, for lengths around every tile edge, head sizes 16..96, large
// scores, and inputs laid out as rows of a fused Q/K/V projection whose neighbouring rows it
// must never read.
#include "model/encoder/short_attention.h"

#include <cmath>
#include <limits>

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace longenc::encoder {
namespace {

using torch::indexing::Slice;

constexpr int64_t kHeads = 2;
constexpr int64_t kHead = 1;  // the head under test; head 0 is someone else's data

struct Case {
  int64_t n, head_dim;
  float query_gain;  // larger: sharper softmax rows
};

// [n + 2, 3, kHeads, head_dim] rows of a fused projection; the two rows after the document
// are NaN, so a read past row n shows in the result.
torch::Tensor FusedRows(const Case& c, torch::ScalarType dtype) {
  torch::Tensor rows = torch::randn({c.n + 2, 3, kHeads, c.head_dim});
  rows.index({Slice(), 0}).mul_(c.query_gain);
  rows.index_put_({Slice(c.n)}, std::numeric_limits<float>::quiet_NaN());
  return rows.to(dtype);
}

// softmax(q kᵀ / √D) v in float64 for head kHead of the first n rows.
torch::Tensor Reference(const torch::Tensor& rows, int64_t n) {
  const torch::Tensor head = rows.narrow(0, 0, n).select(2, kHead).to(torch::kDouble);
  const torch::Tensor q = head.select(1, 0), k = head.select(1, 1), v = head.select(1, 2);
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(1)));
  return torch::softmax(torch::matmul(q, k.t()) * scale, -1).matmul(v);
}

std::vector<Case> Cases() {
  std::vector<Case> cases;
  for (int64_t n : {1, 2, 3, 4, 5, 15, 16, 17, 63, 64, 65, 100, 257, 512}) {
    cases.push_back({n, 32, 1.0f});
  }
  for (int64_t d : {16, 48, 64, 96}) cases.push_back({77, d, 1.0f});
  cases.push_back({130, 32, 8.0f});
  cases.push_back({130, 64, 8.0f});
  return cases;
}

template <typename Scalar, typename Bits, typename Kernel>
torch::Tensor RunHead(const torch::Tensor& rows, const Case& c, Kernel kernel) {
  const int64_t stride = 3 * kHeads * c.head_dim, hidden = kHeads * c.head_dim;
  torch::Tensor out = torch::full({c.n, hidden}, 7.0, rows.options());
  const auto* base = reinterpret_cast<const Bits*>(rows.data_ptr<Scalar>());
  const Bits* q = base + kHead * c.head_dim;
  kernel(q, q + hidden, q + 2 * hidden, stride, c.n, c.head_dim,
         1.0f / std::sqrt(static_cast<float>(c.head_dim)),
         reinterpret_cast<Bits*>(out.data_ptr<Scalar>()) + kHead * c.head_dim, hidden);
  // Head 0's columns of the output are someone else's: untouched.
  EXPECT_TRUE(out.narrow(1, 0, c.head_dim).eq(7.0).all().item<bool>());
  return out.narrow(1, kHead * c.head_dim, c.head_dim);
}

TEST(ShortAttentionTest, FloatEqualsSoftmaxAttention) {
  if (!ShortAttentionFloatSupported(32)) GTEST_SKIP() << "this CPU has no AVX-512";
  torch::manual_seed(3);
  for (const Case& c : Cases()) {
    ASSERT_TRUE(ShortAttentionFloatSupported(c.head_dim));
    const torch::Tensor rows = FusedRows(c, torch::kFloat);
    const torch::Tensor got = RunHead<float, float>(rows, c, ShortAttentionFloat);
    const double diff = (got.to(torch::kDouble) - Reference(rows, c.n)).abs().max().item<double>();
    EXPECT_LT(diff, 2e-5) << "n " << c.n << " head_dim " << c.head_dim;
  }
}

TEST(ShortAttentionTest, Bf16EqualsSoftmaxAttentionWithinRounding) {
  if (!ShortAttentionBf16Supported(32)) GTEST_SKIP() << "this CPU has no AVX512-BF16";
  torch::manual_seed(4);
  for (const Case& c : Cases()) {
    const torch::Tensor rows = FusedRows(c, torch::kBFloat16);
    const torch::Tensor got =
        RunHead<at::BFloat16, uint16_t>(rows, c, ShortAttentionBf16).to(torch::kDouble);
    const torch::Tensor error = (got - Reference(rows, c.n)).abs();
    // The probabilities and the output are rounded to bfloat16 (8 significant bits): errors of
    // a few 2⁻⁹ of the values (about 1 here), never more.
    EXPECT_LT(error.max().item<double>(), 3e-2) << "n " << c.n << " head_dim " << c.head_dim;
    EXPECT_LT(error.mean().item<double>(), 4e-3) << "n " << c.n << " head_dim " << c.head_dim;
  }
}

TEST(ShortAttentionTest, HeadSizesOffSixteenAreNotSupported) {
  EXPECT_FALSE(ShortAttentionFloatSupported(24));
  EXPECT_FALSE(ShortAttentionBf16Supported(40));
  EXPECT_FALSE(ShortAttentionFloatSupported(0));
}

}  // namespace
}  // namespace longenc::encoder
