// libFuzzer target: ParseEncoderConfig on arbitrary text never crashes or throws, and every
// config it accepts, of any family and either dialect, is one the encoder can be built from
// (positive sizes, heads dividing the hidden size, the pad token inside the vocabulary, RoPE
// settings in range, one layer type per layer). Seeds in corpus/ (real config.json files of
// every family and near-misses), crashes found in regressions/.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "model/encoder/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto config = longenc::encoder::ParseEncoderConfig(
      std::string(reinterpret_cast<const char*>(data), size), "config.json");
  if (!config.ok()) {
    // Errors name the file, so that a refused start-up says which file is wrong.
    if (config.status().message().find("config.json") == std::string::npos) std::abort();
    return 0;
  }
  const auto& c = *config;
  if (c.model_type != "bert" && c.model_type != "xlm_roberta" && c.model_type != "nomic_bert" &&
      c.model_type != "gte" && c.model_type != "modernbert") {
    std::abort();
  }
  if (c.vocab_size < 1 || c.hidden_size < 1 || c.num_hidden_layers < 1 ||
      c.num_attention_heads < 1 || c.intermediate_size < 1 || c.max_position_embeddings < 1 ||
      c.type_vocab_size < 0 || c.usable_positions() < 1) {
    std::abort();
  }
  if (c.positions == longenc::encoder::PositionKind::kLearned && c.type_vocab_size < 1) std::abort();
  if (c.positions == longenc::encoder::PositionKind::kRotary) {
    for (const auto* rope : {&c.rope, &c.local_rope}) {
      const int64_t rotary = static_cast<int64_t>(c.head_dim() * rope->fraction);
      if (!(rope->theta > 1) || !(rope->factor >= 1) || rotary < 2 || rotary % 2 != 0 ||
          rotary > c.head_dim()) {
        std::abort();
      }
      if (rope->type == longenc::encoder::RopeType::kDynamic && rope->original_max_positions < 1) std::abort();
    }
  }
  if (!c.local_layers.empty() &&
      static_cast<int64_t>(c.local_layers.size()) != c.num_hidden_layers) {
    std::abort();
  }
  if (c.hidden_size % c.num_attention_heads != 0 || c.head_dim() < 1) std::abort();
  if (c.pad_token_id < 0 || c.pad_token_id >= c.vocab_size) std::abort();
  if (!(c.layer_norm_eps > 0)) std::abort();
  return 0;
}
