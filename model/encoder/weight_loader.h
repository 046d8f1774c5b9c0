// Fills an encoder module's parameters from a WeightFiles through its family's WeightRules:
// names as published (prefixes stripped), fused and split projections reassembled, each tensor
// converted to its parameter's dtype (the model's --dtype; norms stay float32). Every parameter
// row must be filled exactly once and every checkpoint tensor must be used or known to be
// unused (heads, poolers, buffers): a 12-layer file under a 6-layer config, or biases the
// config does not have, are errors naming a tensor.
//
// Memory: a lookup table (a torch::nn::Embedding's weight: the word embedding, 1 GB of bge-m3's
// 2.2 GB) that one tensor of the parameter's own dtype fills is not copied: the parameter points
// into the read-only map of the file and holds the map alive, so only the rows that requests
// read become resident (shared, clean page-cache pages). A bf16/fp16 vocabulary table under a
// float32 model is mapped too, in the file's dtype: every reader widens the rows it looks up to
// float32, exactly as a copy would. Such a parameter must never be written in place. Other tensors are copied in slices of a few MiB and each consumed slice of the map
// is released at once, so the peak RSS of a load is the size of the copied parameters plus one
// slice. Every value is checked to be finite either way.
#ifndef LONGENC_MODEL_ENCODER_WEIGHT_LOADER_H_
#define LONGENC_MODEL_ENCODER_WEIGHT_LOADER_H_

#include <torch/torch.h>

#include "absl/status/status.h"
#include "model/encoder/weight_files.h"
#include "model/encoder/config.h"
#include "model/encoder/families/family.h"

namespace longenc::encoder {

// The torch dtype of a floating-point safetensors dtype; false for integer dtypes.
bool ToTorchFloat(DType dtype, torch::ScalarType* out);

absl::Status LoadWeightFiles(const WeightFiles& files, const Family& family,
                            const EncoderConfig& config, torch::nn::Module& module);

}  // namespace longenc::encoder

#endif  // LONGENC_MODEL_ENCODER_WEIGHT_LOADER_H_
