#include "model/encoder/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace longenc::encoder {
namespace {

using ::testing::HasSubstr;

const char kMiniLm[] = R"({"model_type":"bert","vocab_size":30522,"hidden_size":384,
  "num_hidden_layers":6,"num_attention_heads":12,"intermediate_size":1536,"hidden_act":"gelu",
  "layer_norm_eps":1e-12,"max_position_embeddings":512,"type_vocab_size":2,"pad_token_id":0,
  "position_embedding_type":"absolute"})";

TEST(EncoderConfig, ParsesMiniLm) {
  auto c = ParseEncoderConfig(kMiniLm, "config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->hidden_size, 384);
  EXPECT_EQ(c->head_dim(), 32);
  EXPECT_EQ(c->num_hidden_layers, 6);
  EXPECT_EQ(c->max_position_embeddings, 512);
  EXPECT_DOUBLE_EQ(c->layer_norm_eps, 1e-12);
}

TEST(EncoderConfig, LoadsTheExportedModel) {
  auto c = LoadEncoderConfig(std::string(LONGENC_DEFAULT_MODEL_DIR) + "/config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->vocab_size, 30522);
}

absl::Status Error(std::string json) { return ParseEncoderConfig(json, "cfg/config.json").status(); }

std::string Replace(std::string s, const std::string& from, const std::string& to) {
  s.replace(s.find(from), from.size(), to);
  return s;
}

TEST(EncoderConfig, RejectsEachClassOfMistake) {
  const std::string base = kMiniLm;
  struct Case { std::string json; const char* message; } cases[] = {
      {"{", "not valid JSON"},
      {"[]", "not a JSON object"},
      {Replace(base, R"("hidden_size":384,)", ""), "missing required field 'hidden_size'"},
      {Replace(base, R"("hidden_size":384)", R"("hidden_size":"384")"), "'hidden_size' is not an integer"},
      {Replace(base, R"("num_hidden_layers":6)", R"("num_hidden_layers":0)"), "'num_hidden_layers' is 0"},
      {Replace(base, R"("num_attention_heads":12)", R"("num_attention_heads":7)"), "not divisible"},
      {Replace(base, R"("model_type":"bert")", R"("model_type":"gpt2")"), "model_type 'gpt2' is not supported"},
      {Replace(base, R"("hidden_act":"gelu")", R"("hidden_act":"swish")"), "hidden_act 'swish'"},
      {Replace(base, R"("layer_norm_eps":1e-12)", R"("layer_norm_eps":-1)"), "layer_norm_eps"},
      {Replace(base, R"("pad_token_id":0)", R"("pad_token_id":40000)"), "pad_token_id 40000"},
      {Replace(base, R"("absolute")", R"("relative_key")"), "position_embedding_type"},
  };
  for (const auto& c : cases) {
    absl::Status s = Error(c.json);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.json;
    EXPECT_THAT(s.message(), HasSubstr("cfg/config.json")) << c.json;
    EXPECT_THAT(s.message(), HasSubstr(c.message)) << c.json;
  }
}

TEST(EncoderConfig, MissingFileIsNotFound) {
  EXPECT_EQ(LoadEncoderConfig("/nonexistent/config.json").status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace longenc::encoder
