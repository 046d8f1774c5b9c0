#include "model/encoder/config_reader.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace longenc::encoder {

absl::Status ConfigReader::Invalid(const std::string& what) const {
  return absl::InvalidArgumentError(absl::StrCat(source_, ": ", what));
}

absl::Status ConfigReader::Refuse(const std::string& key, const nlohmann::json& value,
                                  const std::string& why) const {
  return Invalid(absl::StrCat("'", key, "' is ", value.dump(), ", which longenc cannot honour: ", why));
}

bool ConfigReader::Has(const char* key) const {
  auto it = json_.find(key);
  return it != json_.end() && !it->is_null();
}

absl::Status ConfigReader::RequireAbsentOr(const char* key, const nlohmann::json& accepted,
                                           const std::string& why) const {
  auto it = json_.find(key);
  if (it == json_.end() || it->is_null() || *it == accepted) return absl::OkStatus();
  return Refuse(key, *it, why);
}

absl::StatusOr<const nlohmann::json*> ConfigReader::Find(std::initializer_list<const char*> keys,
                                                         std::string* key) const {
  const nlohmann::json* found = nullptr;
  for (const char* k : keys) {
    auto it = json_.find(k);
    if (it == json_.end() || it->is_null()) continue;
    if (found == nullptr) {
      found = &*it;
      *key = k;
    } else if (*found != *it) {
      return Invalid(absl::StrCat("'", *key, "' (", found->dump(), ") and '", k, "' (", it->dump(),
                                  ") name the same setting but disagree"));
    }
  }
  return found;
}

absl::Status ConfigReader::Int(std::initializer_list<const char*> keys, bool required,
                               int64_t min_value, int64_t* out) const {
  std::string key;
  ASSIGN_OR_RETURN(const nlohmann::json* v, Find(keys, &key));
  if (v == nullptr) {
    return required ? Invalid(absl::StrCat("missing required field '", *keys.begin(), "'"))
                    : absl::OkStatus();
  }
  if (!v->is_number_integer()) return Invalid(absl::StrCat("'", key, "' is not an integer"));
  if (v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
    return Invalid(absl::StrCat("'", key, "' is too large"));
  }
  const int64_t n = v->get<int64_t>();
  if (n < min_value) {
    return Invalid(absl::StrCat("'", key, "' is ", n, "; it must be at least ", min_value));
  }
  *out = n;
  return absl::OkStatus();
}

absl::Status ConfigReader::Double(std::initializer_list<const char*> keys, bool required,
                                  double* out) const {
  std::string key;
  ASSIGN_OR_RETURN(const nlohmann::json* v, Find(keys, &key));
  if (v == nullptr) {
    return required ? Invalid(absl::StrCat("missing required field '", *keys.begin(), "'"))
                    : absl::OkStatus();
  }
  if (!v->is_number() || !std::isfinite(v->get<double>())) {
    return Invalid(absl::StrCat("'", key, "' is not a finite number"));
  }
  *out = v->get<double>();
  return absl::OkStatus();
}

absl::Status ConfigReader::Bool(std::initializer_list<const char*> keys, bool* out) const {
  std::string key;
  ASSIGN_OR_RETURN(const nlohmann::json* v, Find(keys, &key));
  if (v == nullptr) return absl::OkStatus();
  if (!v->is_boolean()) return Invalid(absl::StrCat("'", key, "' is not true or false"));
  *out = v->get<bool>();
  return absl::OkStatus();
}

absl::Status ConfigReader::String(std::initializer_list<const char*> keys, std::string* out) const {
  std::string key;
  ASSIGN_OR_RETURN(const nlohmann::json* v, Find(keys, &key));
  if (v == nullptr) return absl::OkStatus();
  if (!v->is_string()) return Invalid(absl::StrCat("'", key, "' is not a string"));
  *out = v->get<std::string>();
  return absl::OkStatus();
}

