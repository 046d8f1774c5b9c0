// The encoder layer runs its position-wise feed-forward in blocks of rows: any block size,
// including one that leaves a remainder and one that splits a document, gives the result of a
// single block.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "model/attention/registry.h"
#include "model/encoder/bert.h"
#include "tests/unit/model/tiny_model.h"

namespace longenc::encoder {
namespace {

TEST(BertLayerTest, FeedForwardBlocksMatchOneBlock) {
  torch::manual_seed(3);
  const EncoderConfig config = testing::TinyConfig();
  BertLayer layer(config);
  attention::AttentionSpec spec;
  spec.num_heads = config.num_attention_heads;
  spec.head_dim = config.head_dim();
  auto core = attention::Registry::Global().Create("full", spec);
  ASSERT_TRUE(core.ok()) << core.status();
  torch::NoGradGuard no_grad;
  const torch::Tensor x = torch::randn({2, 37, config.hidden_size});
  torch::Tensor valid = torch::ones({2, 37}, torch::kBool);
  valid.index_put_({1, torch::indexing::Slice(30)}, false);

  layer->set_feed_forward_rows(1 << 30);
  const torch::Tensor whole = layer->forward(x, valid, **core, 1.0);
  for (int64_t rows : {1, 7, 37, 73}) {
    layer->set_feed_forward_rows(rows);
    const torch::Tensor blocked = layer->forward(x, valid, **core, 1.0);
    EXPECT_TRUE(torch::allclose(blocked, whole, /*rtol=*/0, /*atol=*/1e-5))
        << rows << " rows: max |diff| " << (blocked - whole).abs().max().item<float>();
  }
}

}  // namespace
}  // namespace longenc::encoder
