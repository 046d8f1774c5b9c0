// The tensor names transformers 5 writes for its post-norm RoPE encoders (NomicBertModel,
// GteModel share them): separate q/k/v projections and gate/up MLP halves, which fill the
// encoder's fused parameters. Torch-free.
#ifndef LONGENC_MODEL_ENCODER_FAMILIES_ROTARY_RULES_H_
#define LONGENC_MODEL_ENCODER_FAMILIES_ROTARY_RULES_H_

#include <vector>

#include "model/encoder/families/family.h"

namespace longenc::encoder {

// Appends the transformers 5 names to *rules.
void AddTransformersRotaryRules(std::vector<WeightRule>* rules);

}  // namespace longenc::encoder

#endif  // LONGENC_MODEL_ENCODER_FAMILIES_ROTARY_RULES_H_
