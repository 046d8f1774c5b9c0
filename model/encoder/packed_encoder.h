// The exact forward of a batch of short documents packed back to back, with no padding: the
// server's fast path for documents within the position table under exact ("full") attention.
//
// Why: a padded batch of documents of 64..512 tokens spends up to half of its linear-layer work
// on padding, and LibTorch's default float32 GEMM (MKL) runs its AVX2 kernels on AMD CPUs. Here
// every linear layer runs once over the real tokens only ([T, Hd], T = the sum of the lengths)
// through oneDNN with weights reordered once at load (fused Q/K/V, GELU fused into the
// intermediate projection, the residual add fused into the output projections), and attention
// runs per document and head on the intra-op threads through short_attention.h's AVX-512
// kernels (SDPA without a mask on a CPU without them). The arithmetic is BertModel's: float32
// models stay float32 throughout; bfloat16 models keep the linear layers in bfloat16 (oneDNN's
// bf16 kernels) and the embedding sum and LayerNorm statistics in float32; their attention
// scores and softmax are float32 (exact sums of the bfloat16 queries and keys), and the
// probabilities are rounded to bfloat16 for the sum of the values.
//
// Only post-norm BERT layouts with learned positions (bert, xlm_roberta) on CPU with oneDNN;
// Create() returns null otherwise and callers keep the padded path. Memory: one extra copy of
// the linear weights in oneDNN's layout (42 MB for all-MiniLM-L6-v2 in float32); a model whose
// copy would pass 512 MiB keeps the padded path.
//
// Thread-compatible: Forward() from one thread at a time (the inference thread). It calls
// model::AtCheckpoint() before every layer and feed-forward block, as BertModel does.
#ifndef LONGENC_MODEL_ENCODER_PACKED_ENCODER_H_
#define LONGENC_MODEL_ENCODER_PACKED_ENCODER_H_

#include <cstdint>
#include <memory>
#include <vector>

#include <torch/torch.h>

#include "model/encoder/config.h"

namespace longenc::encoder {

class PackedEncoder {
 public:
  // `module`: a loaded BertModel (HF parameter names); `position_table`: its rows of positions
  // 0, 1, ... (EncoderModel::position_table()). Null when this path does not apply.
  static std::unique_ptr<PackedEncoder> Create(torch::nn::Module& module,
                                               const EncoderConfig& config,
                                               const torch::Tensor& position_table);

  // Final hidden states [sum(lengths), Hd] (float32) of the documents whose token ids are
  // `ids` ([sum(lengths)] int64, on the model's device), one after another; every length is
  // within the position table.
  torch::Tensor Forward(const torch::Tensor& ids, const std::vector<int64_t>& lengths) const;

 private:
  struct Linear {
    torch::Tensor weight;  // oneDNN's reordered layout
    torch::Tensor bias;
  };
  struct Norm {
    torch::Tensor weight, bias;
  };
  struct Layer {
    Linear qkv, attention_out, intermediate, output;
    Norm attention_norm, output_norm;
  };

  PackedEncoder() = default;
  torch::Tensor Embed(const torch::Tensor& ids, const std::vector<int64_t>& lengths) const;
  torch::Tensor Attend(const torch::Tensor& qkv, const std::vector<int64_t>& lengths) const;
  torch::Tensor LayerNorm(const torch::Tensor& x, const Norm& norm) const;

  EncoderConfig config_;
  torch::ScalarType dtype_ = torch::kFloat;
  torch::Tensor word_, positions_, token_type_;  // token_type_: row 0, or undefined
  Norm embeddings_norm_;
  std::vector<Layer> layers_;
  const char* activation_ = "gelu";  // oneDNN post-op
  const char* algorithm_ = "none";   // "tanh" for the tanh approximation
};

}  // namespace longenc::encoder

#endif  // LONGENC_MODEL_ENCODER_PACKED_ENCODER_H_
