// The encoder's architecture as read from a Hugging Face config.json (BERT family).
//
// Torch-free so that it can be fuzzed and validated before any tensor is allocated.
#ifndef LONGENC_MODEL_ENCODER_CONFIG_H_
#define LONGENC_MODEL_ENCODER_CONFIG_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace longenc::encoder {

struct EncoderConfig {
  std::string model_type = "bert";
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t intermediate_size = 0;
  std::string hidden_act = "gelu";  // "gelu" (erf), "gelu_new"/"gelu_pytorch_tanh" (tanh), "relu"
  double layer_norm_eps = 1e-12;
  int64_t max_position_embeddings = 512;
  int64_t type_vocab_size = 2;
  int64_t pad_token_id = 0;

  int64_t head_dim() const { return hidden_size / num_attention_heads; }
};

// Parses and validates config.json text; `source` names the file in errors.
absl::StatusOr<EncoderConfig> ParseEncoderConfig(const std::string& json_text,
                                                 const std::string& source);
// Reads <path> and parses it.
absl::StatusOr<EncoderConfig> LoadEncoderConfig(const std::string& path);

}  // namespace longenc::encoder

#endif  // LONGENC_MODEL_ENCODER_CONFIG_H_
