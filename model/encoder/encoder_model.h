// One interface over the encoder modules of every family, so that the backend holds "an
// encoder" and never a family: BERT-shaped families (bert, xlm_roberta) run bert.h's BertModel
// with a learned position table; RoPE families run rotary_encoder.h's RotaryEncoder.
//
// Ownership: an EncoderModel owns its module and parameters. Thread-compatible: Forward from
// one thread (the inference thread).
#ifndef LONGENC_MODEL_ENCODER_ENCODER_MODEL_H_
#define LONGENC_MODEL_ENCODER_ENCODER_MODEL_H_

#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "absl/status/statusor.h"
#include "model/attention/attention.h"
#include "model/encoder/weight_files.h"
#include "model/encoder/config.h"

namespace longenc::encoder {

class EncoderModel {
 public:
  virtual ~EncoderModel() = default;
  virtual const EncoderConfig& config() const = 0;
  // Learned positions: the table rows of positions 0, 1, ... ([usable_positions, Hd], float32
  // whatever the model's dtype), which model/positions/ stretches for long documents. Rotary:
  // undefined.
  virtual torch::Tensor position_table() const = 0;
  // input_ids, key_valid: [B, N]; position_embeddings: [N, Hd] for learned positions (ignored
  // by rotary ones); one core per layer; query_scale multiplies the queries. Returns [B, N, Hd].
  virtual torch::Tensor Forward(const torch::Tensor& input_ids, const torch::Tensor& key_valid,
                                const torch::Tensor& position_embeddings,
                                const std::vector<attention::Attention*>& cores,
                                double query_scale) = 0;
  virtual torch::nn::Module& module() = 0;
};

// Builds the family's encoder for `config` with parameters in `dtype` (norms in float32:
// CastParameters in blocks.h) and fills it from `files` (names mapped by the family's rules;
// each tensor converted to its parameter's dtype as it is copied, so a checkpoint already in
// `dtype` is never widened; pages released as they are copied).
absl::StatusOr<std::unique_ptr<EncoderModel>> LoadEncoderModel(const EncoderConfig& config,
                                                               const WeightFiles& files,
                                                               torch::ScalarType dtype = torch::kFloat);

// --dtype's value as a torch dtype for `device`: float32, bfloat16, or float16 on CUDA only
// (InvalidArgument naming `flag` otherwise: CPUs have no fast float16 arithmetic).
absl::StatusOr<torch::ScalarType> ParseModelDType(const std::string& value, const torch::Device& device,
                                                  const std::string& flag = "--dtype");
// The name --dtype and ModelInfo use: "float32", "bfloat16", "float16".
std::string ModelDTypeName(torch::ScalarType dtype);

}  // namespace longenc::encoder

#endif  // LONGENC_MODEL_ENCODER_ENCODER_MODEL_H_
