// One interface over the encoder modules of every family, so that the backend holds "an
// encoder" and never a family: BERT-shaped families (bert, xlm_roberta) run bert.h's BertModel
// with a learned position table; RoPE families run rotary_encoder.h's RotaryEncoder.
//
// Ownership: an EncoderModel owns its module and parameters. Thread-compatible: Forward from
// one thread (the inference thread).
#ifndef LONGENC_MODEL_ENCODER_ENCODER_MODEL_H_
#define LONGENC_MODEL_ENCODER_ENCODER_MODEL_H_

#include <memory>
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
  // Learned positions: the table rows of positions 0, 1, ... ([usable_positions, Hd]), which
  // model/positions/ stretches for long documents. Rotary: undefined.
  virtual torch::Tensor position_table() const = 0;
  // input_ids, key_valid: [B, N]; position_embeddings: [N, Hd] for learned positions (ignored
  // by rotary ones); one core per layer; query_scale multiplies the queries. Returns [B, N, Hd].
  virtual torch::Tensor Forward(const torch::Tensor& input_ids, const torch::Tensor& key_valid,
                                const torch::Tensor& position_embeddings,
                                const std::vector<attention::Attention*>& cores,
                                double query_scale) = 0;
  virtual torch::nn::Module& module() = 0;
};

// Builds the family's encoder for `config` and fills it from `checkpoint` (names mapped by the
// family's rules; fp16/bf16 converted to fp32; pages released as they are copied).
absl::StatusOr<std::unique_ptr<EncoderModel>> LoadEncoderModel(const EncoderConfig& config,
                                                               const WeightFiles& files);

}  // namespace longenc::encoder

#endif  // LONGENC_MODEL_ENCODER_ENCODER_MODEL_H_
