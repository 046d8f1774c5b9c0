// Sentence pooling over the last hidden state: mean over real tokens or the [CLS] row, then
// optional L2 normalisation (sentence-transformers' Pooling + Normalize modules). Sums
// accumulate in float32 and return float32 whatever the hidden states' dtype.
#ifndef LONGENC_MODEL_ENCODER_POOLING_H_
#define LONGENC_MODEL_ENCODER_POOLING_H_

#include <torch/torch.h>

namespace longenc::encoder {

// hidden: [B, N, Hd]; key_valid: [B, N] bool. Returns [B, Hd].
torch::Tensor MeanPool(const torch::Tensor& hidden, const torch::Tensor& key_valid);
// Sum over real tokens, for pooling across chunks: [B, Hd].
torch::Tensor SumPool(const torch::Tensor& hidden, const torch::Tensor& key_valid);
torch::Tensor ClsPool(const torch::Tensor& hidden);
// Row-wise x / max(||x||, 1e-12), as torch.nn.functional.normalize.
torch::Tensor L2Normalize(const torch::Tensor& x);

}  // namespace longenc::encoder

#endif  // LONGENC_MODEL_ENCODER_POOLING_H_
