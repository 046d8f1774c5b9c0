// The paths the variants take on an accelerator so that no layer waits for the device
// (docs/ATTENTION.md §1.8), run here on CPU under ScopedAcceleratorPaths: tile counts bounded by
// the shapes, CAST's slots cut by the shapes only, every Lloyd round re-seeding, assignment
// rounds that stop late. Each must give the CPU path's result; the *_CUDA tests (cuda_test.cc)
// run them on a GPU with LibTorch's sync check set to error.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "model/attention/attention_ops.h"
#include "model/attention/cast.h"
#include "model/attention/clustering.h"
#include "model/device.h"
#include "tests/unit/attention/test_util.h"

namespace longenc::attention {
namespace {

using testing::MakeVariant;
using testing::MaxAbsDiff;
using testing::RandomQkv;
using testing::RightPadded;
using torch::indexing::Slice;

struct Case {
  std::string name;
  std::map<std::string, std::string> options;
};

std::string CaseName(const ::testing::TestParamInfo<Case>& info) {
  std::string name = info.param.name;
  for (const auto& [key, value] : info.param.options) name += "_" + key + value;
  return name;
}

class AcceleratorPaths : public ::testing::TestWithParam<Case> {};

TEST_P(AcceleratorPaths, EqualTheCpuPaths) {
  const Case& c = GetParam();
  auto attention = MakeVariant(c.name, c.options, /*num_heads=*/2);
  ASSERT_NE(attention, nullptr);
  auto in = RandomQkv(3, 2, 300, 32, 91);
  // Equal queries: clusters empty out and get re-seeded.
  in.q.index_put_({0, Slice(), Slice(0, 80)}, in.q.index({0, Slice(), Slice(0, 1)}));
  const torch::Tensor valid = RightPadded({300, 170, 41}, 300);
  const torch::Tensor cpu = attention->Forward(in.q, in.k, in.v, valid);
  torch::Tensor device_paths;
  {
    internal::ScopedAcceleratorPaths scope;
    device_paths = attention->Forward(in.q, in.k, in.v, valid);
  }
  EXPECT_LT(MaxAbsDiff(cpu, device_paths), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(
    EveryVariant, AcceleratorPaths,
    ::testing::Values(
        Case{"full", {}}, Case{"clustered", {}},
        Case{"clustered", {{"clusters", "8"}, {"iterations", "6"}, {"bits", "12"}}},
        Case{"iclustered", {}}, Case{"iclustered", {{"clusters", "5"}, {"topk", "16"}}},
        Case{"iclustered", {{"clusters", "64"}, {"topk", "8"}, {"refine", "0"}}},
        Case{"yoso", {}}, Case{"cast", {}},
        Case{"cast", {{"clusters", "4"}, {"kappa", "30"}}},
        Case{"cast", {{"clusters", "6"}, {"kappa", "90"}, {"assignment", "topk"}}},
        Case{"cast", {{"clusters", "3"}, {"kappa", "40"}, {"mix", "additive"}}}),
    CaseName);

TEST(AcceleratorPaths, ImprovedClusteredWeightsEqualTheCpuPath) {  // with spare tiles
  const auto in = RandomQkv(2, 2, 70, 32, 92);
  const torch::Tensor valid = RightPadded({70, 33}, 70);
  const torch::Tensor assign = torch::randint(0, 6, {2, 2, 70}, torch::kLong)
                                   .masked_fill(valid.logical_not().unsqueeze(1), 6);
  torch::Tensor w_cpu, w_device;
  const torch::Tensor cpu =
      internal::ImprovedClusteredCore(in.q, in.k, in.v, valid, assign, 6, 9, &w_cpu);
  internal::ScopedAcceleratorPaths scope;
  const torch::Tensor device_paths =
      internal::ImprovedClusteredCore(in.q, in.k, in.v, valid, assign, 6, 9, &w_device);
  EXPECT_TRUE(torch::equal(cpu, device_paths)) << MaxAbsDiff(cpu, device_paths);
  EXPECT_TRUE(torch::equal(w_cpu, w_device)) << MaxAbsDiff(w_cpu, w_device);
}

TEST(AcceleratorPaths, CastAssignmentStoppingLateChangesNothing) {
  const auto in = RandomQkv(2, 3, 200, 32, 93);
  const torch::Tensor valid = RightPadded({200, 131}, 200);
  for (const int64_t kappa : {7, 20, 60}) {  // under-, just- and over-capacity of 8 clusters
    const torch::Tensor affinity = internal::CastAffinity(
        in.q, in.k, valid, torch::randn({3, 8, 32}, torch::TensorOptions().dtype(torch::kFloat)));
    const internal::CastClusters at_once = internal::CastSingleAssignment(affinity, kappa, 1000, 0);
    for (const int64_t lag : {1, 4, 9}) {
      const internal::CastClusters late = internal::CastSingleAssignment(affinity, kappa, 1000, lag);
      EXPECT_TRUE(torch::equal(at_once.members.masked_fill(at_once.slot_ok.logical_not(), -1),
                               late.members.masked_fill(late.slot_ok.logical_not(), -1)))
          << "kappa=" << kappa << " lag=" << lag;
      EXPECT_TRUE(torch::equal(at_once.slot_ok, late.slot_ok)) << "kappa=" << kappa;
    }
  }
}

TEST(RoundStopper, OnCpuStopsAtTheFirstFalseFlagOrLagRoundsLater) {
  const auto flag = [](bool v) { return torch::tensor(v); };
  model::RoundStopper at_once(/*lag=*/3);
  EXPECT_FALSE(at_once.Stop(flag(true)));
  EXPECT_TRUE(at_once.Stop(flag(false)));
  model::RoundStopper late(/*lag=*/3, /*emulate_lag=*/true);
  int rounds = 0;
  while (!late.Stop(flag(rounds < 2))) ++rounds;
  EXPECT_EQ(rounds, 2 + 3);  // the flag of round 2 is seen 3 rounds later
}

TEST(RowLengths, FromANoteOrComputedOncePerTensor) {
  torch::Tensor valid = RightPadded({5, 0, 3}, 6);
  valid.index_put_({2, 1}, false);  // a hole: 2 valid tokens, the last at position 2
  const model::RowLengths lengths = model::RowLengthsOf(valid);
  EXPECT_EQ(lengths.valid, (std::vector<int64_t>{5, 0, 2}));
  EXPECT_EQ(lengths.end, (std::vector<int64_t>{5, 0, 3}));
  // In place changes are seen (version counter); a note gives its host copy's lengths.
  valid.index_put_({1, 0}, true);
  EXPECT_EQ(model::RowLengthsOf(valid).valid, (std::vector<int64_t>{5, 1, 2}));
  const torch::Tensor other = valid.clone();
  model::NoteHostKeyValid(other, RightPadded({6, 6, 6}, 6));
  EXPECT_EQ(model::RowLengthsOf(other).valid, (std::vector<int64_t>{6, 6, 6}));
}

TEST(HeadGroups, CpuKeepsThePageReuseSize) {
  EXPECT_EQ(internal::TokensPerHeadGroup(torch::kCPU), internal::kTokensPerHeadGroup);
  EXPECT_EQ(internal::TokensPerHeadGroup(torch::kCPU, 1 << 30), internal::kTokensPerHeadGroup);
}

}  // namespace
}  // namespace longenc::attention
