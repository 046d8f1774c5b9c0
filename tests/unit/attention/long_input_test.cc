// A 32k-token document (B = 1, H = 12, N = 32768, D = 32, MiniLM's head shape) through every
// approximate variant under a stated memory bound: peak RSS growth during Forward must stay
// below 1.5 GB, where one head's N×N score matrix alone would be 4 GiB. Peak RSS is the
// kernel's high-water mark, reset before each call through /proc/self/clear_refs.
#include <fstream>
#include <string>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "tests/unit/attention/test_util.h"

namespace longenc::attention {
namespace {

constexpr int64_t kN = 32768;
constexpr int64_t kBoundBytes = int64_t{1536} << 20;

int64_t StatusKb(const std::string& field) {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind(field + ":", 0) == 0) return std::stoll(line.substr(field.size() + 1));
  }
  return -1;
}

bool ResetPeak() {
  std::ofstream clear("/proc/self/clear_refs");
  clear << "5";
  return static_cast<bool>(clear);
}

class LongInput : public ::testing::TestWithParam<std::string> {};

TEST_P(LongInput, ThirtyTwoThousandTokensUnderMemoryBound) {
  auto attention = testing::MakeVariant(GetParam(), {}, /*num_heads=*/12);
  ASSERT_NE(attention, nullptr);
  const auto in = testing::RandomQkv(1, 12, kN, 32, 71, /*qk_scale=*/1.0);
  const torch::Tensor valid = testing::RightPadded({kN - 100}, kN);
  if (!ResetPeak()) GTEST_SKIP() << "cannot reset the peak RSS on this kernel";
  const int64_t before_kb = StatusKb("VmRSS");
  const torch::Tensor out = attention->Forward(in.q, in.k, in.v, valid);
  const int64_t growth = (StatusKb("VmHWM") - before_kb) * 1024;
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
