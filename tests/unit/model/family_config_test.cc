// Every family's config.json in both dialects becomes the same typed config; what the code
// cannot honour is refused naming the key.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "model/encoder/config.h"

namespace longenc::encoder {
namespace {

using ::testing::HasSubstr;

EncoderConfig Parse(const std::string& json) {
  auto c = ParseEncoderConfig(json, "cfg/config.json");
  EXPECT_TRUE(c.ok()) << c.status() << "\n" << json;
  return c.ok() ? *c : EncoderConfig{};
}

std::string Error(const std::string& json) {
  auto c = ParseEncoderConfig(json, "cfg/config.json");
  EXPECT_FALSE(c.ok()) << json;
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(c.status().message());
}

std::string Replace(std::string s, const std::string& from, const std::string& to) {
  const size_t at = s.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  if (at != std::string::npos) s.replace(at, from.size(), to);
  return s;
}

// bge-m3's config.json (the hub file, sizes as published).
const char kBgeM3[] = R"({"architectures":["XLMRobertaModel"],"model_type":"xlm-roberta",
  "hidden_size":1024,"num_hidden_layers":24,"num_attention_heads":16,"intermediate_size":4096,
  "hidden_act":"gelu","vocab_size":250002,"max_position_embeddings":8194,"type_vocab_size":1,
  "layer_norm_eps":1e-05,"pad_token_id":1,"bos_token_id":0,"eos_token_id":2,
  "position_embedding_type":"absolute"})";

TEST(FamilyConfig, XlmRobertaCountsPositionsFromPadPlusOne) {
  const EncoderConfig c = Parse(kBgeM3);
  EXPECT_EQ(c.model_type, "xlm_roberta");
  EXPECT_EQ(c.position_offset, 2);
  EXPECT_EQ(c.usable_positions(), 8192);
  EXPECT_EQ(c.positions, PositionKind::kLearned);
  EXPECT_THAT(Error(Replace(kBgeM3, R"("absolute")", R"("rotary")")),
              HasSubstr("'position_embedding_type' is \"rotary\""));
}

// nomic-embed-text-v1.5: the remote-code keys, and the transformers 5 keys its hub commit added.
const char kNomicHub[] = R"({"model_type":"nomic_bert","vocab_size":30528,"n_embd":768,"n_layer":12,
  "n_head":12,"n_inner":3072,"n_positions":8192,"max_trained_positions":2048,"type_vocab_size":2,
  "pad_token_id":0,"activation_function":"swiglu","prenorm":false,"rotary_emb_fraction":1.0,
  "rotary_emb_base":1000,"rotary_emb_interleaved":false,"rotary_emb_scale_base":null,
  "rotary_scaling_factor":null,"qkv_proj_bias":false,"mlp_fc1_bias":false,"mlp_fc2_bias":false,
  "layer_norm_epsilon":1e-12})";
const char kNomicTf5[] = R"({"model_type":"nomic_bert","vocab_size":30528,"hidden_size":768,
  "num_hidden_layers":12,"num_attention_heads":12,"intermediate_size":3072,"hidden_act":"silu",
  "max_position_embeddings":2048,"type_vocab_size":2,"pad_token_id":0,"layer_norm_eps":1e-12,
  "rope_parameters":{"rope_theta":1000.0,"rope_type":"default"}})";

TEST(FamilyConfig, NomicDialectsAgree) {
  for (const char* json : {kNomicHub, kNomicTf5}) {
    const EncoderConfig c = Parse(json);
    EXPECT_EQ(c.model_type, "nomic_bert");
    EXPECT_EQ(c.hidden_size, 768);
    EXPECT_EQ(c.num_hidden_layers, 12);
    EXPECT_EQ(c.intermediate_size, 3072);
    EXPECT_EQ(c.max_position_embeddings, 2048);
    EXPECT_EQ(c.hidden_act, "silu");
    EXPECT_TRUE(c.gated_mlp);
    EXPECT_FALSE(c.attention_bias);
    EXPECT_FALSE(c.mlp_in_bias);
    EXPECT_EQ(c.positions, PositionKind::kRotary);
    EXPECT_EQ(c.rope.type, RopeType::kDefault);
    EXPECT_DOUBLE_EQ(c.rope.theta, 1000.0);
  }
  // The hub commit that added the transformers keys kept the old ones: both at once agree.
  std::string both = Replace(kNomicHub, R"("layer_norm_epsilon":1e-12})",
                             R"("layer_norm_epsilon":1e-12,"max_position_embeddings":2048,
                                "hidden_act":"silu","rope_parameters":{"rope_theta":1000.0,"rope_type":"default"}})");
  EXPECT_EQ(Parse(both).max_position_embeddings, 2048);
  const EncoderConfig scaled = Parse(Replace(kNomicHub, R"("rotary_scaling_factor":null)", R"("rotary_scaling_factor":2)"));
  EXPECT_EQ(scaled.rope.type, RopeType::kDynamic);
  EXPECT_DOUBLE_EQ(scaled.rope.factor, 2.0);
  EXPECT_EQ(scaled.rope.original_max_positions, 2048);
}

