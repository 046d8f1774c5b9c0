// The LibTorch backend end to end on a tiny seeded model: loading, batching invariances,
// long-document modes and every class of bad input or bad model directory.
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <numeric>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "model/torch_backend.h"
#include "tests/unit/model/tiny_model.h"

namespace longenc::model {
namespace {

using ::testing::HasSubstr;

class BackendTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = ::testing::TempDir() + "/tiny_model";
    testing::WriteTinyModel(dir_, testing::TinyConfig());
  }
  static std::unique_ptr<Backend> Make(const std::string& position_mode = "",
                                       const std::string& dir = dir_) {
    BackendOptions options;
    options.model_dir = dir;
    options.threads = 1;
    options.position_mode = position_mode;
    auto backend = CreateTorchBackend(options);
    EXPECT_TRUE(backend.ok()) << backend.status();
    return backend.ok() ? std::move(*backend) : nullptr;
  }
  static std::vector<int32_t> Doc(int n, int salt) {
    std::vector<int32_t> ids(n);
    ids[0] = 2;
    for (int i = 1; i < n - 1; ++i) ids[i] = 5 + (i * 7 + salt * 13) % 59;
    ids[n - 1] = 3;
    return ids;
  }
  static std::vector<float> EmbedOne(Backend& b, const std::vector<int32_t>& ids,
                                     Pooling pooling = Pooling::kMean) {
    Batch batch;
    batch.Add(ids, pooling);
    auto r = b.Embed(batch);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->embeddings : std::vector<float>{};
  }
  static double MaxAbsDiff(const float* a, const float* b, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; ++i) m = std::max(m, static_cast<double>(std::abs(a[i] - b[i])));
    return m;
  }
  static std::string dir_;
};
std::string BackendTest::dir_;

TEST_F(BackendTest, ReportsModelInfo) {
  auto b = Make();
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->info().embedding_dim, 32);
  EXPECT_EQ(b->info().max_positions, 16);
  EXPECT_EQ(b->info().vocab_size, 64);
  EXPECT_EQ(b->info().device, "cpu");
  EXPECT_EQ(b->info().default_attention, "full");
  EXPECT_THAT(b->info().attention_variants, ::testing::Contains("full"));
}

TEST_F(BackendTest, EmbeddingsAreNormalisedUnlessAskedNot) {
  auto b = Make();
  Batch batch;
  batch.Add(Doc(10, 1), Pooling::kMean, true);
  batch.Add(Doc(10, 1), Pooling::kMean, false);
  auto r = b->Embed(batch);
  ASSERT_TRUE(r.ok()) << r.status();
  double norm0 = 0, norm1 = 0;
  for (int i = 0; i < 32; ++i) {
    norm0 += r->embeddings[i] * r->embeddings[i];
    norm1 += r->embeddings[32 + i] * r->embeddings[32 + i];
  }
  EXPECT_NEAR(norm0, 1.0, 1e-5);
  EXPECT_GT(std::abs(norm1 - 1.0), 1e-3);
  for (int i = 0; i < 32; ++i) {
    EXPECT_NEAR(r->embeddings[i], r->embeddings[32 + i] / std::sqrt(norm1), 1e-6);
  }
}

TEST_F(BackendTest, BatchedEqualsOneByOneAndPaddingNeverChangesAResult) {
  auto b = Make();
  const std::vector<int> lengths = {2, 16, 5, 9, 16, 3};
  Batch batch;
  for (size_t i = 0; i < lengths.size(); ++i) {
    batch.Add(Doc(lengths[i], static_cast<int>(i)), i % 2 ? Pooling::kCls : Pooling::kMean);
  }
  auto together = b->Embed(batch);
  ASSERT_TRUE(together.ok()) << together.status();
  for (size_t i = 0; i < lengths.size(); ++i) {
    auto alone = EmbedOne(*b, Doc(lengths[i], static_cast<int>(i)), i % 2 ? Pooling::kCls : Pooling::kMean);
    EXPECT_LT(MaxAbsDiff(alone.data(), together->embeddings.data() + 32 * i, 32), 1e-6) << i;
  }
}

TEST_F(BackendTest, IdenticalInputsGiveIdenticalOutputs) {
  auto b = Make();
  EXPECT_EQ(EmbedOne(*b, Doc(12, 3)), EmbedOne(*b, Doc(12, 3)));
}

TEST_F(BackendTest, EveryPositionModeEncodesLongDocumentsAndAgreesOnShortOnes) {
  const auto short_doc = Doc(12, 4), long_doc = Doc(45, 4);
  auto reference = Make("interpolate");
  const auto short_ref = EmbedOne(*reference, short_doc);
  for (const std::string mode : {"chunk", "recurrent", "grouped", "interpolate",
                                 "recurrent,logscale", "grouped,logscale", "interpolate,logscale"}) {
    auto b = Make(mode);
    ASSERT_NE(b, nullptr) << mode;
    EXPECT_LT(MaxAbsDiff(EmbedOne(*b, short_doc).data(), short_ref.data(), 32), 1e-6) << mode;
    auto v = EmbedOne(*b, long_doc);
    ASSERT_EQ(v.size(), 32u) << mode;
    double norm = 0;
    for (float x : v) norm += x * x;
    EXPECT_NEAR(norm, 1.0, 1e-5) << mode;
  }
}

