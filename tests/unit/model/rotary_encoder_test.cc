// The RoPE families' shared pieces: banded attention equals exact attention under the band
// mask at any length, window and block; the checkpoint loader round-trips published names,
// refuses missing, surplus, misshapen and non-finite tensors naming them, and points the
// word embedding at the mapped file instead of copying it.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <stdlib.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "model/encoder/banded_attention.h"
#include "model/encoder/weight_files.h"
#include "model/encoder/weight_loader.h"
#include "model/encoder/config.h"
#include "model/encoder/families/family.h"
#include "model/encoder/rotary_encoder.h"
#include "model/encoder/safetensors.h"

namespace longenc::encoder {
namespace {

using ::testing::HasSubstr;

TEST(BandedAttention, EqualsExactAttentionUnderTheBandMask) {
  torch::manual_seed(3);
  for (int64_t n : {1, 5, 37, 130}) {
    for (int64_t window : {0, 3, 16}) {
      for (int64_t block : {0, 7}) {
        torch::Tensor q = torch::randn({2, 3, n, 8}), k = torch::randn({2, 3, n, 8}), v = torch::randn({2, 3, n, 8});
        torch::Tensor valid = torch::ones({2, n}, torch::kBool);
        const int64_t shorter = (n + 1) / 2;
        valid[1].narrow(0, shorter, n - shorter).fill_(false);
        torch::Tensor i = torch::arange(n).unsqueeze(1), j = torch::arange(n).unsqueeze(0);
        torch::Tensor band = (i - j).abs().le(window);
        torch::Tensor mask = band.unsqueeze(0).unsqueeze(0).logical_and(valid.view({2, 1, 1, n}));
        torch::Tensor expected = at::scaled_dot_product_attention(q, k, v, mask);
        expected = torch::where(valid.view({2, 1, n, 1}), expected, torch::zeros({}));
        torch::Tensor got = BandedAttention(window, block).Forward(q, k, v, valid);
        EXPECT_LE((got - expected).abs().max().item<float>(), 1e-5)
            << "n " << n << " window " << window << " block " << block;
      }
    }
  }
}

EncoderConfig TinyModernBert() {
  auto c = ParseEncoderConfig(R"({"model_type":"modernbert","vocab_size":40,"hidden_size":16,
      "intermediate_size":24,"num_hidden_layers":3,"num_attention_heads":2,"local_attention":4,
      "pad_token_id":0,"global_attn_every_n_layers":2})", "config.json");
  EXPECT_TRUE(c.ok()) << c.status();
  return *c;
}

// The module's parameters under their published names (the family's rules read backwards).
std::vector<TensorToWrite> Published(RotaryEncoder& model, const EncoderConfig& config) {
  std::vector<TensorToWrite> out;
  const auto rules = ModernBertFamily().weight_rules(config);
  for (const auto& item : model->named_parameters()) {
    for (const WeightRule& rule : rules) {
      const std::string& target = rule.target;
      const size_t star = target.find('*');
      std::string name;
      if (star == std::string::npos) {
        if (target != item.key()) continue;
        name = rule.source;
      } else {
        const std::string head = target.substr(0, star), tail = target.substr(star + 1);
        const std::string& key = item.key();
        if (key.rfind(head, 0) != 0 || key.size() <= head.size() + tail.size() ||
            key.compare(key.size() - tail.size(), tail.size(), tail) != 0) {
          continue;
        }
        const std::string index = key.substr(head.size(), key.size() - head.size() - tail.size());
        name = rule.source;
        name.replace(name.find('*'), 1, index);
      }
      torch::Tensor t = item.value().contiguous();
      out.push_back({"model." + name, DType::kF32, t.sizes().vec(),
                     std::string(static_cast<const char*>(t.data_ptr()), t.numel() * sizeof(float))});
      break;
    }
  }
  return out;
}

class LoaderTest : public ::testing::Test {
 protected:
  // mkdtemp/unlink, not std::filesystem: libtorch exports its own copy of the latter.
  void SetUp() override { ASSERT_NE(mkdtemp(dir_.data()), nullptr); }
  void TearDown() override {
    unlink(File().c_str());
    rmdir(dir_.c_str());
  }
  std::string File() const { return dir_ + "/model.safetensors"; }

  absl::Status Load(const std::vector<TensorToWrite>& tensors, RotaryEncoder& into) {
    absl::Status written = WriteSafetensors(File(), tensors);
    if (!written.ok()) return written;
    auto checkpoint = WeightFiles::Open(dir_);
    if (!checkpoint.ok()) return checkpoint.status();
    return LoadWeightFiles(*checkpoint, ModernBertFamily(), config_, *into);
  }

  std::string dir_ = "/tmp/longenc_loader_test_XXXXXX";
  EncoderConfig config_ = TinyModernBert();
};

// A source model whose every parameter holds finite values (the word embedding may be made
// uninitialised, for the loader to fill).
RotaryEncoder FiniteSource(const EncoderConfig& config) {
  RotaryEncoder source(config);
  torch::NoGradGuard no_grad;
  source->named_parameters()["embeddings.word.weight"].normal_();
  return source;
}

TEST_F(LoaderTest, RoundTripsPublishedNames) {
  torch::manual_seed(1);
  RotaryEncoder source = FiniteSource(config_);
  const auto tensors = Published(source, config_);
  ASSERT_EQ(tensors.size(), source->named_parameters().size());
  RotaryEncoder loaded(config_);
  ASSERT_TRUE(Load(tensors, loaded).ok());
  for (const auto& item : source->named_parameters()) {
    EXPECT_TRUE(torch::equal(item.value(), loaded->named_parameters()[item.key()])) << item.key();
  }
}

// The [begin, end) addresses of the mappings of `path` in this process (/proc/self/maps).
std::vector<std::pair<uintptr_t, uintptr_t>> MappingsOf(const std::string& path) {
  std::vector<std::pair<uintptr_t, uintptr_t>> out;
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    if (line.size() < path.size() || line.compare(line.size() - path.size(), path.size(), path) != 0) {
      continue;
    }
    unsigned long begin = 0, end = 0;
    if (std::sscanf(line.c_str(), "%lx-%lx", &begin, &end) == 2) out.emplace_back(begin, end);
  }
  return out;
}

