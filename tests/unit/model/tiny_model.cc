#include "tests/unit/model/tiny_model.h"

#include <sys/stat.h>

#include <fstream>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "model/encoder/bert.h"
#include "model/encoder/safetensors.h"

namespace longenc::testing {

encoder::EncoderConfig TinyConfig() {
  encoder::EncoderConfig c;
  c.vocab_size = 64;
  c.hidden_size = 32;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.intermediate_size = 64;
  c.max_position_embeddings = 16;
  return c;
}

std::string TinyConfigJson(const encoder::EncoderConfig& c) {
  return nlohmann::json{{"model_type", c.model_type},
                        {"vocab_size", c.vocab_size},
                        {"hidden_size", c.hidden_size},
                        {"num_hidden_layers", c.num_hidden_layers},
                        {"num_attention_heads", c.num_attention_heads},
                        {"intermediate_size", c.intermediate_size},
                        {"hidden_act", c.hidden_act},
                        {"layer_norm_eps", c.layer_norm_eps},
                        {"max_position_embeddings", c.max_position_embeddings},
                        {"type_vocab_size", c.type_vocab_size},
                        {"pad_token_id", c.pad_token_id}}
      .dump();
}

void WriteTinyModel(const std::string& dir, const encoder::EncoderConfig& config, uint64_t seed) {
  mkdir(dir.c_str(), 0755);  // std::filesystem clashes with libtorch.so's exported copy
  std::ofstream(dir + "/config.json") << TinyConfigJson(config);
  {
    std::ofstream vocab(dir + "/vocab.txt");
    vocab << "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n";
    for (int64_t i = 5; i < config.vocab_size; ++i) vocab << "tok" << i << "\n";
  }
  torch::manual_seed(seed);
  encoder::BertModel model(config);
  std::vector<encoder::TensorToWrite> tensors;
  for (const auto& item : model->named_parameters()) {
    torch::Tensor t = item.value().detach().contiguous().to(torch::kFloat32);
    if (item.key() == "embeddings.word_embeddings.weight") {
      t = torch::randn_like(t);  // the module leaves its word table uninitialised for the loader
    }
    if (item.key().find("LayerNorm") != std::string::npos) {
      t = t + 0.1 * torch::randn_like(t);  // make norms non-trivial so tests see them
    }
    tensors.push_back({item.key(), encoder::DType::kF32, t.sizes().vec(),
                       std::string(static_cast<const char*>(t.data_ptr()), t.numel() * 4)});
  }
  absl::Status s = encoder::WriteSafetensors(dir + "/model.safetensors", tensors);
  TORCH_CHECK(s.ok(), s.ToString());
}

}  // namespace longenc::testing
