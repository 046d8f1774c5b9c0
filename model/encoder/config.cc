#include "model/encoder/config.h"

#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace longenc::encoder {
namespace {

absl::Status Invalid(const std::string& source, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(source, ": ", what));
}

// Reads a positive integer field; `required` fields must be present.
absl::Status ReadInt(const nlohmann::json& j, const char* key, bool required, int64_t min_value,
                     const std::string& source, int64_t* out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    return required ? Invalid(source, absl::StrCat("missing required field '", key, "'"))
                    : absl::OkStatus();
  }
  if (!it->is_number_integer()) return Invalid(source, absl::StrCat("'", key, "' is not an integer"));
  const int64_t v = it->get<int64_t>();
  if (v < min_value) {
    return Invalid(source, absl::StrCat("'", key, "' is ", v, "; it must be at least ", min_value));
  }
  *out = v;
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<EncoderConfig> ParseEncoderConfig(const std::string& json_text,
                                                 const std::string& source) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(json_text);
  } catch (const nlohmann::json::exception& e) {
    return Invalid(source, absl::StrCat("not valid JSON (", e.what(), ")"));
  }
  if (!j.is_object()) return Invalid(source, "not a JSON object");

  EncoderConfig c;
  if (auto it = j.find("model_type"); it != j.end() && it->is_string()) c.model_type = *it;
  if (c.model_type != "bert") {
    return Invalid(source, absl::StrCat("model_type '", c.model_type,
                                        "' is not supported; longenc runs BERT-family encoders "
                                        "(model_type \"bert\")"));
  }
  if (auto it = j.find("position_embedding_type");
      it != j.end() && it->is_string() && *it != "absolute") {
    return Invalid(source, absl::StrCat("position_embedding_type '", it->get<std::string>(),
                                        "' is not supported; only \"absolute\""));
  }
  RETURN_IF_ERROR(ReadInt(j, "vocab_size", true, 1, source, &c.vocab_size));
  RETURN_IF_ERROR(ReadInt(j, "hidden_size", true, 1, source, &c.hidden_size));
  RETURN_IF_ERROR(ReadInt(j, "num_hidden_layers", true, 1, source, &c.num_hidden_layers));
  RETURN_IF_ERROR(ReadInt(j, "num_attention_heads", true, 1, source, &c.num_attention_heads));
  RETURN_IF_ERROR(ReadInt(j, "intermediate_size", true, 1, source, &c.intermediate_size));
  RETURN_IF_ERROR(ReadInt(j, "max_position_embeddings", true, 1, source, &c.max_position_embeddings));
  RETURN_IF_ERROR(ReadInt(j, "type_vocab_size", false, 1, source, &c.type_vocab_size));
  RETURN_IF_ERROR(ReadInt(j, "pad_token_id", false, 0, source, &c.pad_token_id));

  if (c.hidden_size % c.num_attention_heads != 0) {
    return Invalid(source, absl::StrCat("hidden_size ", c.hidden_size,
                                        " is not divisible by num_attention_heads ",
                                        c.num_attention_heads));
  }
  if (c.pad_token_id >= c.vocab_size) {
    return Invalid(source, absl::StrCat("pad_token_id ", c.pad_token_id, " is outside vocab_size ",
                                        c.vocab_size));
  }
  if (auto it = j.find("hidden_act"); it != j.end()) {
    if (!it->is_string()) return Invalid(source, "'hidden_act' is not a string");
    c.hidden_act = *it;
  }
  if (c.hidden_act != "gelu" && c.hidden_act != "gelu_new" && c.hidden_act != "gelu_pytorch_tanh" &&
      c.hidden_act != "relu") {
    return Invalid(source, absl::StrCat("hidden_act '", c.hidden_act,
                                        "' is not supported (gelu, gelu_new, gelu_pytorch_tanh, relu)"));
  }
  if (auto it = j.find("layer_norm_eps"); it != j.end()) {
    if (!it->is_number() || it->get<double>() <= 0) {
      return Invalid(source, "'layer_norm_eps' must be a positive number");
    }
    c.layer_norm_eps = it->get<double>();
  }
  return c;
}

absl::StatusOr<EncoderConfig> LoadEncoderConfig(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open model config"));
  std::ostringstream text;
  text << in.rdbuf();
  return ParseEncoderConfig(text.str(), path);
}

}  // namespace longenc::encoder
