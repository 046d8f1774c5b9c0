// The conformance suite: every registered variant, with its efficient path forced, must keep
// the Attention contract (shapes, zero padded rows, padding invariance, batch-mate
// independence, determinism, option validation). docs/ATTENTION.md §1, T6, T7, T21.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "model/attention/registry.h"
#include "tests/unit/attention/test_util.h"

namespace longenc::attention {
namespace {

using testing::MakeVariant;
using testing::MaxAbsDiff;
using testing::MaxAbsDiffValid;
using testing::RandomQkv;
using testing::RightPadded;
using torch::indexing::Slice;

constexpr int64_t kHeads = 2, kN = 96, kDim = 32;

class Conformance : public ::testing::TestWithParam<std::string> {};

TEST_P(Conformance, ShapesFiniteAndZeroPaddedRows) {
  auto attention = MakeVariant(GetParam());
  ASSERT_NE(attention, nullptr);
  EXPECT_EQ(attention->name(), GetParam());
  const auto in = RandomQkv(2, kHeads, kN, kDim, 1);
  const torch::Tensor valid = RightPadded({kN, 70}, kN);
  const torch::Tensor out = attention->Forward(in.q, in.k, in.v, valid);
  EXPECT_EQ(out.sizes(), in.q.sizes());
  EXPECT_EQ(out.scalar_type(), torch::kFloat);
  EXPECT_TRUE(torch::isfinite(out).all().item<bool>());
  EXPECT_EQ(out.index({1, Slice(), Slice(70)}).abs().max().item<float>(), 0.0f);
  EXPECT_GT(out.index({1, Slice(), Slice(0, 70)}).abs().max().item<float>(), 0.0f);
}

TEST_P(Conformance, PaddingInvarianceWithGarbageInPaddedPositions) {
  auto attention = MakeVariant(GetParam());
  ASSERT_NE(attention, nullptr);
  const auto in = RandomQkv(2, kHeads, kN, kDim, 2);
  const torch::Tensor valid = RightPadded({60, 81}, kN);
  const auto garbage = testing::WithGarbageInPadding(in, valid);
  const torch::Tensor a = attention->Forward(in.q, in.k, in.v, valid);
  const torch::Tensor b = attention->Forward(garbage.q, garbage.k, garbage.v, valid);
  EXPECT_TRUE(torch::equal(a, b)) << "max diff " << MaxAbsDiff(a, b);
}

TEST_P(Conformance, PaddingAmountChangesNothingBeyondRounding) {
  auto attention = MakeVariant(GetParam());
  ASSERT_NE(attention, nullptr);
  const auto in = RandomQkv(1, kHeads, 128, kDim, 3);
  const torch::Tensor valid = RightPadded({77}, 128);
  const torch::Tensor wide = attention->Forward(in.q, in.k, in.v, valid);
  const Slice first(0, 80);
  const torch::Tensor narrow =
      attention->Forward(in.q.index({Slice(), Slice(), first}), in.k.index({Slice(), Slice(), first}),
                         in.v.index({Slice(), Slice(), first}), valid.index({Slice(), first}));
  EXPECT_LT(MaxAbsDiff(wide.index({Slice(), Slice(), first}), narrow), 1e-5);
}

TEST_P(Conformance, BatchMatesAndBatchPositionDoNotMatter) {
  auto attention = MakeVariant(GetParam());
  ASSERT_NE(attention, nullptr);
  const auto doc = RandomQkv(1, kHeads, kN, kDim, 4);
  const auto mates = RandomQkv(2, kHeads, kN, kDim, 5);
  const torch::Tensor alone =
      attention->Forward(doc.q, doc.k, doc.v, RightPadded({kN - 10}, kN));
  // The same document as the middle row of a batch of three with different lengths.
  const torch::Tensor q = torch::cat({mates.q.index({Slice(0, 1)}), doc.q, mates.q.index({Slice(1)})});
  const torch::Tensor k = torch::cat({mates.k.index({Slice(0, 1)}), doc.k, mates.k.index({Slice(1)})});
  const torch::Tensor v = torch::cat({mates.v.index({Slice(0, 1)}), doc.v, mates.v.index({Slice(1)})});
  const torch::Tensor batched = attention->Forward(q, k, v, RightPadded({kN, kN - 10, 20}, kN));
  // The batch is padded to kN, the document alone to kN - 10: equal up to fp32 rounding.
  EXPECT_LT(MaxAbsDiff(batched.index({Slice(1, 2)}), alone), 1e-5);
}

TEST_P(Conformance, SameLayoutInAnyBatchPositionIsBitIdentical) {
  auto attention = MakeVariant(GetParam());
  ASSERT_NE(attention, nullptr);
  const auto doc = RandomQkv(1, kHeads, kN, kDim, 4);
  const auto mates = RandomQkv(3, kHeads, kN, kDim, 5);
  const torch::Tensor valid1 = RightPadded({kN - 10}, kN);
  const torch::Tensor alone = attention->Forward(doc.q, doc.k, doc.v, valid1);
  for (int64_t position : {0, 2}) {
    auto insert = [&](const torch::Tensor& d, const torch::Tensor& m) {
      return torch::cat({m.index({Slice(0, position)}), d, m.index({Slice(position)})});
    };
    const torch::Tensor batched =
        attention->Forward(insert(doc.q, mates.q), insert(doc.k, mates.k),
                           insert(doc.v, mates.v), RightPadded({kN - 10, kN - 10, kN - 10, kN - 10}, kN));
    EXPECT_TRUE(torch::equal(batched.index({Slice(position, position + 1)}), alone))
        << "position " << position << " max diff "
        << MaxAbsDiff(batched.index({Slice(position, position + 1)}), alone);
  }
}

TEST_P(Conformance, DeterministicAcrossCallsAndInstances) {
  auto first = MakeVariant(GetParam());
  auto second = MakeVariant(GetParam());
  ASSERT_NE(first, nullptr);
  ASSERT_NE(second, nullptr);
  const auto in = RandomQkv(2, kHeads, kN, kDim, 6);
  const torch::Tensor valid = RightPadded({kN, 50}, kN);
  const torch::Tensor a = first->Forward(in.q, in.k, in.v, valid);
  EXPECT_TRUE(torch::equal(a, first->Forward(in.q, in.k, in.v, valid)));
  EXPECT_TRUE(torch::equal(a, second->Forward(in.q, in.k, in.v, valid)));
}

TEST_P(Conformance, EqualsExactBelowMinLenEfficient) {  // T7
  auto attention = GetParam() == "full" ? MakeVariant("full")
                                        : MakeVariant(GetParam(), {{"min_len_efficient", "512"}});
  ASSERT_NE(attention, nullptr);
  auto full = MakeVariant("full");
  const auto in = RandomQkv(2, kHeads, kN, kDim, 8);
  const torch::Tensor valid = RightPadded({kN, 40}, kN);
  EXPECT_TRUE(torch::equal(attention->Forward(in.q, in.k, in.v, valid),
                           full->Forward(in.q, in.k, in.v, valid)));
}

TEST_P(Conformance, HalfPrecisionInputsComputeInFloat32) {
  auto attention = MakeVariant(GetParam());
  ASSERT_NE(attention, nullptr);
  const auto in = RandomQkv(1, kHeads, kN, kDim, 9);
  const torch::Tensor valid = RightPadded({kN}, kN);
  const torch::Tensor out = attention->Forward(in.q.to(torch::kBFloat16), in.k.to(torch::kBFloat16),
                                               in.v.to(torch::kBFloat16), valid);
  EXPECT_EQ(out.scalar_type(), torch::kBFloat16);
  EXPECT_TRUE(torch::isfinite(out).all().item<bool>());
}

TEST_P(Conformance, UnknownOptionIsInvalidArgument) {
  AttentionSpec spec;
  spec.num_heads = kHeads;
  spec.head_dim = kDim;
  spec.options = {{"no_such_option", "1"}};
  auto attention = Registry::Global().Create(GetParam(), spec);
  ASSERT_FALSE(attention.ok());
  EXPECT_EQ(attention.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(attention.status().message(), ::testing::HasSubstr("no_such_option"));
}

TEST_P(Conformance, MalformedShapesThrowBeforeComputing) {
  auto attention = MakeVariant(GetParam());
  ASSERT_NE(attention, nullptr);
  const auto in = RandomQkv(1, kHeads, kN, kDim, 10);
  EXPECT_THROW(attention->Forward(in.q, in.k, in.v, RightPadded({kN}, kN - 1)), c10::Error);
  EXPECT_THROW(attention->Forward(in.q, in.k.index({Slice(), Slice(), Slice(1)}), in.v,
                                  RightPadded({kN}, kN)),
               c10::Error);
}

INSTANTIATE_TEST_SUITE_P(AllVariants, Conformance,
                         ::testing::ValuesIn(Registry::Global().Names()),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace longenc::attention
