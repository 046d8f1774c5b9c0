// A 32k-token document (B = 1, H = 12, N = 32768, D = 32, MiniLM's head shape) through every
// approximate variant under a stated memory bound: peak RSS growth during Forward must stay
// below 1.5 GB, where one head's N×N score matrix alone would be 4 GiB. Peak RSS is the
// kernel's high-water mark, reset before each call through /proc/self/clear_refs.
#include <string>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "common/process_memory.h"
#include "tests/unit/attention/test_util.h"

namespace longenc::attention {
namespace {

constexpr int64_t kN = 32768;
constexpr int64_t kBoundBytes = int64_t{1536} << 20;

class LongInput : public ::testing::TestWithParam<std::string> {};

TEST_P(LongInput, ThirtyTwoThousandTokensUnderMemoryBound) {
  auto attention = testing::MakeVariant(GetParam(), {}, /*num_heads=*/12);
  ASSERT_NE(attention, nullptr);
  const auto in = testing::RandomQkv(1, 12, kN, 32, 71, /*qk_scale=*/1.0);
  const torch::Tensor valid = testing::RightPadded({kN - 100}, kN);
  if (!ResetPeakResident()) GTEST_SKIP() << "cannot reset the peak RSS on this kernel";
  const absl::StatusOr<ProcessMemory> before = ReadProcessMemory();
  ASSERT_TRUE(before.ok()) << before.status();
  const torch::Tensor out = attention->Forward(in.q, in.k, in.v, valid);
  const absl::StatusOr<ProcessMemory> after = ReadProcessMemory();
  ASSERT_TRUE(after.ok()) << after.status();
  const int64_t growth = after->peak_resident_bytes - before->resident_bytes;
  RecordProperty("peak_rss_growth_bytes", std::to_string(growth));
  std::printf("%s: peak RSS growth %.1f MB\n", GetParam().c_str(), growth / 1048576.0);
  EXPECT_LT(growth, kBoundBytes);
  EXPECT_EQ(out.sizes(), in.q.sizes());
  EXPECT_TRUE(torch::isfinite(out).all().item<bool>());
}

INSTANTIATE_TEST_SUITE_P(Approximate, LongInput,
                         ::testing::Values("clustered", "iclustered", "yoso", "cast"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace longenc::attention
