// The packed forward of short documents equals BertModel's padded forward under exact attention,
// document by document, for every activation it fuses; layouts it does not know get no packed
// encoder (the server then keeps the padded path).
#include "model/encoder/packed_encoder.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "model/attention/registry.h"
#include "model/encoder/bert.h"
#include "tests/unit/model/tiny_model.h"

namespace longenc::encoder {
namespace {

using torch::indexing::Slice;

// A module built without a checkpoint: its word table is left uninitialised for the loader,
// so the tests give it finite values.
BertModel RandomModel(const EncoderConfig& config) {
  BertModel model(config);
  torch::NoGradGuard no_grad;
  model->named_parameters()["embeddings.word_embeddings.weight"].normal_();
  return model;
}

torch::Tensor PositionTable(BertModel& model) {
  const EncoderConfig& c = model->config();
  return model->position_table().narrow(0, c.position_offset, c.usable_positions());
}

void ExpectPackedEqualsPadded(const EncoderConfig& config) {
  torch::manual_seed(11);
  BertModel model = RandomModel(config);
  model->eval();
  attention::AttentionSpec spec;
  spec.num_heads = config.num_attention_heads;
  spec.head_dim = config.head_dim();
  std::vector<std::unique_ptr<attention::Attention>> owned;
  std::vector<attention::Attention*> cores;
  for (int64_t i = 0; i < config.num_hidden_layers; ++i) {
    spec.layer = i;
    auto core = attention::Registry::Global().Create("full", spec);
    ASSERT_TRUE(core.ok()) << core.status();
    owned.push_back(std::move(*core));
    cores.push_back(owned.back().get());
  }
  const std::unique_ptr<PackedEncoder> packed =
      PackedEncoder::Create(*model, config, PositionTable(model));
  ASSERT_NE(packed, nullptr) << "hidden_act " << config.hidden_act;

  torch::InferenceMode inference;
  const std::vector<int64_t> lengths = {5, 16, 1, 11};
  const int64_t longest = 16;
  torch::Tensor ids = torch::full({4, longest}, config.pad_token_id, torch::kLong);
  torch::Tensor valid = torch::zeros({4, longest}, torch::kBool);
  std::vector<torch::Tensor> docs;
  for (size_t b = 0; b < lengths.size(); ++b) {
    const torch::Tensor doc = torch::randint(1, config.vocab_size, {lengths[b]}, torch::kLong);
    ids.index_put_({static_cast<int64_t>(b), Slice(0, lengths[b])}, doc);
    valid.index_put_({static_cast<int64_t>(b), Slice(0, lengths[b])}, true);
    docs.push_back(doc);
  }
  const torch::Tensor padded =
      model->forward(ids, valid, PositionTable(model).slice(0, 0, longest), cores, 1.0);
  const torch::Tensor hidden = packed->Forward(torch::cat(docs), lengths);
  ASSERT_EQ(hidden.size(0), 5 + 16 + 1 + 11);
  int64_t first = 0;
  for (size_t b = 0; b < lengths.size(); ++b) {
    const torch::Tensor want = padded[static_cast<int64_t>(b)].slice(0, 0, lengths[b]);
    const torch::Tensor got = hidden.narrow(0, first, lengths[b]);
    EXPECT_TRUE(torch::allclose(got, want, /*rtol=*/0, /*atol=*/1e-5))
        << config.hidden_act << ", document " << b << ": max |diff| "
        << (got - want).abs().max().item<float>();
    first += lengths[b];
  }
}

TEST(PackedEncoderTest, EqualsThePaddedForwardForEveryActivation) {
  for (const char* act : {"gelu", "gelu_new", "relu"}) {
    EncoderConfig config = testing::TinyConfig();
    config.hidden_act = act;
    ExpectPackedEqualsPadded(config);
  }
}

TEST(PackedEncoderTest, LongFeedForwardInBlocksEqualsThePaddedForward) {
  // 4,096-row feed-forward blocks: enough short documents to need two.
  torch::manual_seed(5);
  EncoderConfig config = testing::TinyConfig();
  BertModel model = RandomModel(config);
  model->eval();
  const std::unique_ptr<PackedEncoder> packed =
      PackedEncoder::Create(*model, config, PositionTable(model));
  ASSERT_NE(packed, nullptr);
  torch::InferenceMode inference;
  const std::vector<int64_t> lengths(300, 16);  // 4,800 rows
  const torch::Tensor ids = torch::randint(1, config.vocab_size, {300 * 16}, torch::kLong);
  const torch::Tensor all = packed->Forward(ids, lengths);
  for (int64_t doc : {0, 255, 299}) {
    const torch::Tensor alone =
        packed->Forward(ids.narrow(0, doc * 16, 16), std::vector<int64_t>{16});
    EXPECT_TRUE(torch::allclose(all.narrow(0, doc * 16, 16), alone, 0, 1e-5)) << doc;
  }
}

TEST(PackedEncoderTest, UnknownLayoutsGetNoPackedEncoder) {
  EncoderConfig config = testing::TinyConfig();
  BertModel model(config);
  config.pre_norm = true;
  EXPECT_EQ(PackedEncoder::Create(*model, config, PositionTable(model)), nullptr);
  config.pre_norm = false;
  config.hidden_act = "silu";
  EXPECT_EQ(PackedEncoder::Create(*model, config, PositionTable(model)), nullptr);
  config.hidden_act = "gelu";
  EXPECT_EQ(PackedEncoder::Create(*model, config, torch::Tensor()), nullptr);
}

}  // namespace
}  // namespace longenc::encoder
