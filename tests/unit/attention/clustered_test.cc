// Clustered and improved clustered attention: the exact equivalences T1–T5, T8 of
// docs/ATTENTION.md §6 in fp32 (1e-5), and properties of the Hamming k-means.
#include <tuple>
#include <vector>

#include <gtest/gtest.h>

#include "model/attention/clustering.h"
#include "model/attention/registry.h"
#include "tests/unit/attention/test_util.h"

namespace longenc::attention {
namespace {

using testing::DenseReference;
using testing::MakeVariant;
using testing::MaxAbsDiffValid;
using testing::RandomQkv;
using testing::RightPadded;
using torch::indexing::Slice;

constexpr double kTol = 1e-5;

// One cluster per valid query, C (= N) for padded ones.
torch::Tensor IdentityAssignment(const torch::Tensor& valid, int64_t heads) {
  const int64_t n = valid.size(1);
  torch::Tensor ids = (valid.to(torch::kLong).cumsum(-1) - 1).masked_fill(valid.logical_not(), n);
  return ids.unsqueeze(1).expand({-1, heads, -1}).contiguous();
}

// Dense exact attention weights [B, H, N, N] in float64, padded rows zero.
torch::Tensor ExactWeights(const torch::Tensor& q, const torch::Tensor& k,
                           const torch::Tensor& valid) {
  torch::Tensor logits = torch::matmul(q.to(torch::kDouble), k.to(torch::kDouble).transpose(-1, -2)) /
                         std::sqrt(double(q.size(-1)));
  logits = logits.masked_fill(valid.logical_not().unsqueeze(1).unsqueeze(1),
                              -std::numeric_limits<double>::infinity());
  return torch::softmax(logits, -1).masked_fill(valid.logical_not().unsqueeze(1).unsqueeze(-1), 0);
}

TEST(ImprovedClustered, TopkAtLeastLengthEqualsFullWithPadding) {  // T1
  const auto in = RandomQkv(2, 3, 96, 32, 21);
  const torch::Tensor valid = RightPadded({96, 61}, 96);
  for (const char* clusters : {"1", "5", "17"}) {
    auto attention = MakeVariant("iclustered", {{"clusters", clusters}, {"topk", "96"}}, 3);
    const torch::Tensor out = attention->Forward(in.q, in.k, in.v, valid);
    EXPECT_LT(MaxAbsDiffValid(out, DenseReference(in.q, in.k, in.v, valid), valid), kTol)
        << "clusters=" << clusters;
  }
}

TEST(Clustered, IdentityAssignmentEqualsFull) {  // T2
  const auto in = RandomQkv(2, 2, 64, 32, 22);
  const torch::Tensor valid = RightPadded({64, 45}, 64);
  const torch::Tensor assign = IdentityAssignment(valid, 2);
  const torch::Tensor exact = DenseReference(in.q, in.k, in.v, valid);
  EXPECT_LT(MaxAbsDiffValid(internal::ClusteredCore(in.q, in.k, in.v, valid, assign, 64), exact,
                            valid),
            kTol);
  for (int64_t topk : {1, 4, 16}) {
    EXPECT_LT(MaxAbsDiffValid(internal::ImprovedClusteredCore(in.q, in.k, in.v, valid, assign,
                                                              64, topk),
                              exact, valid),
              kTol)
        << "topk=" << topk;
  }
}

TEST(Clustered, FewerValidQueriesThanClustersIsExact) {  // T2 through the variant
  const auto in = RandomQkv(1, 2, 64, 32, 23);
  const torch::Tensor valid = RightPadded({40}, 64);
  auto attention = MakeVariant("clustered", {{"clusters", "40"}});
  EXPECT_LT(MaxAbsDiffValid(attention->Forward(in.q, in.k, in.v, valid),
                            DenseReference(in.q, in.k, in.v, valid), valid),
            kTol);
}

TEST(Clustered, IdenticalQueriesEqualFull) {  // T3
  auto in = RandomQkv(1, 2, 80, 32, 24);
  in.q = in.q.index({Slice(), Slice(), Slice(0, 1)}).expand_as(in.q).contiguous();
  const torch::Tensor valid = RightPadded({70}, 80);
  auto attention = MakeVariant("clustered", {{"clusters", "8"}});
  EXPECT_LT(MaxAbsDiffValid(attention->Forward(in.q, in.k, in.v, valid),
                            DenseReference(in.q, in.k, in.v, valid), valid),
            kTol);
}

TEST(Clustered, OneClusterIsMeanQueryAttention) {  // T4
  const auto in = RandomQkv(2, 2, 64, 32, 25);
  const torch::Tensor valid = RightPadded({64, 33}, 64);
  auto attention = MakeVariant("clustered", {{"clusters", "1"}});
  const torch::Tensor out = attention->Forward(in.q, in.k, in.v, valid);
  const torch::Tensor w = valid.to(torch::kFloat).unsqueeze(1).unsqueeze(-1);  // [B,1,N,1]
  const torch::Tensor mean_q = (in.q * w).sum(2, true) / w.sum(2, true);      // [B,H,1,D]
  const torch::Tensor closed = DenseReference(mean_q.expand_as(in.q).contiguous(), in.k, in.v, valid);
  EXPECT_LT(MaxAbsDiffValid(out, closed, valid), kTol);
}

TEST(ImprovedClustered, RowL1ErrorNeverAboveClustered) {  // T5
  const auto in = RandomQkv(2, 2, 128, 32, 26);
  const torch::Tensor valid = RightPadded({128, 100}, 128);
  internal::ClusteringOptions options;
  AttentionSpec spec;
  spec.num_heads = 2;
  spec.head_dim = 32;
  const torch::Tensor assign = internal::HammingClusters(
      internal::HashBits(in.q, internal::MakeHashPlanes(spec, options)), valid, 6, 10);
  torch::Tensor w_clustered, w_improved;
  internal::ClusteredCore(in.q, in.k, in.v, valid, assign, 6, &w_clustered);
  internal::ImprovedClusteredCore(in.q, in.k, in.v, valid, assign, 6, 8, &w_improved);
  const torch::Tensor exact = ExactWeights(in.q, in.k, valid);
  const torch::Tensor e_cl = (w_clustered.to(torch::kDouble) - exact).abs().sum(-1);
  const torch::Tensor e_ic = (w_improved.to(torch::kDouble) - exact).abs().sum(-1);
  EXPECT_TRUE((e_ic <= e_cl + 1e-5).all().item<bool>());
  EXPECT_LT(e_ic.mean().item<double>(), e_cl.mean().item<double>());
}

TEST(ImprovedClustered, EffectiveRowsSumToOne) {  // T8
  const auto in = RandomQkv(2, 2, 96, 32, 27);
  const torch::Tensor valid = RightPadded({96, 70}, 96);
  internal::ClusteringOptions options;
  AttentionSpec spec;
  spec.num_heads = 2;
  spec.head_dim = 32;
  const torch::Tensor assign = internal::HammingClusters(
      internal::HashBits(in.q, internal::MakeHashPlanes(spec, options)), valid, 7, 10);
  torch::Tensor weights;
  const torch::Tensor out =
      internal::ImprovedClusteredCore(in.q, in.k, in.v, valid, assign, 7, 5, &weights);
  const torch::Tensor sums = weights.sum(-1);  // [B,H,N]
  const torch::Tensor valid_rows = valid.unsqueeze(1).expand_as(sums);
  EXPECT_LT((sums.masked_select(valid_rows) - 1).abs().max().item<float>(), kTol);
  EXPECT_EQ(sums.masked_select(valid_rows.logical_not()).abs().max().item<float>(), 0.0f);
  // The weights are the ones the output was computed with; padded keys get no weight.
  EXPECT_LT(MaxAbsDiffValid(out, torch::matmul(weights, in.v), valid), kTol);
  EXPECT_EQ(weights.index({1, Slice(), Slice(), Slice(70)}).abs().max().item<float>(), 0.0f);
}

// 200 queries [1, 1, 200, 32] in four tight groups far apart, and each query's group (i % 4).
std::pair<torch::Tensor, torch::Tensor> SeparatedGroups(uint64_t seed) {
  torch::manual_seed(seed);
  const torch::Tensor centers = torch::randn({4, 32}) * 10;
  const torch::Tensor group = torch::arange(200) % 4;
  return {(centers.index_select(0, group) + 0.01 * torch::randn({200, 32})).view({1, 1, 200, 32}),
          group};
}

TEST(HammingClusters, ValidIdsInRangePaddedGetSentinel) {
  const auto in = RandomQkv(2, 2, 100, 32, 28);
  const torch::Tensor valid = RightPadded({100, 77}, 100);
  AttentionSpec spec;
  spec.num_heads = 2;
  spec.head_dim = 32;
  const torch::Tensor assign = internal::HammingClusters(
      internal::HashBits(in.q, internal::MakeHashPlanes(spec, {})), valid, 9, 10);
  const torch::Tensor v = valid.unsqueeze(1).expand_as(assign);
  EXPECT_TRUE(assign.masked_select(v).lt(9).all().item<bool>());
  EXPECT_TRUE(assign.masked_select(v).ge(0).all().item<bool>());
  EXPECT_TRUE(assign.masked_select(v.logical_not()).eq(9).all().item<bool>());
}

TEST(HammingClusters, Int8AndFloatBitProductsGiveTheSameClusters) {
  // kAuto is int8 on CPU and fp32 on CUDA: both paths run here and must agree exactly, on
  // batches of several heads (per-head int8 products) and a single head, bit counts that are
  // and are not multiples of 8, with empty clusters to re-seed (more clusters than distinct
  // codes), and cluster counts whose scale folds into the int8 operands (9, 40, 100) or not
  // (131, prime).
  for (const auto& [heads, bits, clusters] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{
           {3, 63, 9}, {1, 32, 100}, {2, 5, 40}, {2, 16, 131}}) {
    const auto in = RandomQkv(2, heads, 150, 16, 31);
    const torch::Tensor valid = RightPadded({150, 97}, 150);
    AttentionSpec spec;
    spec.num_heads = heads;
    spec.head_dim = 16;
    internal::ClusteringOptions options;
    options.bits = bits;
    const torch::Tensor x = internal::HashBits(in.q, internal::MakeHashPlanes(spec, options));
    const torch::Tensor as_float = internal::HammingClusters(
        x, valid, clusters, 10, internal::BitProduct::kFloat);
    const torch::Tensor as_int8 = internal::HammingClusters(
        x, valid, clusters, 10, internal::BitProduct::kInt8);
    EXPECT_TRUE(torch::equal(as_float, as_int8))
        << heads << " heads, " << bits << " bits, " << clusters << " clusters";
  }
}

TEST(ClusterMeans, IndexAddEqualsOneHotGemm) {
  // CPU sums by index_add_, CUDA by the one-hot GEMM: both run here. Ids include the padding
  // id C, and cluster 3 is left empty (count 0, mean 0).
  torch::manual_seed(5);
  const int64_t clusters = 7;
  const torch::Tensor x = torch::randn({2, 3, 60, 16});
  torch::Tensor assign = torch::randint(0, clusters + 1, {2, 3, 60}, torch::kLong);
  assign.masked_fill_(assign.eq(3), clusters);
  const auto [means, counts] = internal::ClusterMeans(x, assign, clusters);
  const auto [gemm_means, gemm_counts] =
      internal::ClusterMeans(x, assign, clusters, /*one_hot=*/true);
  EXPECT_TRUE(torch::equal(counts, gemm_counts));
  EXPECT_TRUE(torch::allclose(means, gemm_means, /*rtol=*/0, /*atol=*/1e-5));
  EXPECT_TRUE(counts.index({Slice(), Slice(), 3}).eq(0).all().item<bool>());
  EXPECT_TRUE(means.index({Slice(), Slice(), 3}).eq(0).all().item<bool>());
  EXPECT_EQ(counts.sum().item<float>(), assign.lt(clusters).sum().item<int64_t>());
}

TEST(HammingClusters, RecoversWellSeparatedGroups) {
  // Four tight groups of queries far apart: with C = 4 every group is one cluster.
  const auto [q, group] = SeparatedGroups(29);
  AttentionSpec spec;
  spec.head_dim = 32;
  internal::ClusteringOptions options;
  options.hash_bias = false;
  const torch::Tensor assign = internal::HammingClusters(
      internal::HashBits(q, internal::MakeHashPlanes(spec, options)), RightPadded({200}, 200), 4,
      10)[0][0];
  for (int64_t g = 0; g < 4; ++g) {
    const torch::Tensor ids = assign.masked_select(group.eq(g));
    EXPECT_TRUE(ids.eq(ids[0]).all().item<bool>()) << "group " << g;
  }
  EXPECT_EQ(std::get<0>(torch::_unique(assign)).numel(), 4);
}

// Sum of squared distances of valid queries to the mean of their cluster.
double KMeansObjective(const torch::Tensor& q, const torch::Tensor& valid,
                       const torch::Tensor& assign, int64_t clusters) {
  const torch::Tensor onehot = torch::one_hot(assign, clusters + 1)
                                   .index({Slice(), Slice(), Slice(), Slice(0, clusters)})
                                   .to(torch::kDouble);
  const torch::Tensor qd = q.to(torch::kDouble);
  const torch::Tensor means =
      torch::matmul(onehot.transpose(-1, -2), qd) / onehot.sum(2).clamp_min(1).unsqueeze(-1);
  const torch::Tensor residual = qd - torch::matmul(onehot, means);
  return residual.pow(2).sum(-1).masked_select(valid.unsqueeze(1).expand_as(assign))
      .sum().item<double>();
}

TEST(RefineClusters, NeverIncreasesTheKMeansObjective) {
  const auto in = RandomQkv(2, 3, 300, 32, 32);
  const torch::Tensor valid = RightPadded({300, 210}, 300);
  AttentionSpec spec;
  spec.num_heads = 3;
  spec.head_dim = 32;
  const torch::Tensor start = internal::HammingClusters(
      internal::HashBits(in.q, internal::MakeHashPlanes(spec, {})), valid, 12, 2);
  double previous = KMeansObjective(in.q, valid, start, 12);
  for (int64_t rounds : {1, 2, 5}) {
    const torch::Tensor refined = internal::RefineClusters(in.q, valid, start, 12, rounds);
    const double objective = KMeansObjective(in.q, valid, refined, 12);
    EXPECT_LE(objective, previous * (1 + 1e-9)) << rounds << " rounds";
    previous = objective;
    const torch::Tensor v = valid.unsqueeze(1).expand_as(refined);
    EXPECT_TRUE(refined.masked_select(v).lt(12).all().item<bool>());
    EXPECT_TRUE(refined.masked_select(v.logical_not()).eq(12).all().item<bool>());
  }
  EXPECT_TRUE(torch::equal(internal::RefineClusters(in.q, valid, start, 12, 0), start));
}

TEST(RefineClusters, RepairsAScrambledAssignmentOfSeparatedGroups) {
  // Four tight, well separated groups; at the start every cluster holds one whole group plus
  // one stray member of another group, which pulls its mean off the group: one round must
  // move each stray query to the cluster of its own group.
  const auto [q, group] = SeparatedGroups(33);
  torch::Tensor start = ((group + 1) % 4).view({1, 1, 200}).clone();
  start.index_put_({0, 0, Slice(0, 4)}, torch::arange(4));  // one true member per cluster
  const torch::Tensor refined =
      internal::RefineClusters(q, RightPadded({200}, 200), start, 4, 10)[0][0];
  for (int64_t g = 0; g < 4; ++g) {
    const torch::Tensor ids = refined.masked_select(group.eq(g));
    EXPECT_TRUE(ids.eq(ids[0]).all().item<bool>()) << "group " << g;
  }
  EXPECT_EQ(std::get<0>(torch::_unique(refined)).numel(), 4);
}

TEST(RefineClusters, RowsWithFewQueriesKeepOneQueryClusters) {  // T2 with refinement
  const auto in = RandomQkv(2, 2, 64, 32, 34);
  const torch::Tensor valid = RightPadded({64, 20}, 64);
  auto attention = MakeVariant("iclustered", {{"clusters", "20"}, {"topk", "2"}, {"refine", "4"}});
  const torch::Tensor out = attention->Forward(in.q, in.k, in.v, valid);
  const torch::Tensor exact = DenseReference(in.q, in.k, in.v, valid);
  EXPECT_LT(MaxAbsDiffValid(out.index({Slice(1, 2)}), exact.index({Slice(1, 2)}),
                            valid.index({Slice(1, 2)})),
            kTol);
}

TEST(HashBits, BitIsSignOfOffsetProjection) {
  const auto in = RandomQkv(1, 2, 10, 8, 30);
  AttentionSpec spec;
  spec.num_heads = 2;
  spec.head_dim = 8;
  internal::ClusteringOptions options;
  options.bits = 5;
  const torch::Tensor planes = internal::MakeHashPlanes(spec, options);  // [2, 5, 9]
  const torch::Tensor bits = internal::HashBits(in.q, planes);
  for (int64_t h = 0; h < 2; ++h) {
    for (int64_t b = 0; b < 5; ++b) {
      const torch::Tensor expected =
          torch::matmul(in.q[0][h], planes[h][b].index({Slice(0, 8)})).gt(planes[h][b][8]);
      EXPECT_TRUE(torch::equal(bits[0][h].index({Slice(), b}).to(torch::kBool), expected));
    }
  }
}

// Random queries do not cluster (the hardest case); only the ordering is asserted here. The
// error on real MiniLM activations is measured in bench/attention_bench.cc.
TEST(ImprovedClustered, MoreAccurateThanClusteredOnLongerInputs) {
  const auto in = RandomQkv(1, 2, 512, 32, 31);
  const torch::Tensor valid = RightPadded({500}, 512);
  const torch::Tensor exact = DenseReference(in.q, in.k, in.v, valid);
  auto rel = [&](const torch::Tensor& out) {
    return ((out - exact).norm() / exact.norm()).item<double>();
  };
  const double cl = rel(MakeVariant("clustered", {{"clusters", "25"}})->Forward(in.q, in.k, in.v, valid));
  const double ic = rel(MakeVariant("iclustered", {{"clusters", "25"}})->Forward(in.q, in.k, in.v, valid));
  EXPECT_LT(ic, cl);
}

TEST(ClusteredOptions, OutOfRangeValuesAreInvalidArgument) {
  for (const auto& [key, value] : std::vector<std::pair<std::string, std::string>>{
           {"clusters", "0"}, {"bits", "64"}, {"topk", "0"}, {"iterations", "-1"}, {"refine", "-1"},
           {"hash_bias", "2"}, {"min_len_efficient", "x"}}) {
    AttentionSpec spec;
    spec.num_heads = 2;
    spec.head_dim = 32;
    spec.options = {{key, value}};
    auto attention = Registry::Global().Create("iclustered", spec);
    EXPECT_EQ(attention.status().code(), absl::StatusCode::kInvalidArgument) << key;
  }
}

}  // namespace
}  // namespace longenc::attention
