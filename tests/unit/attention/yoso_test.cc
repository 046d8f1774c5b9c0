// YOSO: the exact equivalences T9–T11, T14, T15 and the statistical checks T12, T13 of
// docs/ATTENTION.md §6 (seeded, so they cannot flake).
#include <gtest/gtest.h>

#include "model/attention/registry.h"
#include "model/attention/yoso.h"
#include "tests/unit/attention/test_util.h"

namespace longenc::attention {
namespace {

using testing::MakeVariant;
using testing::MaxAbsDiffValid;
using testing::RandomQkv;
using testing::RightPadded;
using torch::indexing::Slice;

AttentionSpec Spec(int64_t heads, int64_t dim, uint64_t seed = 7) {
  AttentionSpec spec;
  spec.num_heads = heads;
  spec.head_dim = dim;
  spec.seed = seed;
  return spec;
}

TEST(Yoso, HashTableEqualsBruteForceCollisions) {  // T9
  const auto in = RandomQkv(2, 2, 64, 32, 41);
  const torch::Tensor valid = RightPadded({64, 40}, 64);
  const int64_t tau = 4, m = 16;
  const torch::Tensor proj = internal::MakeYosoProjections(Spec(2, 32), m, tau);
  const torch::Tensor qc = internal::YosoCodes(in.q, proj, tau);  // [B,H,N,m]
  const torch::Tensor kc = internal::YosoCodes(in.k, proj, tau);
  const torch::Tensor table = internal::YosoCumulation(qc, kc, in.v, valid, tau);
  const torch::Tensor collide =
      qc.unsqueeze(3).eq(kc.unsqueeze(2)).to(torch::kDouble).mean(-1);  // [B,H,N,N]
  const torch::Tensor keys_ok = valid.unsqueeze(1).unsqueeze(1).to(torch::kDouble);
  const torch::Tensor brute = torch::matmul(collide * keys_ok, in.v.to(torch::kDouble));
  EXPECT_LT(MaxAbsDiffValid(table, brute, valid), 1e-5);
  EXPECT_GT(collide.mean().item<double>(), 0.01);  // the test exercises real collisions
}

TEST(Yoso, CodesAreSignBitsOfProjections) {
  const auto in = RandomQkv(1, 1, 8, 16, 42);
  const torch::Tensor proj = internal::MakeYosoProjections(Spec(1, 16), 3, 5);  // [1,16,15]
  const torch::Tensor codes = internal::YosoCodes(in.q, proj, 5);
  const torch::Tensor bits = torch::matmul(in.q[0][0], proj[0]).gt(0);  // [8,15]
  for (int64_t f = 0; f < 3; ++f) {
    torch::Tensor expected = torch::zeros({8}, torch::kLong);
    for (int64_t b = 0; b < 5; ++b) expected += bits.index({Slice(), f * 5 + b}).to(torch::kLong) * (int64_t{1} << b);
    EXPECT_TRUE(torch::equal(codes[0][0].index({Slice(), f}), expected));
  }
}

TEST(Yoso, TauZeroSumsAllValidValues) {  // T10
  const auto in = RandomQkv(2, 2, 48, 32, 43);
  const torch::Tensor valid = RightPadded({48, 30}, 48);
  const torch::Tensor w = valid.to(torch::kFloat).unsqueeze(1).unsqueeze(-1);
  const torch::Tensor sums = (in.v * w).sum(2, true).expand_as(in.v);
  const torch::Tensor proj = internal::MakeYosoProjections(Spec(2, 32), 8, 0);
  const torch::Tensor y = internal::YosoCumulation(internal::YosoCodes(in.q, proj, 0),
                                                   internal::YosoCodes(in.k, proj, 0), in.v, valid, 0);
  EXPECT_LT(MaxAbsDiffValid(y, sums, valid), 1e-5);
  auto attention = MakeVariant("yoso", {{"tau", "0"}});
  EXPECT_LT(MaxAbsDiffValid(attention->Forward(in.q, in.k, in.v, valid),
                            internal::L2NormalizeRows(sums), valid),
            1e-5);
  // YOSO-E with tau = 0: every weight is 1.
  EXPECT_LT(MaxAbsDiffValid(MakeVariant("yoso", {{"tau", "0"}, {"expectation", "1"}})
                                ->Forward(in.q, in.k, in.v, valid),
                            internal::L2NormalizeRows(sums), valid),
            1e-5);
}

TEST(Yoso, InvariantToPositiveScalingOfQueriesAndKeys) {  // T11
  const auto in = RandomQkv(1, 2, 64, 32, 44);
  const torch::Tensor valid = RightPadded({60}, 64);
  auto attention = MakeVariant("yoso", {{"tau", "5"}});
  EXPECT_TRUE(torch::equal(attention->Forward(in.q, in.k, in.v, valid),
                           attention->Forward(in.q * 3.7, in.k * 0.2, in.v, valid)));
}

TEST(Yoso, SeedAveragesConvergeToExpectation) {  // T12
  const auto in = RandomQkv(1, 1, 64, 32, 45);
  const torch::Tensor valid = RightPadded({64}, 64);
  const int64_t tau = 4, m = 16;
  const torch::Tensor expected = internal::YosoExpectationCumulation(in.q, in.k, in.v, valid, tau);
  auto estimate = [&](int64_t seeds) {
    torch::Tensor sum = torch::zeros_like(in.v);
    for (int64_t s = 0; s < seeds; ++s) {
      const torch::Tensor proj = internal::MakeYosoProjections(Spec(1, 32, 100 + s), m, tau);
      sum += internal::YosoCumulation(internal::YosoCodes(in.q, proj, tau),
                                      internal::YosoCodes(in.k, proj, tau), in.v, valid, tau);
    }
    return ((sum / double(seeds) - expected).norm() / expected.norm()).item<double>();
  };
  const double one = estimate(1), many = estimate(16);
  // Error ∝ 1/√(R·m): 16 seeds should cut it about 4×; require 2.5× to stay far from noise.
  EXPECT_LT(many, one / 2.5) << "one seed " << one << ", 16 seeds " << many;
}

TEST(Yoso, CollisionProbabilityMatchesAngleFormula) {  // T13
  torch::manual_seed(46);
  const torch::Tensor q = torch::randn({1, 1, 1, 32});
  const torch::Tensor k = q + 0.6 * torch::randn({1, 1, 1, 32});
  const int64_t tau = 4, m = 20000;
  const torch::Tensor proj = internal::MakeYosoProjections(Spec(1, 32), m, tau);
  const double rate =
      internal::YosoCodes(q, proj, tau).eq(internal::YosoCodes(k, proj, tau)).to(torch::kDouble)
          .mean().item<double>();
  const double cosine = torch::cosine_similarity(q.flatten(), k.flatten(), 0).item<double>();
  const double p = std::pow(1.0 - std::acos(cosine) / M_PI, tau);
  const double sigma = std::sqrt(p * (1 - p) / m);
  EXPECT_NEAR(rate, p, 4 * sigma);
}

TEST(Yoso, ExpectationWeightsAtExtremeAngles) {  // T14
  torch::manual_seed(47);
  const torch::Tensor x = torch::randn({1, 1, 1, 32});
  const torch::Tensor keys = torch::cat({x, -x, x * 5}, 2);  // same, opposite, scaled
  const torch::Tensor valid = torch::ones({1, 3}, torch::kBool);
  const torch::Tensor w = internal::YosoExpectationWeights(x, keys, valid, 9);  // [1,1,1,3]
  // The clamp keeps acos defined (no NaN) where fp32 rounding pushes |cos| past 1; near
  // cos = ±1 acos amplifies the 6e-8 rounding of the cosine to ~3e-4 rad, hence the tolerance.
  EXPECT_TRUE(torch::isfinite(w).all().item<bool>());
  EXPECT_NEAR(w[0][0][0][0].item<float>(), 1.0f, 2e-3);
  EXPECT_NEAR(w[0][0][0][1].item<float>(), 0.0f, 1e-6);
  EXPECT_NEAR(w[0][0][0][2].item<float>(), 1.0f, 2e-3);
  // Sharper as tau grows: a key at an intermediate angle loses weight.
  const torch::Tensor mid = torch::cat({x, x + torch::randn({1, 1, 1, 32})}, 2);
  const float w4 = internal::YosoExpectationWeights(x, mid, torch::ones({1, 2}, torch::kBool), 4)[0][0][0][1].item<float>();
  const float w12 = internal::YosoExpectationWeights(x, mid, torch::ones({1, 2}, torch::kBool), 12)[0][0][0][1].item<float>();
  EXPECT_GT(w4, w12);
  EXPECT_GT(w12, 0.0f);
}

TEST(Yoso, ValidRowsHaveUnitNorm) {  // T15
  const auto in = RandomQkv(2, 2, 80, 32, 48);
  const torch::Tensor valid = RightPadded({80, 55}, 80);
  for (const char* expectation : {"0", "1"}) {
    const torch::Tensor out = MakeVariant("yoso", {{"expectation", expectation}, {"tau", "6"}})
                                  ->Forward(in.q, in.k, in.v, valid);
    const torch::Tensor norms = out.norm(2, -1);
    const torch::Tensor rows = valid.unsqueeze(1).expand_as(norms);
    EXPECT_LT((norms.masked_select(rows) - 1).abs().max().item<float>(), 1e-5) << expectation;
  }
}

TEST(Yoso, ExpectationVariantMatchesDenseWeights) {
  const auto in = RandomQkv(1, 2, 70, 32, 49);
  const torch::Tensor valid = RightPadded({66}, 70);
  const torch::Tensor w = internal::YosoExpectationWeights(in.q, in.k, valid, 8);
  const torch::Tensor dense = internal::L2NormalizeRows(torch::matmul(w, in.v));
  EXPECT_LT(MaxAbsDiffValid(MakeVariant("yoso", {{"expectation", "1"}})->Forward(in.q, in.k, in.v, valid),
                            dense, valid),
            1e-5);
}

TEST(Yoso, DifferentSeedsGiveDifferentSamples) {
  const auto in = RandomQkv(1, 2, 64, 32, 50);
  const torch::Tensor valid = RightPadded({64}, 64);
  auto a = MakeVariant("yoso", {}, 2, 32, /*seed=*/1);
  auto b = MakeVariant("yoso", {}, 2, 32, /*seed=*/2);
  auto other_layer = MakeVariant("yoso", {}, 2, 32, /*seed=*/1, /*layer=*/3);
  const torch::Tensor out = a->Forward(in.q, in.k, in.v, valid);
  EXPECT_FALSE(torch::equal(out, b->Forward(in.q, in.k, in.v, valid)));
  EXPECT_FALSE(torch::equal(out, other_layer->Forward(in.q, in.k, in.v, valid)));
}

TEST(YosoOptions, OutOfRangeValuesAreInvalidArgument) {
  for (const auto& [key, value] : std::vector<std::pair<std::string, std::string>>{
           {"tau", "25"}, {"tau", "-1"}, {"hashes", "0"}, {"expectation", "2"}}) {
    AttentionSpec spec = Spec(2, 32);
    spec.options = {{key, value}};
    EXPECT_EQ(Registry::Global().Create("yoso", spec).status().code(),
              absl::StatusCode::kInvalidArgument)
        << key << "=" << value;
  }
}

}  // namespace
}  // namespace longenc::attention
