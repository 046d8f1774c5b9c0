// Every variant on a CUDA device: the exact equivalences of docs/ATTENTION.md §6 hold there,
// results agree with the CPU's, and no forward waits on the device (LibTorch's sync debug mode
// set to error turns any .item(), .cpu(), nonzero or synchronous copy into an exception). Named
// *_CUDA: they skip, and are counted as skipped, on a machine without a GPU.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#if LONGENC_HAVE_CUDA
#include <c10/cuda/CUDAFunctions.h>
#endif

#include "model/attention/attention_ops.h"
#include "model/attention/cast.h"
#include "model/attention/clustering.h"
#include "model/attention/registry.h"
#include "model/device.h"
#include "tests/unit/attention/test_util.h"

namespace longenc::attention {
namespace {

using testing::MakeVariant;
using testing::MaxAbsDiffValid;
using testing::RandomQkv;
using testing::RightPadded;

#define LONGENC_REQUIRE_CUDA()                                                  \
  do {                                                                          \
    if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device present"; \
  } while (0)

const torch::Device kCuda(torch::kCUDA, 0);

testing::Qkv ToCuda(const testing::Qkv& in) {
  return {in.q.to(kCuda), in.k.to(kCuda), in.v.to(kCuda)};
}

// fp32 means fp32 here: TF32 would change the clustering and hashing decisions.
class NoTf32 {
 public:
  NoTf32() : previous_(at::globalContext().allowTF32CuBLAS()) {
    at::globalContext().setAllowTF32CuBLAS(false);
  }
  ~NoTf32() { at::globalContext().setAllowTF32CuBLAS(previous_); }

 private:
  bool previous_;
};

// Cosine of two [B, H, N, D] outputs over their valid rows, flattened.
double Cosine(const torch::Tensor& a, const torch::Tensor& b, const torch::Tensor& valid) {
  const torch::Tensor rows = valid.unsqueeze(1).unsqueeze(-1).to(a.device());
  const torch::Tensor x = a.masked_fill(rows.logical_not(), 0).flatten().to(torch::kDouble);
  const torch::Tensor y = b.masked_fill(rows.logical_not(), 0).flatten().to(torch::kDouble);
  return (x.dot(y) / (x.norm() * y.norm())).item<double>();
}

const std::vector<std::pair<std::string, std::map<std::string, std::string>>>& Variants() {
  static const auto* const kVariants =
      new std::vector<std::pair<std::string, std::map<std::string, std::string>>>{
          {"full", {}},
          {"clustered", {}},
          {"iclustered", {}},
          {"iclustered", {{"clusters", "6"}, {"topk", "12"}}},
          {"yoso", {}},
          {"cast", {}},
          {"cast", {{"clusters", "4"}, {"kappa", "50"}}},
          {"cast", {{"assignment", "topk"}, {"mix", "additive"}}},
      };
  return *kVariants;
}

TEST(AttentionCuda, EveryVariantAgreesWithCpu_CUDA) {
  LONGENC_REQUIRE_CUDA();
  NoTf32 no_tf32;
  const auto in = RandomQkv(2, 4, 400, 32, 101);
  const torch::Tensor valid = RightPadded({400, 257}, 400);
  for (const auto& [name, options] : Variants()) {
    auto attention = MakeVariant(name, options, /*num_heads=*/4);
    ASSERT_NE(attention, nullptr);
    const torch::Tensor cpu = attention->Forward(in.q, in.k, in.v, valid);
    const auto gpu_in = ToCuda(in);
    const torch::Tensor gpu = attention->Forward(gpu_in.q, gpu_in.k, gpu_in.v, valid.to(kCuda));
    ASSERT_EQ(gpu.device(), kCuda);
    // Exact attention to rounding; the approximations may flip a hash bit or a tie where GPU
    // rounding differs, which moves a few tokens, not the result.
    const double floor = name == "full" ? 0.999999 : 0.995;
    EXPECT_GE(Cosine(cpu, gpu.cpu(), valid), floor) << name;
    EXPECT_EQ(gpu.cpu().index({1, torch::indexing::Slice(), torch::indexing::Slice(257)})
                  .abs().max().item<float>(), 0.0f) << name;
  }
}

TEST(AttentionCuda, ExactEquivalencesHold_CUDA) {  // T1, T2, T7, T16 on the device
  LONGENC_REQUIRE_CUDA();
  NoTf32 no_tf32;
  const auto in = ToCuda(RandomQkv(2, 2, 120, 32, 102));
  const torch::Tensor valid = RightPadded({120, 77}, 120).to(kCuda);
  const torch::Tensor exact = MakeVariant("full")->Forward(in.q, in.k, in.v, valid);
  // T1: i-clustered with topk >= N.
  EXPECT_LT(MaxAbsDiffValid(MakeVariant("iclustered", {{"topk", "128"}})->Forward(in.q, in.k, in.v, valid),
                            exact, valid), 1e-5);
  // T2: at most C valid queries: one query per cluster.
  EXPECT_LT(MaxAbsDiffValid(MakeVariant("clustered", {{"clusters", "128"}})->Forward(in.q, in.k, in.v, valid),
                            exact, valid), 1e-5);
  // T7: below min_len_efficient every variant is exact attention, bit for bit.
  for (const std::string name : {"clustered", "iclustered", "yoso", "cast"}) {
    const torch::Tensor out =
        MakeVariant(name, {{"min_len_efficient", "1000"}})->Forward(in.q, in.k, in.v, valid);
    EXPECT_TRUE(torch::equal(out, exact)) << name;
  }
  // T16: one CAST cluster holding every token.
  EXPECT_LT(MaxAbsDiffValid(MakeVariant("cast", {{"clusters", "1"}, {"kappa", "128"}})
                                ->Forward(in.q, in.k, in.v, valid),
                            exact, valid), 1e-5);
}

TEST(AttentionCuda, CastAssignmentEqualsCpu_CUDA) {  // the device's late stop changes nothing
  LONGENC_REQUIRE_CUDA();
  NoTf32 no_tf32;
  const auto in = RandomQkv(1, 2, 300, 32, 103);
  const torch::Tensor valid = RightPadded({300}, 300);
  const torch::Tensor affinity = internal::CastAffinity(
      in.q, in.k, valid, torch::randn({2, 8, 32}, torch::TensorOptions().dtype(torch::kFloat)));
  for (const int64_t kappa : {10, 37, 80}) {
    const auto cpu = internal::CastSingleAssignment(affinity, kappa, 1000);
    const auto gpu = internal::CastSingleAssignment(affinity.to(kCuda), kappa, 1000);
    EXPECT_TRUE(torch::equal(cpu.slot_ok, gpu.slot_ok.cpu())) << kappa;
    EXPECT_TRUE(torch::equal(cpu.members.masked_fill(cpu.slot_ok.logical_not(), -1),
                             gpu.members.cpu().masked_fill(cpu.slot_ok.logical_not(), -1)))
        << kappa;
  }
}

TEST(AttentionCuda, NoHostSyncInsideAttention_CUDA) {
  LONGENC_REQUIRE_CUDA();
#if LONGENC_HAVE_CUDA
  const auto in = ToCuda(RandomQkv(2, 4, 2048, 32, 104));
  auto [ids, valid] = model::InputsToDevice(torch::zeros({2, 2048}, torch::kLong),
                                            RightPadded({2048, 1500}, 2048), kCuda);
  for (const auto& [name, options] : Variants()) {
    auto attention = MakeVariant(name, options, /*num_heads=*/4);
    ASSERT_NE(attention, nullptr);
    attention->Forward(in.q, in.k, in.v, valid);  // first use: state moves, memory is sized
    torch::cuda::synchronize();
    c10::cuda::warning_state().set_sync_debug_mode(c10::cuda::SyncDebugMode::L_ERROR);
    try {
      attention->Forward(in.q, in.k, in.v, valid);
      attention->Forward(in.q, in.k, in.v, valid);
    } catch (const std::exception& e) {
      ADD_FAILURE() << name << " waited on the device: " << e.what();
    }
    c10::cuda::warning_state().set_sync_debug_mode(c10::cuda::SyncDebugMode::L_DISABLED);
    torch::cuda::synchronize();
  }
#else
  GTEST_SKIP() << "built with LONGENC_CUDA=OFF";
#endif
}

TEST(AttentionCuda, HeadGroupsSizedByFreeMemory_CUDA) {
  LONGENC_REQUIRE_CUDA();
  const int64_t tokens = internal::TokensPerHeadGroup(kCuda);
  EXPECT_GE(tokens, 1);
  EXPECT_EQ(internal::TokensPerHeadGroup(kCuda), tokens);  // read once per device
  EXPECT_LT(internal::TokensPerHeadGroup(kCuda, internal::kGroupBytesPerTokenHead * 8), tokens);
}

}  // namespace
}  // namespace longenc::attention
