#include "model/encoder/config.h"

#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "model/encoder/config_reader.h"
#include "model/encoder/families/family.h"

namespace longenc::encoder {

absl::StatusOr<EncoderConfig> ParseEncoderConfig(const std::string& json_text,
                                                 const std::string& source) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(json_text);
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": not valid JSON (", e.what(), ")"));
  }
  const ConfigReader reader(j, source);
  if (!j.is_object()) return reader.Invalid("not a JSON object");

  std::string model_type = "bert";
  RETURN_IF_ERROR(reader.String({"model_type"}, &model_type));
  const Family* family = FindFamily(model_type);
  if (family == nullptr) {
    return reader.Invalid(absl::StrCat("model_type '", model_type,
                                       "' is not supported; longenc runs these encoder families: ",
                                       AcceptedModelTypes()));
  }
  EncoderConfig c;
  c.model_type = family->name;
  for (const char* key : {"is_decoder", "add_cross_attention"}) {
    RETURN_IF_ERROR(reader.RequireAbsentOr(key, false, "longenc runs bidirectional encoders"));
  }
  RETURN_IF_ERROR(family->parse(reader, &c));
  if (c.positions == PositionKind::kRotary) {
    for (const RopeConfig* rope : {&c.rope, &c.local_rope}) {
      const int64_t rotary = static_cast<int64_t>(c.head_dim() * rope->fraction);
      if (rotary < 2 || rotary % 2 != 0) {
        return reader.Invalid(absl::StrCat("RoPE needs an even number of rotary dimensions; head_dim ",
                                           c.head_dim(), " with rotary fraction ", rope->fraction,
                                           " gives ", rotary));
      }
    }
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