absl::Status ReadSizes(const ConfigReader& reader, const SizeAliases& a, EncoderConfig* c) {
  RETURN_IF_ERROR(reader.Int({"vocab_size"}, true, 1, &c->vocab_size));
  RETURN_IF_ERROR(reader.Int({"hidden_size", a.hidden}, true, 1, &c->hidden_size));
  RETURN_IF_ERROR(reader.Int({"num_hidden_layers", a.layers}, true, 1, &c->num_hidden_layers));
  RETURN_IF_ERROR(reader.Int({"num_attention_heads", a.heads}, true, 1, &c->num_attention_heads));
  RETURN_IF_ERROR(reader.Int({"intermediate_size", a.intermediate}, true, 1, &c->intermediate_size));
  RETURN_IF_ERROR(reader.Int({"type_vocab_size"}, false, 0, &c->type_vocab_size));
  RETURN_IF_ERROR(reader.Int({"pad_token_id"}, false, 0, &c->pad_token_id));
  if (c->hidden_size % c->num_attention_heads != 0) {
    return reader.Invalid(absl::StrCat("hidden_size ", c->hidden_size,
                                       " is not divisible by num_attention_heads ",
                                       c->num_attention_heads));
  }
  // Bounds that keep every later product (3·hidden·hidden, vocab·hidden) far from overflow.
  if (c->hidden_size > (1 << 16) || c->intermediate_size > (1 << 20) ||
      c->num_hidden_layers > 1024 || c->vocab_size > (int64_t{1} << 24)) {
    return reader.Invalid("sizes beyond any encoder (hidden_size <= 65536, intermediate_size <= "
                          "2^20, num_hidden_layers <= 1024, vocab_size <= 2^24)");
  }
  if (c->pad_token_id >= c->vocab_size) {
    return reader.Invalid(absl::StrCat("pad_token_id ", c->pad_token_id, " is outside vocab_size ",
                                       c->vocab_size));
  }
  if (reader.Has("head_dim")) {
    int64_t head_dim = 0;
    RETURN_IF_ERROR(reader.Int({"head_dim"}, true, 1, &head_dim));
    if (head_dim != c->head_dim()) {
      return reader.Refuse("head_dim", head_dim, "heads must split hidden_size evenly");
    }
  }
  double eps = c->layer_norm_eps;
  RETURN_IF_ERROR(reader.Double({a.eps, "layer_norm_eps"}, false, &eps));
  if (eps <= 0) return reader.Invalid(absl::StrCat("'", a.eps, "' must be a positive number"));
  c->layer_norm_eps = eps;
  return absl::OkStatus();
}

absl::Status CheckActivation(const ConfigReader& reader, const std::string& key,
                             const std::string& act) {
  if (act == "gelu" || act == "gelu_new" || act == "gelu_pytorch_tanh" || act == "relu" ||
      act == "silu" || act == "swish") {
    return absl::OkStatus();
  }
  return reader.Invalid(absl::StrCat(key, " '", act,
                                     "' is not supported (gelu, gelu_new, gelu_pytorch_tanh, relu, "
                                     "silu)"));
}

absl::Status ReadRopeParameters(const ConfigReader& reader, const nlohmann::json& params,
                                const std::string& key, int64_t max_positions, RopeConfig* rope) {
  if (!params.is_object()) return reader.Invalid(absl::StrCat("'", key, "' is not an object"));
  ConfigReader sub(params, absl::StrCat(reader.source(), ": ", key));
  std::string type = "default";
  RETURN_IF_ERROR(sub.String({"rope_type", "type"}, &type));
  RETURN_IF_ERROR(sub.Double({"rope_theta"}, false, &rope->theta));
  if (rope->theta <= 1.0) return sub.Invalid("'rope_theta' must be greater than 1");
  RETURN_IF_ERROR(sub.Double({"partial_rotary_factor"}, false, &rope->fraction));
  if (rope->fraction <= 0 || rope->fraction > 1) {
    return sub.Refuse("partial_rotary_factor", params["partial_rotary_factor"], "it must be in (0, 1]");
  }
  if (type == "default") {
    rope->type = RopeType::kDefault;
    return absl::OkStatus();
  }
  if (type != "linear" && type != "dynamic" && type != "yarn") {
    return sub.Refuse("rope_type", type, "supported: default, linear, dynamic, yarn");
  }
  rope->factor = 0;
  RETURN_IF_ERROR(sub.Double({"factor"}, type != "yarn", &rope->factor));
  if (type == "linear") {
    rope->type = RopeType::kLinear;
  } else if (type == "dynamic") {
    rope->type = RopeType::kDynamic;
    rope->original_max_positions = max_positions;
  } else {
    rope->type = RopeType::kYarn;
    RETURN_IF_ERROR(sub.Int({"original_max_position_embeddings"}, true, 1,
                            &rope->original_max_positions));
    if (rope->factor == 0) {
      rope->factor = static_cast<double>(max_positions) / rope->original_max_positions;
    }
    RETURN_IF_ERROR(sub.Double({"attention_factor"}, false, &rope->attention_factor));
    RETURN_IF_ERROR(sub.Double({"beta_fast"}, false, &rope->beta_fast));
    RETURN_IF_ERROR(sub.Double({"beta_slow"}, false, &rope->beta_slow));
    RETURN_IF_ERROR(sub.Bool({"truncate"}, &rope->truncate));
    for (const char* k : {"mscale", "mscale_all_dim"}) {
      RETURN_IF_ERROR(sub.RequireAbsentOr(k, nullptr, "only attention_factor sets YaRN's scale"));
    }
    if (rope->beta_fast <= 0 || rope->beta_slow <= 0) {
      return sub.Invalid("'beta_fast' and 'beta_slow' must be positive");
    }
    if (rope->attention_factor < 0) return sub.Invalid("'attention_factor' must not be negative");
  }
  if (rope->factor < 1.0) return sub.Refuse("factor", rope->factor, "scaling factors are at least 1");
  return absl::OkStatus();
}

}  // namespace longenc::encoder
