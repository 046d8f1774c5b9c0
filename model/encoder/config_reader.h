// Typed reads of config.json keys with errors that name the file and the key. A key may have
// aliases (one per config dialect: nomic's "n_embd" is transformers' "hidden_size"); when
// several are present they must agree. Used by the family parsers in families/.
//
// Torch-free; a ConfigReader borrows the parsed JSON. Thread-compatible.
#ifndef LONGENC_MODEL_ENCODER_CONFIG_READER_H_
#define LONGENC_MODEL_ENCODER_CONFIG_READER_H_

#include <cstdint>
#include <initializer_list>
#include <string>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "model/encoder/config.h"

namespace longenc::encoder {

class ConfigReader {
 public:
  ConfigReader(const nlohmann::json& json, std::string source)
      : json_(json), source_(std::move(source)) {}

  // Each Read* leaves *out unchanged when no alias is present (or the value is null) and
  // `required` is false. Integers must be at least min_value.
  absl::Status Int(std::initializer_list<const char*> keys, bool required, int64_t min_value,
                   int64_t* out) const;
  absl::Status Double(std::initializer_list<const char*> keys, bool required, double* out) const;
  absl::Status Bool(std::initializer_list<const char*> keys, bool* out) const;
  absl::Status String(std::initializer_list<const char*> keys, std::string* out) const;
  // True if `key` is present and not null.
  bool Has(const char* key) const;
  // Refuses `key` unless it is absent, null or equal to `accepted`; `why` completes the message.
  absl::Status RequireAbsentOr(const char* key, const nlohmann::json& accepted,
                               const std::string& why) const;

  // "<source>: <what>" as InvalidArgument.
  absl::Status Invalid(const std::string& what) const;
  // "<source>: '<key>' is <value>, which longenc cannot honour: <why>".
  absl::Status Refuse(const std::string& key, const nlohmann::json& value,
                      const std::string& why) const;
  const nlohmann::json& json() const { return json_; }
  const std::string& source() const { return source_; }

 private:
  // The first alias present and not null, or nullptr; an error if two aliases disagree.
  absl::StatusOr<const nlohmann::json*> Find(std::initializer_list<const char*> keys,
                                             std::string* key) const;

  const nlohmann::json& json_;
  std::string source_;
};

// Reads the size keys every family shares (vocab, hidden, layers, heads, intermediate,
// max positions, type vocabulary, pad id) under their transformers names plus `aliases`'s
// dialect names and checks that the heads divide the hidden size.
struct SizeAliases {
  const char* hidden = "hidden_size";
  const char* layers = "num_hidden_layers";
  const char* heads = "num_attention_heads";
  const char* intermediate = "intermediate_size";
  const char* eps = "layer_norm_eps";
};
absl::Status ReadSizes(const ConfigReader& reader, const SizeAliases& aliases, EncoderConfig* c);

// Checks hidden_act against the activations the encoder implements.
absl::Status CheckActivation(const ConfigReader& reader, const std::string& key,
                             const std::string& act);

// Reads a transformers rope_parameters object (rope_type default|linear|dynamic|yarn, rope_theta,
// factor, original_max_position_embeddings, attention_factor, beta_fast, beta_slow, truncate,
// partial_rotary_factor) into *rope; `key` names it in errors. max_positions fills the
// original length of dynamic scaling, as transformers does.
absl::Status ReadRopeParameters(const ConfigReader& reader, const nlohmann::json& params,
                                const std::string& key, int64_t max_positions, RopeConfig* rope);

}  // namespace longenc::encoder

#endif  // LONGENC_MODEL_ENCODER_CONFIG_READER_H_