TEST_F(LoaderTest, WordEmbeddingPointsAtTheMappedFile) {
  torch::manual_seed(2);
  RotaryEncoder source = FiniteSource(config_);
  const auto tensors = Published(source, config_);
  RotaryEncoder loaded(config_);
  ASSERT_TRUE(Load(tensors, loaded).ok());
  const torch::Tensor word = loaded->named_parameters()["embeddings.word.weight"];
  EXPECT_TRUE(torch::equal(word, source->named_parameters()["embeddings.word.weight"]));
  const auto address = reinterpret_cast<uintptr_t>(word.data_ptr());
  bool inside = false;
  for (const auto& [begin, end] : MappingsOf(File())) inside |= begin <= address && address < end;
  EXPECT_TRUE(inside) << "the word embedding was copied, not mapped";
  // Matrices read whole by every forward are copied (a map of them would save nothing).
  const auto layer = reinterpret_cast<uintptr_t>(loaded->named_parameters()["layers.0.qkv.weight"].data_ptr());
  for (const auto& [begin, end] : MappingsOf(File())) EXPECT_FALSE(begin <= layer && layer < end);
}

TEST_F(LoaderTest, Bf16WordTableStaysInTheFileUnderAFloat32Model) {
  torch::manual_seed(3);
  RotaryEncoder source = FiniteSource(config_);
  auto tensors = Published(source, config_);
  const torch::Tensor word = source->named_parameters()["embeddings.word.weight"].to(torch::kBFloat16);
  for (auto& t : tensors) {
    if (t.name != "model.embeddings.tok_embeddings.weight") continue;
    t.dtype = DType::kBF16;
    t.bytes.assign(static_cast<const char*>(word.data_ptr()), word.numel() * 2);
  }
  RotaryEncoder loaded(config_);
  ASSERT_TRUE(Load(tensors, loaded).ok());
  const torch::Tensor table = loaded->named_parameters()["embeddings.word.weight"];
  EXPECT_EQ(table.scalar_type(), torch::kBFloat16);
  EXPECT_TRUE(torch::equal(table, word));
  // Everything else is float32, and a forward widens the looked-up rows.
  EXPECT_EQ(loaded->named_parameters()["layers.0.qkv.weight"].scalar_type(), torch::kFloat);
}

TEST_F(LoaderTest, RefusesNonFiniteValuesInMappedAndCopiedTensors) {
  RotaryEncoder source = FiniteSource(config_);
  for (const std::string name : {"model.embeddings.tok_embeddings.weight", "model.layers.1.attn.Wo.weight"}) {
    auto tensors = Published(source, config_);
    bool found = false;
    for (auto& t : tensors) {
      if (t.name != name) continue;
      const float nan = std::numeric_limits<float>::quiet_NaN();
      std::memcpy(t.bytes.data() + t.bytes.size() - sizeof(float), &nan, sizeof(float));
      found = true;
    }
    ASSERT_TRUE(found) << name;
    RotaryEncoder into(config_);
    EXPECT_THAT(std::string(Load(tensors, into).message()),
                HasSubstr("'" + name + "' holds NaN or infinite values"));
  }
}

TEST_F(LoaderTest, RefusesMissingSurplusAndMisshapenTensors) {
  RotaryEncoder source = FiniteSource(config_);
  const auto tensors = Published(source, config_);
  RotaryEncoder into(config_);

  auto missing = tensors;
  missing.erase(missing.begin() + 3);
  EXPECT_THAT(std::string(Load(missing, into).message()), HasSubstr("missing tensor(s) for"));

  auto surplus = tensors;
  surplus.push_back({"model.layers.7.attn.Wo.weight", DType::kF32, {16, 16}, std::string(16 * 16 * 4, '\0')});
  EXPECT_THAT(std::string(Load(surplus, into).message()), HasSubstr("'layers.7.out.weight'"));

  auto unknown = tensors;
  unknown.push_back({"model.something.else", DType::kF32, {1}, std::string(4, '\0')});
  EXPECT_THAT(std::string(Load(unknown, into).message()), HasSubstr("unexpected tensor 'model.something.else'"));

  auto misshapen = tensors;
  misshapen[0].shape = {static_cast<int64_t>(misshapen[0].bytes.size() / 4)};
  EXPECT_THAT(std::string(Load(misshapen, into).message()), HasSubstr("has shape"));

  auto head = tensors;  // a masked-LM head is not part of the encoder, and is skipped
  head.push_back({"head.dense.weight", DType::kF32, {16, 16}, std::string(16 * 16 * 4, '\0')});
  EXPECT_TRUE(Load(head, into).ok());
}

}  // namespace
}  // namespace longenc::encoder
