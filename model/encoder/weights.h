// Loads a model.safetensors into a BertModel by parameter name, checking that the file and
// config.json describe the same network: every parameter present with the right shape, and
// no encoder tensor left over (a 12-layer file under a 6-layer config is an error).
#ifndef LONGENC_MODEL_ENCODER_WEIGHTS_H_
#define LONGENC_MODEL_ENCODER_WEIGHTS_H_

#include "absl/status/status.h"
#include "model/encoder/bert.h"
#include "model/encoder/safetensors.h"

namespace longenc::encoder {

// Copies every parameter of `model` from `file` (float tensors of any float dtype are
// converted to the parameter's dtype). Names may carry a "bert." prefix (BertForX exports).
absl::Status LoadWeights(const SafetensorsFile& file, BertModel& model);

}  // namespace longenc::encoder

#endif  // LONGENC_MODEL_ENCODER_WEIGHTS_H_
