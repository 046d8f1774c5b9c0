#include "model/encoder/config.h"

#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "absl/strings/numbers.h"
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

absl::Status ApplyRopeScaling(const std::string& spec, const std::string& flag, EncoderConfig* c) {
  if (spec.empty()) return absl::OkStatus();
  auto invalid = [&](const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat(flag, "=", spec, ": ", why));
  };
  if (c->positions != PositionKind::kRotary) {
    return invalid(absl::StrCat("model_type ", c->model_type, " has learned positions; use --position_mode"));
  }
  RopeConfig rope = c->rope;
  rope.factor = 1.0;
  rope.original_max_positions = c->max_position_embeddings;
  rope.attention_factor = 0.0;
  if (spec == "none") {
    rope.type = RopeType::kDefault;
    c->rope = rope;
    return absl::OkStatus();
  }
  const size_t colon = spec.find(':');
  const std::string kind = spec.substr(0, colon);
  if (colon == std::string::npos || !absl::SimpleAtod(spec.substr(colon + 1), &rope.factor) ||
      !(rope.factor >= 1.0) || rope.factor > 1e6) {
    return invalid("expected none, linear:F, dynamic:F or yarn:F with a factor F >= 1");
  }
  if (kind == "linear") {
    rope.type = RopeType::kLinear;
  } else if (kind == "dynamic") {
    rope.type = RopeType::kDynamic;
  } else if (kind == "yarn") {
    rope.type = RopeType::kYarn;
  } else {
    return invalid("expected none, linear:F, dynamic:F or yarn:F");
  }
  c->rope = rope;
  return absl::OkStatus();
}

absl::StatusOr<EncoderConfig> LoadEncoderConfig(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open model config"));
  std::ostringstream text;
  text << in.rdbuf();
  return ParseEncoderConfig(text.str(), path);
}

}  // namespace longenc::encoder