TEST(FamilyConfig, NomicRefusesWhatItCannotHonour) {
  const std::string hub = kNomicHub;
  EXPECT_THAT(Error(Replace(hub, R"("prenorm":false)", R"("prenorm":true)")), HasSubstr("'prenorm' is true"));
  EXPECT_THAT(Error(Replace(hub, R"("rotary_emb_interleaved":false)", R"("rotary_emb_interleaved":true)")),
              HasSubstr("'rotary_emb_interleaved'"));
  EXPECT_THAT(Error(Replace(hub, R"("rotary_emb_scale_base":null)", R"("rotary_emb_scale_base":512)")),
              HasSubstr("'rotary_emb_scale_base' is 512"));
  EXPECT_THAT(Error(Replace(hub, R"("swiglu")", R"("gelu")")), HasSubstr("'activation_function' is \"gelu\""));
  EXPECT_THAT(Error(Replace(hub, R"("n_embd":768)", R"("n_embd":768,"hidden_size":512)")),
              HasSubstr("disagree"));
  EXPECT_THAT(Error(Replace(hub, R"("rotary_emb_fraction":1.0)", R"("rotary_emb_fraction":0.3)")),
              HasSubstr("'rotary_emb_fraction'"));
  EXPECT_THAT(Error(Replace(kNomicTf5, R"("rope_type":"default")", R"("rope_type":"longrope")")),
              HasSubstr("'rope_type' is \"longrope\""));
}

// gte-base-en-v1.5 as published (model_type "new", static NTK), and transformers 5's rewrite.
const char kGteHub[] = R"({"architectures":["NewModel"],"model_type":"new","hidden_act":"gelu",
  "hidden_size":768,"num_hidden_layers":12,"num_attention_heads":12,"intermediate_size":3072,
  "layer_norm_eps":1e-12,"layer_norm_type":"layer_norm","max_position_embeddings":8192,
  "pack_qkv":true,"pad_token_id":0,"position_embedding_type":"rope",
  "rope_scaling":{"factor":2.0,"type":"ntk"},"rope_theta":500000,"type_vocab_size":0,
  "unpad_inputs":false,"use_memory_efficient_attention":false,"vocab_size":30528})";

TEST(FamilyConfig, GteHubNtkIsTransformersLinear) {
  const EncoderConfig c = Parse(kGteHub);
  EXPECT_EQ(c.model_type, "gte");
  EXPECT_EQ(c.type_vocab_size, 0);
  EXPECT_EQ(c.rope.type, RopeType::kLinear);
  EXPECT_DOUBLE_EQ(c.rope.theta, 1e6);
  EXPECT_DOUBLE_EQ(c.rope.factor, std::pow(2.0, 2.0 / 64));
  EXPECT_FALSE(c.mlp_in_bias);
  EXPECT_TRUE(c.mlp_out_bias);
  EXPECT_TRUE(c.attention_bias);
  const std::string tf5 = Replace(Replace(kGteHub, R"("model_type":"new")", R"("model_type":"gte")"),
                                  R"("rope_scaling":{"factor":2.0,"type":"ntk"},"rope_theta":500000)",
                                  R"("rope_parameters":{"rope_type":"yarn","rope_theta":10000,"factor":4,
                                     "original_max_position_embeddings":2048})");
  const EncoderConfig yarn = Parse(tf5);
  EXPECT_EQ(yarn.rope.type, RopeType::kYarn);
  EXPECT_EQ(yarn.rope.original_max_positions, 2048);
  EXPECT_THAT(Error(Replace(kGteHub, R"("type":"ntk")", R"("type":"ntk","mixed_b":2)")), HasSubstr("'mixed_b'"));
  EXPECT_THAT(Error(Replace(kGteHub, R"("layer_norm")", R"("rms_norm")")), HasSubstr("'layer_norm_type'"));
  EXPECT_THAT(Error(Replace(kGteHub, R"("pack_qkv":true)", R"("pack_qkv":false)")), HasSubstr("'pack_qkv'"));
  EXPECT_THAT(Error(Replace(kGteHub, R"("unpad_inputs":false)", R"("logn_attention_scale":true)")),
              HasSubstr("'logn_attention_scale'"));
}

