// The model directory's other files: model.safetensors.index.json (shards) and the
// sentence-transformers metadata, each refused with the file and key named when malformed.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "model/encoder/weight_files.h"
#include "model/encoder/sentence_transformers.h"

namespace longenc::encoder {
namespace {

using ::testing::HasSubstr;

TEST(WeightFilesIndex, ParsesTheWeightMap) {
  auto pairs = WeightFiles::ParseIndex(
      R"({"metadata":{"total_size":8},"weight_map":{"a.weight":"model-00001-of-00002.safetensors",
          "b.weight":"model-00002-of-00002.safetensors"}})", "idx");
  ASSERT_TRUE(pairs.ok()) << pairs.status();
  EXPECT_EQ(pairs->size(), 2u);
}

TEST(WeightFilesIndex, RefusesShardsOutsideTheDirectory) {
  for (const char* json : {R"({"weight_map":{"a":"../x.safetensors"}})", R"({"weight_map":{"a":"/etc/passwd"}})",
                           R"({"weight_map":{"a":"model.bin"}})", R"({"weight_map":{}})", R"({"weight_map":{"a":3}})",
                           R"([1])", "{"}) {
    auto pairs = WeightFiles::ParseIndex(json, "dir/model.safetensors.index.json");
    EXPECT_FALSE(pairs.ok()) << json;
    EXPECT_THAT(pairs.status().message(), HasSubstr("dir/model.safetensors.index.json")) << json;
  }
}

TEST(WeightFilesIndex, MissingDirectoryIsNotFound) {
  EXPECT_EQ(WeightFiles::Open("/nonexistent").status().code(), absl::StatusCode::kNotFound);
}

const char kModules[] = R"([{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},
  {"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.models.Pooling"},
  {"idx":2,"name":"2","path":"2_Normalize","type":"sentence_transformers.models.Normalize"}])";

TEST(SentenceTransformers, WithoutMetadataMeanAndNormalised) {
  auto info = ParseSentenceTransformerFiles("d", "", "", "", "");
  ASSERT_TRUE(info.ok());
  EXPECT_FALSE(info->present);
  EXPECT_EQ(info->pooling, PoolingMode::kMean);
  EXPECT_TRUE(info->normalize);
}

TEST(SentenceTransformers, ReadsPoolingNormalizeLengthAndPrompts) {
  auto info = ParseSentenceTransformerFiles(
      "d", kModules, R"({"word_embedding_dimension":1024,"pooling_mode_cls_token":true,
                         "pooling_mode_mean_tokens":false,"include_prompt":true})",
      R"({"max_seq_length":8192,"do_lower_case":false})",
      R"({"prompts":{"query":"search_query: ","document":"search_document: "},"default_prompt_name":"query"})");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->pooling, PoolingMode::kCls);
  EXPECT_TRUE(info->normalize);
  EXPECT_EQ(info->max_seq_length, 8192);
  ASSERT_EQ(info->prompts.size(), 2u);
  EXPECT_EQ(info->default_prompt_name, "query");
  auto last = ParseSentenceTransformerFiles("d", kModules, R"({"pooling_mode_lasttoken":true})", "", "");
  ASSERT_TRUE(last.ok()) << last.status();
  EXPECT_EQ(last->pooling, PoolingMode::kLastToken);
}

TEST(SentenceTransformers, NoNormalizeModuleMeansRawVectors) {
  const char modules[] = R"([{"type":"sentence_transformers.models.Transformer","path":""},
                            {"type":"sentence_transformers.models.Pooling","path":"1_Pooling"}])";
  auto info = ParseSentenceTransformerFiles("d", modules, R"({"pooling_mode_mean_tokens":true})", "", "");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_FALSE(info->normalize);
}

TEST(SentenceTransformers, RefusesWhatItCannotHonour) {
  struct Case {
    std::string modules, pooling, bert, st;
    const char* message;
  } cases[] = {
      {kModules, R"({"pooling_mode_max_tokens":true})", "", "", "'pooling_mode_max_tokens' is true"},
      {kModules, R"({"pooling_mode_cls_token":true,"pooling_mode_mean_tokens":true})", "", "", "both true"},
      {kModules, R"({"pooling_mode_mean_tokens":true,"include_prompt":false})", "", "", "'include_prompt'"},
      {kModules, "", "", "", "1_Pooling/config.json: missing"},
      {R"([{"type":"sentence_transformers.models.Dense","path":"2_Dense"}])", "", "", "",
       "module type 'sentence_transformers.models.Dense'"},
      {R"([{"type":"sentence_transformers.models.Pooling","path":"../x"}])", "", "", "", "leaves the model"},
      {"", "", R"({"max_seq_length":-1})", "", "sentence_bert_config.json: 'max_seq_length'"},
      {"", "", "", R"({"prompts":{"q":1}})", "prompt 'q' is not a string"},
      {"", "", "", R"({"prompts":{},"default_prompt_name":"q"})", "'default_prompt_name' 'q'"},
  };
  for (const Case& c : cases) {
    auto info = ParseSentenceTransformerFiles("d", c.modules, c.pooling, c.bert, c.st);
    ASSERT_FALSE(info.ok()) << c.message;
    EXPECT_THAT(info.status().message(), HasSubstr(c.message));
  }
}

}  // namespace
}  // namespace longenc::encoder
