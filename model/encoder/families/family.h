// An encoder family: the registered description of one architecture. It turns config.json
// (either dialect) into the typed EncoderConfig and says how the checkpoint's tensor names, as
// published, map onto the encoder's parameters (fused or split projections included). The
// modules themselves are shared (bert.h for learned positions, rotary_encoder.h for RoPE).
//
// Torch-free: parsing and name tables are fuzzed and tested without tensors. Families are
// immutable after start-up; every function here is thread-safe.
#ifndef LONGENC_MODEL_ENCODER_FAMILIES_FAMILY_H_
#define LONGENC_MODEL_ENCODER_FAMILIES_FAMILY_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "model/encoder/config.h"
#include "model/encoder/config_reader.h"

namespace longenc::encoder {

// Where one checkpoint tensor goes. '*' in source and target stands for the layer index.
// The source's rows are cut into blocks.size() equal blocks and block k fills row block
// blocks[k] of the target, whose rows are cut into target_parts equal blocks: a fused Wqkv is
// {1 part, {0}}, a separate k_proj filling the fused target is {3 parts, {1}}, GTE's up_gate
// (up first) filling our gate-first target is {2 parts, {1, 0}}.
struct WeightRule {
  std::string source;
  std::string target;
  int target_parts = 1;
  std::vector<int> blocks = {0};
};

struct Family {
  std::string name;                      // canonical, e.g. "nomic_bert"
  std::vector<std::string> model_types;  // config.json spellings it accepts
  absl::Status (*parse)(const ConfigReader& reader, EncoderConfig* config);
  std::vector<std::string> prefixes;     // stripped from checkpoint names ("bert.", "model.")
  // Empty: checkpoint names are the module's parameter names.
  std::vector<WeightRule> (*weight_rules)(const EncoderConfig& config);
};

// nullptr if no family accepts `model_type`.
const Family* FindFamily(const std::string& model_type);
// Every accepted model_type, for error messages.
std::string AcceptedModelTypes();

// The families (one file each).
const Family& BertFamily();
const Family& XlmRobertaFamily();
const Family& NomicBertFamily();
const Family& GteFamily();
const Family& ModernBertFamily();

}  // namespace longenc::encoder

#endif  // LONGENC_MODEL_ENCODER_FAMILIES_FAMILY_H_