// answerdotai/ModernBERT-base's original keys.
const char kModernBert[] = R"({"architectures":["ModernBertForMaskedLM"],"model_type":"modernbert",
  "vocab_size":50368,"hidden_size":768,"intermediate_size":1152,"num_hidden_layers":22,
  "num_attention_heads":12,"hidden_activation":"gelu","max_position_embeddings":8192,
  "norm_eps":1e-05,"norm_bias":false,"attention_bias":false,"mlp_bias":false,
  "global_rope_theta":160000.0,"local_rope_theta":10000.0,"global_attn_every_n_layers":3,
  "local_attention":128,"pad_token_id":50283,"position_embedding_type":"absolute"})";

TEST(FamilyConfig, ModernBertLayersAndThetas) {
  const EncoderConfig c = Parse(kModernBert);
  EXPECT_EQ(c.model_type, "modernbert");
  EXPECT_TRUE(c.pre_norm);
  EXPECT_TRUE(c.final_norm);
  EXPECT_FALSE(c.norm_bias);
  EXPECT_EQ(c.local_window, 64);
  ASSERT_EQ(c.local_layers.size(), 22u);
  int globals = 0;
  for (int i = 0; i < 22; ++i) {
    EXPECT_EQ(c.is_local(i), i % 3 != 0) << i;
    globals += !c.is_local(i);
  }
  EXPECT_EQ(globals, 8);
  EXPECT_DOUBLE_EQ(c.rope.theta, 160000.0);
  EXPECT_DOUBLE_EQ(c.local_rope.theta, 10000.0);
  // transformers 5 writes layer_types and per-type rope_parameters.
  const std::string tf5 = Replace(kModernBert, R"("global_attn_every_n_layers":3,)",
                                  R"("layer_types":["full_attention","sliding_attention","full_attention",
                                     "sliding_attention","full_attention","sliding_attention","full_attention",
                                     "sliding_attention","full_attention","sliding_attention","full_attention",
                                     "sliding_attention","full_attention","sliding_attention","full_attention",
                                     "sliding_attention","full_attention","sliding_attention","full_attention",
                                     "sliding_attention","full_attention","sliding_attention"],
                                     "rope_parameters":{"full_attention":{"rope_type":"default","rope_theta":160000.0},
                                     "sliding_attention":{"rope_type":"default","rope_theta":10000.0}},)");
  const EncoderConfig t = Parse(tf5);
  EXPECT_FALSE(t.is_local(0));
  EXPECT_TRUE(t.is_local(1));
  EXPECT_FALSE(t.is_local(2));
  EXPECT_THAT(Error(Replace(tf5, R"("sliding_attention"],)", R"("chunked_attention"],)")),
              HasSubstr("'layer_types[21]' is \"chunked_attention\""));
  EXPECT_THAT(Error(Replace(tf5, R"("rope_theta":10000.0}})", R"("rope_theta":20000.0}})")),
              HasSubstr("disagree"));
}

TEST(FamilyConfig, UnknownModelTypeListsTheFamilies) {
  const std::string message = Error(R"({"model_type":"jina_bert"})");
  EXPECT_THAT(message, HasSubstr("model_type 'jina_bert' is not supported"));
  EXPECT_THAT(message, HasSubstr("nomic_bert"));
  EXPECT_THAT(message, HasSubstr("modernbert"));
  EXPECT_THAT(Error(R"({"model_type":"bert","is_decoder":true})"), HasSubstr("'is_decoder' is true"));
}

}  // namespace
}  // namespace longenc::encoder