TEST_F(BackendTest, ChunkModeEqualsTheMeanOverItsWindows) {
  // 30 tokens with a 16-position table: windows of 14 content tokens, [CLS]/[SEP] around each.
  auto b = Make("chunk");
  const auto doc = Doc(30, 2);
  std::vector<int32_t> w1 = {doc[0]}, w2 = {doc[0]}, w3 = {doc[0]};
  w1.insert(w1.end(), doc.begin() + 1, doc.begin() + 15);
  w2.insert(w2.end(), doc.begin() + 15, doc.begin() + 29);
  w1.push_back(doc[29]);
  w2.push_back(doc[29]);
  Batch windows;
  windows.Add(w1, Pooling::kMean, false);
  windows.Add(w2, Pooling::kMean, false);
  auto parts = b->Embed(windows);
  ASSERT_TRUE(parts.ok());
  Batch whole;
  whole.Add(doc, Pooling::kMean, false);
  auto r = b->Embed(whole);
  ASSERT_TRUE(r.ok());
  for (int i = 0; i < 32; ++i) {  // equal windows of 16 tokens: the mean of the two means
    EXPECT_NEAR(r->embeddings[i], (parts->embeddings[i] + parts->embeddings[32 + i]) / 2, 1e-5);
  }
}

TEST_F(BackendTest, RejectsBadInput) {
  auto b = Make();
  Batch bad_id;
  bad_id.Add({2, 64, 3});
  EXPECT_THAT(b->Embed(bad_id).status().message(), HasSubstr("token id 64 is outside"));
  Batch negative;
  negative.Add({2, -1, 3});
  EXPECT_EQ(b->Embed(negative).status().code(), absl::StatusCode::kInvalidArgument);
  Batch empty_doc;
  empty_doc.Add({});
  EXPECT_EQ(b->Embed(empty_doc).status().code(), absl::StatusCode::kInvalidArgument);
  Batch unknown;
  unknown.settings.attention = "nope";
  unknown.Add({2, 3});
  EXPECT_EQ(b->Embed(unknown).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(b->ValidateSettings({"nope", "", ""}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(b->ValidateSettings({"", "", "sideways"}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(b->ValidateSettings({"full", "", "chunk"}).ok());
}

TEST_F(BackendTest, CudaRequestWithoutGpuFailsClearly) {
  if (torch::cuda::is_available()) GTEST_SKIP() << "a GPU is present";
  BackendOptions options;
  options.model_dir = dir_;
  options.device = "cuda";
  auto s = CreateTorchBackend(options).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("CUDA is not available"));
  options.device = "tpu";
  EXPECT_THAT(CreateTorchBackend(options).status().message(), HasSubstr("--device=tpu"));
}

constexpr const char* kModelFiles[] = {"config.json", "model.safetensors", "vocab.txt"};

// A copy of the tiny model in a fresh directory, removed with everything in it when the
// object goes, so the test can damage one file. (No std::filesystem: libtorch.so exports its
// own incompatible copy of those symbols.)
class DamagedCopy {
 public:
  DamagedCopy(const std::string& from, const std::string& name)
      : dir_(::testing::TempDir() + "/damaged_" + name + "_XXXXXX") {
    EXPECT_NE(mkdtemp(dir_.data()), nullptr);
    for (const char* file : kModelFiles) {
      std::ifstream in(from + "/" + file, std::ios::binary);
      std::ofstream(dir_ + "/" + file, std::ios::binary) << in.rdbuf();
    }
  }
  ~DamagedCopy() {
    for (const char* file : kModelFiles) unlink((dir_ + "/" + file).c_str());
    rmdir(dir_.c_str());
  }
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
};

void DropLastBytes(const std::string& path, off_t bytes) {
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  ASSERT_EQ(truncate(path.c_str(), st.st_size - bytes), 0);
}

absl::Status Load(const std::string& dir) {
  BackendOptions options;
  options.model_dir = dir;
  return CreateTorchBackend(options).status();
}

TEST_F(BackendTest, RefusesBrokenModelDirectoriesNamingFileAndProblem) {
  EXPECT_THAT(Load("/nonexistent/model").message(), HasSubstr("/nonexistent/model/config.json"));

  {
    DamagedCopy d(dir_, "truncated");
    DropLastBytes(d.dir() + "/model.safetensors", 100);
    EXPECT_THAT(Load(d.dir()).message(),
                HasSubstr("model.safetensors: not a valid safetensors file"));
  }
  // config.json changed (nullptr: not valid JSON) -> expected message.
  auto config_case = [](const std::string& name, const encoder::EncoderConfig* config,
                        const std::string& expected) {
    DamagedCopy d(dir_, name);
    std::ofstream(d.dir() + "/config.json")
        << (config != nullptr ? testing::TinyConfigJson(*config) : "{\"model_type\": \"bert\"");
    EXPECT_THAT(Load(d.dir()).message(), HasSubstr(expected)) << name;
  };
  auto config = testing::TinyConfig();
  config.num_hidden_layers = 3;
  config_case("layers", &config, "missing");
  config = testing::TinyConfig();
  config.num_hidden_layers = 1;
  config_case("fewer_layers", &config, "unexpected tensor 'encoder.layer.1.");
  config = testing::TinyConfig();
  config.intermediate_size = 48;
  config_case("hidden", &config, "describe different models");
  config_case("config", nullptr, "config.json: not valid JSON");
}

}  // namespace
}  // namespace longenc::model
