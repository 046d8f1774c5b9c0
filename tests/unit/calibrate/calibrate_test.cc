// CAST surrogate calibration on the tiny seeded model: k-means, capture, distillation lowering
// the error, determinism, and the file round trip into the "cast" variant.
#include "model/calibrate/calibration.h"

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "model/attention/cast.h"
#include "model/attention/registry.h"
#include "model/encoder/config.h"
#include "model/encoder/safetensors.h"
#include "model/encoder/weights.h"
#include "tests/unit/model/tiny_model.h"

namespace longenc::calibrate {
namespace {

using torch::indexing::Slice;

encoder::BertModel LoadTinyModel() {
  const std::string dir = ::testing::TempDir() + "/calibrate_tiny_model";
  testing::WriteTinyModel(dir, testing::TinyConfig(), 7);
  auto config = encoder::LoadEncoderConfig(dir + "/config.json");
  EXPECT_TRUE(config.ok()) << config.status();
  auto weights = encoder::SafetensorsFile::Open(dir + "/model.safetensors");
  EXPECT_TRUE(weights.ok()) << weights.status();
  encoder::BertModel model(*config);
  EXPECT_TRUE(encoder::LoadWeights(*weights, model).ok());
  model->eval();
  for (auto& p : model->parameters()) p.set_requires_grad(false);
  return model;
}

// Documents of `n` token ids: [CLS]=1 … [SEP]=2 with seeded ids in between (tiny vocabulary).
std::vector<std::vector<int32_t>> Documents(int count, int64_t n, uint64_t seed) {
  torch::manual_seed(seed);
  std::vector<std::vector<int32_t>> docs;
  for (int i = 0; i < count; ++i) {
    const torch::Tensor ids = torch::randint(5, 64, {n}, torch::kInt);
    std::vector<int32_t> doc(ids.data_ptr<int32_t>(), ids.data_ptr<int32_t>() + n);
    doc.front() = 1;
    doc.back() = 2;
    docs.push_back(doc);
  }
  return docs;
}

CalibrationOptions SmallOptions() {
  CalibrationOptions options;
  options.cast.clusters = 4;
  options.cast.kappa = 8;  // 32 of 48 tokens clustered, the rest summarised
  options.steps = 12;
  options.learning_rate = 0.05;
  options.kmeans_iterations = 5;
  options.validation_documents = 1;
  return options;
}

void Quiet(const std::string&) {}

TEST(KMeans, FindsSeparatedBlobsAndIsSeeded) {
  torch::manual_seed(3);
  // Per head: three tight blobs far apart.
  const torch::Tensor centres = torch::tensor({{0.0f, 0.0f}, {10.0f, 0.0f}, {0.0f, 10.0f}});
  const torch::Tensor points =
      (centres.repeat({40, 1}) + 0.1 * torch::randn({120, 2})).unsqueeze(0).repeat({2, 1, 1});
  const torch::Tensor found = KMeans(points, 3, 10, 5);
  ASSERT_EQ(found.sizes(), (std::vector<int64_t>{2, 3, 2}));
  for (int64_t h = 0; h < 2; ++h) {
    for (int64_t c = 0; c < 3; ++c) {  // every true centre has a centroid within 0.2
      const double nearest = (found[h] - centres[c]).norm(2, -1).min().item<double>();
      EXPECT_LT(nearest, 0.2) << "head " << h << " centre " << c;
    }
  }
  EXPECT_TRUE(torch::equal(found, KMeans(points, 3, 10, 5)));
}

TEST(CaptureLayers, RecordsEveryLayerAndExactOutputs) {
  encoder::BertModel model = LoadTinyModel();
  const auto docs = Documents(2, 40, 1);
  const positions::PositionScheme scheme{positions::Mode::kGrouped, true};
  const std::vector<LayerSamples> layers = CaptureLayers(model, docs, scheme);
  ASSERT_EQ(layers.size(), 2u);
  for (const LayerSamples& s : layers) {
    ASSERT_EQ(s.q.size(), 2u);
    EXPECT_EQ(s.q[0].sizes(), (std::vector<int64_t>{1, 4, 40, 8}));
    // The recorded output is exact attention of the recorded inputs.
    const torch::Tensor scores = torch::matmul(s.q[1], s.k[1].transpose(-1, -2)) / std::sqrt(8.0);
    const torch::Tensor dense = torch::matmul(torch::softmax(scores, -1), s.v[1]);
    EXPECT_LT((dense - s.exact[1]).abs().max().item<double>(), 1e-5);
    EXPECT_FALSE(s.q[0].requires_grad());
  }
}

TEST(Calibrate, LowersTheErrorInAFewSteps) {
  encoder::BertModel model = LoadTinyModel();
  auto result = Calibrate(model, Documents(3, 48, 2), SmallOptions(), Quiet);
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_EQ(result->surrogates.size(), 2u);
  for (const LayerReport& r : result->reports) {
    EXPECT_EQ(result->surrogates[r.layer].sizes(), (std::vector<int64_t>{4, 4, 8}));
    EXPECT_GT(r.train_initial, 0.0);
    EXPECT_LT(r.train_final, 0.9 * r.train_initial) << "layer " << r.layer;
    EXPECT_GE(r.validation_initial, 0.0);
    EXPECT_GE(r.validation_final, 0.0);
  }
}

TEST(Calibrate, IsDeterministicForASeed) {
  encoder::BertModel model = LoadTinyModel();
  CalibrationOptions options = SmallOptions();
  options.steps = 3;
  const auto docs = Documents(3, 48, 4);
  auto a = Calibrate(model, docs, options, Quiet);
  auto b = Calibrate(model, docs, options, Quiet);
  ASSERT_TRUE(a.ok() && b.ok());
  for (size_t l = 0; l < a->surrogates.size(); ++l) {
    EXPECT_TRUE(torch::equal(a->surrogates[l], b->surrogates[l])) << "layer " << l;
  }
  options.seed = 1;
  auto c = Calibrate(model, docs, options, Quiet);
  ASSERT_TRUE(c.ok());
  EXPECT_FALSE(torch::equal(a->surrogates[0], c->surrogates[0]));
}

TEST(Calibrate, RefusesTooFewDocuments) {
  encoder::BertModel model = LoadTinyModel();
  CalibrationOptions options = SmallOptions();
  options.validation_documents = 2;
  auto result = Calibrate(model, Documents(2, 48, 5), options, Quiet);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
}

// The file written from a calibration, loaded by the "cast" variant, computes the function
// that was optimised: its error on the training inputs is the reported final error.
TEST(Calibrate, SurrogateFileRoundTripsIntoTheCastVariant) {
  encoder::BertModel model = LoadTinyModel();
  const CalibrationOptions options = SmallOptions();
  const auto docs = Documents(3, 48, 6);
  auto result = Calibrate(model, docs, options, Quiet);
  ASSERT_TRUE(result.ok()) << result.status();
  const std::string path = ::testing::TempDir() + "/calibrated.safetensors";
  ASSERT_TRUE(attention::internal::SaveSurrogates(path, result->surrogates).ok());

  const std::vector<LayerSamples> layers =
      CaptureLayers(model, {docs[0], docs[1]}, options.positions);
  for (int64_t layer = 0; layer < 2; ++layer) {
    auto loaded = attention::internal::LoadSurrogates(path, layer, 2, 4, 8);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    EXPECT_TRUE(torch::equal(*loaded, result->surrogates[layer]));
    attention::AttentionSpec spec;
    spec.layer = layer;
    spec.num_layers = 2;
    spec.num_heads = 4;
    spec.head_dim = 8;
    spec.options = {{"surrogates", path}, {"kappa", "8"}, {"min_len_efficient", "0"}};
    auto cast = attention::Registry::Global().Create("cast", spec);
    ASSERT_TRUE(cast.ok()) << cast.status();
    double num = 0, den = 0;
    const LayerSamples& s = layers[layer];
    for (size_t d = 0; d < 2; ++d) {
      const torch::Tensor out = (*cast)->Forward(s.q[d], s.k[d], s.v[d], s.valid[d]);
      num += (out - s.exact[d]).pow(2).sum().item<double>();
      den += s.exact[d].pow(2).sum().item<double>();
    }
    EXPECT_NEAR(num / den, result->reports[layer].train_final, 1e-5) << "layer " << layer;
  }
}

}  // namespace
}  // namespace longenc::calibrate
