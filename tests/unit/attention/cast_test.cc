// CAST-JS: the exact anchor T16 and the structural checks T17–T20 of docs/ATTENTION.md §6,
// plus surrogate-file loading.
#include <algorithm>
#include <cstring>
#include <vector>

#include <gtest/gtest.h>

#include "model/attention/cast.h"
#include "model/attention/registry.h"
#include "model/encoder/safetensors.h"
#include "tests/unit/attention/test_util.h"

namespace longenc::attention {
namespace {

using testing::DenseReference;
using testing::MakeVariant;
using testing::MaxAbsDiffValid;
using testing::RandomQkv;
using testing::RightPadded;
using torch::indexing::Slice;

// Greedy single assignment over (token, cluster) pairs in descending affinity (the defining
// reference of docs/ATTENTION.md §4.2), for one (b, h): affinity [N, N_c]; returns the cluster
// of each token or -1.
std::vector<int64_t> GreedyReference(const torch::Tensor& affinity, int64_t kappa) {
  const int64_t n = affinity.size(0), nc = affinity.size(1);
  auto acc = affinity.accessor<float, 2>();
  std::vector<std::pair<float, int64_t>> pairs;
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t c = 0; c < nc; ++c) {
      if (std::isfinite(acc[i][c])) pairs.push_back({acc[i][c], i * nc + c});
    }
  }
  std::stable_sort(pairs.begin(), pairs.end(),
                   [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<int64_t> owner(n, -1), load(nc, 0);
  for (const auto& [value, pair] : pairs) {
    const int64_t i = pair / nc, c = pair % nc;
    if (owner[i] >= 0 || load[c] >= kappa) continue;
    owner[i] = c;
    ++load[c];
  }
  return owner;
}

// Cluster of each token according to `clusters` for (b, h), -1 if none (single assignment).
std::vector<int64_t> OwnerOf(const internal::CastClusters& clusters, int64_t b, int64_t h,
                             int64_t n) {
  std::vector<int64_t> owner(n, -1);
  const torch::Tensor members = clusters.members[b][h], ok = clusters.slot_ok[b][h];
  for (int64_t c = 0; c < members.size(0); ++c) {
    for (int64_t s = 0; s < members.size(1); ++s) {
      if (!ok[c][s].item<bool>()) continue;
      const int64_t token = members[c][s].item<int64_t>();
      EXPECT_EQ(owner[token], -1) << "token " << token << " in two clusters";
      owner[token] = c;
    }
  }
  return owner;
}

torch::Tensor Surrogates(int64_t heads, int64_t nc, int64_t dim, uint64_t seed) {
  torch::manual_seed(seed);
  return torch::randn({heads, nc, dim});
}

TEST(Cast, OneClusterCoveringAllTokensEqualsFull) {  // T16
  const auto in = RandomQkv(2, 2, 64, 32, 61);
  const torch::Tensor valid = RightPadded({64, 47}, 64);
  const torch::Tensor exact = DenseReference(in.q, in.k, in.v, valid);
  for (const char* assignment : {"sa", "topk"}) {
    auto attention = MakeVariant("cast", {{"clusters", "1"}, {"kappa", "64"}, {"assignment", assignment}});
    EXPECT_LT(MaxAbsDiffValid(attention->Forward(in.q, in.k, in.v, valid), exact, valid), 1e-5)
        << assignment;
  }
}

TEST(Cast, SingleAssignmentCoversEveryValidTokenOnceWithinCapacity) {  // T17
  const auto in = RandomQkv(2, 2, 100, 32, 62);
  const torch::Tensor valid = RightPadded({100, 73}, 100);
  const torch::Tensor affinity = internal::CastAffinity(in.q, in.k, valid, Surrogates(2, 8, 32, 1));
  const internal::CastClusters clusters = internal::CastSingleAssignment(affinity, 13, 1000);
  for (int64_t b = 0; b < 2; ++b) {
    for (int64_t h = 0; h < 2; ++h) {
      const std::vector<int64_t> owner = OwnerOf(clusters, b, h, 100);
      const int64_t n_valid = b == 0 ? 100 : 73;
      for (int64_t i = 0; i < 100; ++i) {
        EXPECT_EQ(owner[i] >= 0, i < n_valid) << "b=" << b << " h=" << h << " token " << i;
      }
      EXPECT_LE(clusters.slot_ok[b][h].sum(-1).max().item<int64_t>(), 13);
    }
  }
}

TEST(Cast, SingleAssignmentEqualsGreedyReference) {  // T17, the reference definition
  const auto in = RandomQkv(1, 3, 90, 32, 63);
  const torch::Tensor valid = RightPadded({81}, 90);
  const torch::Tensor affinity = internal::CastAffinity(in.q, in.k, valid, Surrogates(3, 6, 32, 2));
  for (int64_t kappa : {5, 12, 20}) {  // under-, just- and over-capacity (6·12 < 81 < 6·20)
    const internal::CastClusters clusters = internal::CastSingleAssignment(affinity, kappa, 1000);
    for (int64_t h = 0; h < 3; ++h) {
      EXPECT_EQ(OwnerOf(clusters, 0, h, 90), GreedyReference(affinity[0][h], kappa))
          << "kappa=" << kappa << " head " << h;
    }
  }
}

TEST(Cast, PaddedTokensNeverOccupyValidSlots) {  // T18
  const auto in = RandomQkv(2, 2, 64, 32, 64);
  const torch::Tensor valid = RightPadded({64, 20}, 64);
  const torch::Tensor affinity = internal::CastAffinity(in.q, in.k, valid, Surrogates(2, 4, 32, 3));
  for (const auto& clusters : {internal::CastTopK(affinity, 30),
                               internal::CastSingleAssignment(affinity, 30, 1000)}) {
    const torch::Tensor token_valid =
        valid.unsqueeze(1).unsqueeze(1).expand({2, 2, 4, 64}).gather(-1, clusters.members);
    EXPECT_TRUE(token_valid.logical_or(clusters.slot_ok.logical_not()).all().item<bool>());
  }
}

TEST(Cast, PermutingTokensPermutesOutputs) {  // T19
  const auto in = RandomQkv(1, 2, 80, 32, 65);
  const torch::Tensor valid = RightPadded({80}, 80);
  torch::manual_seed(66);
  const torch::Tensor perm = torch::randperm(80);
  auto permute = [&](const torch::Tensor& x) { return x.index_select(2, perm); };
  for (const char* assignment : {"sa", "topk"}) {
    auto attention = MakeVariant("cast", {{"clusters", "6"}, {"kappa", "10"}, {"assignment", assignment}});
    const torch::Tensor out = attention->Forward(in.q, in.k, in.v, valid);
    const torch::Tensor out_perm =
        attention->Forward(permute(in.q), permute(in.k), permute(in.v), valid);
    EXPECT_LT(testing::MaxAbsDiff(permute(out), out_perm), 1e-5) << assignment;
  }
}

TEST(Cast, MixingRowsSumToOne) {  // T20
  const auto in = RandomQkv(1, 2, 64, 32, 67);
  const torch::Tensor valid = RightPadded({58}, 64);
  const torch::Tensor surrogates = Surrogates(2, 5, 32, 4);
  const torch::Tensor affinity = internal::CastAffinity(in.q, in.k, valid, surrogates);
  const internal::CastClusters clusters = internal::CastSingleAssignment(affinity, 8, 1000);
  torch::Tensor mixing;
  internal::CastCore(in.q, in.k, in.v, valid, surrogates, clusters, internal::CastMix::kJoint,
                     &mixing);
  const torch::Tensor sums = mixing.sum(-1).masked_select(clusters.slot_ok);
  EXPECT_GT(sums.numel(), 0);
  EXPECT_LT((sums - 1).abs().max().item<float>(), 1e-5);
  EXPECT_GE(mixing.min().item<float>(), 0.0f);
}

TEST(Cast, OutputIsConvexCombinationOfValues) {  // T20 on outputs: within the values' range
  const auto in = RandomQkv(1, 2, 96, 32, 68);
  const torch::Tensor valid = RightPadded({90}, 96);
  for (const char* mix : {"joint", "additive"}) {
    const torch::Tensor out = MakeVariant("cast", {{"clusters", "4"}, {"kappa", "16"}, {"mix", mix}})
                                  ->Forward(in.q, in.k, in.v, valid);
    const torch::Tensor v_valid = in.v.index({Slice(), Slice(), Slice(0, 90)});
    const torch::Tensor lo = std::get<0>(v_valid.min(2, true)), hi = std::get<0>(v_valid.max(2, true));
    const torch::Tensor o = out.index({Slice(), Slice(), Slice(0, 90)});
    EXPECT_TRUE((o >= lo - 1e-5).all().item<bool>() && (o <= hi + 1e-5).all().item<bool>()) << mix;
  }
}

// Writes raw F32 tensors under the given names (to build malformed files too).
void WriteRaw(const std::string& path, const std::vector<std::pair<std::string, torch::Tensor>>& named) {
  std::vector<encoder::TensorToWrite> tensors;
  for (const auto& [name, t] : named) {
    const torch::Tensor c = t.contiguous();
    std::string bytes(static_cast<size_t>(c.numel() * 4), '\0');
    std::memcpy(bytes.data(), c.data_ptr<float>(), bytes.size());
    tensors.push_back({name, encoder::DType::kF32, c.sizes().vec(), bytes});
  }
  ASSERT_TRUE(encoder::WriteSafetensors(path, tensors).ok());
}

TEST(Cast, LoadsSurrogatesFromSafetensorsFile) {
  const std::string path = ::testing::TempDir() + "/cast_surrogates.safetensors";
  const torch::Tensor s0 = Surrogates(2, 3, 32, 5), s1 = Surrogates(2, 3, 32, 6);
  ASSERT_TRUE(internal::SaveSurrogates(path, {s0, s1}, {{"cast_options", "kappa=16"}}).ok());
  auto loaded = internal::LoadSurrogates(path, 1, /*num_layers=*/2, 2, 32);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_TRUE(torch::equal(*loaded, s1));
  auto first = internal::LoadSurrogates(path, 0, 2, 2, 32);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_TRUE(torch::equal(*first, s0));
  auto file_options = internal::SurrogateFileOptions(path);
  ASSERT_TRUE(file_options.ok()) << file_options.status();
  EXPECT_EQ(file_options->at("kappa"), "16");
  // Through the registry: the file's surrogates and calibrated kappa drive the variant.
  const auto in = RandomQkv(1, 2, 64, 32, 69);
  const torch::Tensor valid = RightPadded({64}, 64);
  AttentionSpec spec;
  spec.layer = 1;
  spec.num_layers = 2;
  spec.num_heads = 2;
  spec.head_dim = 32;
  spec.options = {{"surrogates", path}, {"min_len_efficient", "0"}};
  auto from_file = Registry::Global().Create("cast", spec);
  ASSERT_TRUE(from_file.ok()) << from_file.status();
  const torch::Tensor affinity = internal::CastAffinity(in.q, in.k, valid, s1);
  const torch::Tensor expected = internal::CastCore(
      in.q, in.k, in.v, valid, s1, internal::CastSingleAssignment(affinity, 16, 4 * 3 + 64),
      internal::CastMix::kJoint);
  EXPECT_LT(testing::MaxAbsDiff((*from_file)->Forward(in.q, in.k, in.v, valid), expected), 1e-6);
  // A given option overrides the file's.
  spec.options["kappa"] = "4";
  auto overridden = Registry::Global().Create("cast", spec);
  ASSERT_TRUE(overridden.ok()) << overridden.status();
  const torch::Tensor kappa4 = internal::CastCore(
      in.q, in.k, in.v, valid, s1, internal::CastSingleAssignment(affinity, 4, 4 * 3 + 64),
      internal::CastMix::kJoint);
  EXPECT_LT(testing::MaxAbsDiff((*overridden)->Forward(in.q, in.k, in.v, valid), kappa4), 1e-6);
  spec.options = {{"surrogates", "/nonexistent/file.safetensors"}};
  EXPECT_FALSE(Registry::Global().Create("cast", spec).ok());
}

TEST(Cast, SurrogateFileMismatchesAreErrorsNamingTheFile) {
  const std::string dir = ::testing::TempDir();
  const torch::Tensor s = Surrogates(2, 3, 32, 5);
  auto expect_error = [](const std::string& path, int64_t layer, int64_t layers, int64_t heads,
                         int64_t dim, absl::StatusCode code, const std::string& what) {
    auto loaded = internal::LoadSurrogates(path, layer, layers, heads, dim);
    ASSERT_FALSE(loaded.ok()) << what;
    EXPECT_EQ(loaded.status().code(), code) << what << ": " << loaded.status();
    EXPECT_NE(loaded.status().message().find(path), std::string::npos) << loaded.status();
  };
  const std::string good = dir + "/cast_two_layers.safetensors";
  ASSERT_TRUE(internal::SaveSurrogates(good, {s, s}).ok());
  expect_error(good, 0, 2, 3, 32, absl::StatusCode::kInvalidArgument, "wrong head count");
  expect_error(good, 0, 2, 2, 16, absl::StatusCode::kInvalidArgument, "wrong head_dim");
  expect_error(good, 0, 3, 2, 32, absl::StatusCode::kInvalidArgument, "model has more layers");
  expect_error(good, 0, 1, 2, 32, absl::StatusCode::kInvalidArgument, "model has fewer layers");
  expect_error(good, 2, 3, 2, 32, absl::StatusCode::kNotFound, "layer absent");

  const std::string clusters = dir + "/cast_mixed_clusters.safetensors";
  ASSERT_TRUE(internal::SaveSurrogates(clusters, {s, Surrogates(2, 4, 32, 6)}).ok());
  expect_error(clusters, 0, 2, 2, 32, absl::StatusCode::kInvalidArgument, "cluster counts differ");

  const std::string rank = dir + "/cast_rank2.safetensors";
  WriteRaw(rank, {{internal::SurrogateTensorName(0), torch::zeros({2, 32})}});
  expect_error(rank, 0, 1, 2, 32, absl::StatusCode::kInvalidArgument, "rank 2");

  const std::string stray = dir + "/cast_stray.safetensors";
  WriteRaw(stray, {{internal::SurrogateTensorName(0), s}, {"layer.x.surrogates", s}});
  expect_error(stray, 0, 1, 2, 32, absl::StatusCode::kInvalidArgument, "stray tensor");

  const std::string nan = dir + "/cast_nan.safetensors";
  WriteRaw(nan, {{internal::SurrogateTensorName(0), torch::full({2, 3, 32}, NAN)}});
  expect_error(nan, 0, 1, 2, 32, absl::StatusCode::kInvalidArgument, "NaN");
}

TEST(Cast, AttendIsDifferentiableInTheSurrogatesOnly) {
  const auto in = RandomQkv(1, 2, 48, 32, 71);
  const torch::Tensor valid = RightPadded({40}, 48);
  torch::Tensor s = Surrogates(2, 4, 32, 9).requires_grad_(true);
  internal::CastSettings settings;
  settings.kappa = 16;
  const torch::Tensor out = internal::CastAttend(in.q, in.k, in.v, valid, s, settings);
  const torch::Tensor expected = internal::CastCore(
      in.q, in.k, in.v, valid, s.detach(),
      internal::CastSingleAssignment(internal::CastAffinity(in.q, in.k, valid, s.detach()), 16,
                                     4 * 4 + 64),
      internal::CastMix::kJoint);
  EXPECT_LT(testing::MaxAbsDiff(out.detach(), expected), 1e-6);
  out.pow(2).sum().backward();
  ASSERT_TRUE(s.grad().defined());
  EXPECT_TRUE(torch::isfinite(s.grad()).all().item<bool>());
  EXPECT_GT(s.grad().abs().sum().item<double>(), 0.0);
}

TEST(CastOptions, BadValuesAreInvalidArgument) {
  for (const auto& [key, value] : std::vector<std::pair<std::string, std::string>>{
           {"clusters", "0"}, {"kappa", "0"}, {"assignment", "greedy"}, {"mix", "sum"}}) {
    AttentionSpec spec;
    spec.num_heads = 2;
    spec.head_dim = 32;
    spec.options = {{key, value}};
    EXPECT_EQ(Registry::Global().Create("cast", spec).status().code(),
              absl::StatusCode::kInvalidArgument)
        << key << "=" << value;
  }
}

}  // namespace
}  // namespace longenc::attention
