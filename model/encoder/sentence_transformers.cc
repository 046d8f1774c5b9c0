#include "model/encoder/sentence_transformers.h"

#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace longenc::encoder {
namespace {

constexpr char kPoolingType[] = "sentence_transformers.models.Pooling";
constexpr char kNormalizeType[] = "sentence_transformers.models.Normalize";
constexpr char kTransformerType[] = "sentence_transformers.models.Transformer";

absl::Status Invalid(const std::string& file, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(file, ": ", what));
}

// ordered_json: prompts keep the file's order (GetInfo lists them so).
absl::StatusOr<nlohmann::ordered_json> ParseJson(const std::string& text, const std::string& file) {
  try {
    return nlohmann::ordered_json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    return Invalid(file, absl::StrCat("not valid JSON (", e.what(), ")"));
  }
}

// "" if the file does not exist.
std::string ReadIfPresent(const std::string& path) {
  std::ifstream in(path);
  if (!in) return "";
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// The modules of modules.json as (type, path) pairs, each checked to be one longenc runs.
absl::StatusOr<std::vector<std::pair<std::string, std::string>>> Modules(const std::string& dir,
                                                                        const std::string& text) {
  const std::string file = absl::StrCat(dir, "/modules.json");
  ASSIGN_OR_RETURN(const nlohmann::ordered_json j, ParseJson(text, file));
  if (!j.is_array()) return Invalid(file, "expected a list of modules");
  std::vector<std::pair<std::string, std::string>> modules;
  for (const auto& m : j) {
    if (!m.is_object() || !m.contains("type") || !m["type"].is_string()) {
      return Invalid(file, "every module needs a string 'type'");
    }
    const std::string type = m["type"];
    std::string path;
    if (m.contains("path")) {
      if (!m["path"].is_string()) return Invalid(file, "a module's 'path' is not a string");
      path = m["path"];
    }
    if (type != kPoolingType && type != kNormalizeType && type != kTransformerType) {
      return Invalid(file, absl::StrCat("module type '", type, "' is not supported; longenc runs ",
                                        kTransformerType, ", ", kPoolingType, " and ", kNormalizeType));
    }
    if (absl::StrContains(path, "..") || absl::StartsWith(path, "/")) {
      return Invalid(file, absl::StrCat("module path '", path, "' leaves the model directory"));
    }
    modules.emplace_back(type, path);
  }
  return modules;
}

absl::StatusOr<PoolingMode> ParsePooling(const std::string& file, const std::string& text) {
  ASSIGN_OR_RETURN(const nlohmann::ordered_json j, ParseJson(text, file));
  if (!j.is_object()) return Invalid(file, "not a JSON object");
  struct Mode {
    const char* key;
    bool supported;
    PoolingMode mode;
  };
  constexpr Mode kModes[] = {
      {"pooling_mode_cls_token", true, PoolingMode::kCls},
      {"pooling_mode_mean_tokens", true, PoolingMode::kMean},
      {"pooling_mode_lasttoken", true, PoolingMode::kLastToken},
      {"pooling_mode_max_tokens", false, PoolingMode::kMean},
      {"pooling_mode_mean_sqrt_len_tokens", false, PoolingMode::kMean},
      {"pooling_mode_weightedmean_tokens", false, PoolingMode::kMean},
  };
  const Mode* chosen = nullptr;
  for (const Mode& m : kModes) {
    auto it = j.find(m.key);
    if (it == j.end() || it->is_null()) continue;
    if (!it->is_boolean()) return Invalid(file, absl::StrCat("'", m.key, "' is not true or false"));
    if (!it->get<bool>()) continue;
    if (!m.supported) {
      return Invalid(file, absl::StrCat("'", m.key,
                                        "' is true, which longenc cannot honour: it pools by mean, "
                                        "CLS or last token"));
    }
    if (chosen != nullptr) {
      return Invalid(file, absl::StrCat("'", chosen->key, "' and '", m.key,
                                        "' are both true; longenc pools one way"));
    }
    chosen = &m;
  }
  if (auto it = j.find("include_prompt"); it != j.end() && *it != true && !it->is_null()) {
    return Invalid(file, "'include_prompt' is false, which longenc cannot honour: prompt tokens "
                         "are pooled with the text");
  }
  if (chosen == nullptr) return Invalid(file, "no pooling_mode_* key is true");
  return chosen->mode;
}

}  // namespace

absl::StatusOr<std::string> PoolingModulePath(const std::string& dir, const std::string& modules) {
  if (modules.empty()) return std::string();
  ASSIGN_OR_RETURN(const auto list, Modules(dir, modules));
  for (const auto& [type, path] : list) {
    if (type == kPoolingType) return path;
  }
  return std::string();
}

absl::StatusOr<SentenceTransformerInfo> ParseSentenceTransformerFiles(
    const std::string& dir, const std::string& modules, const std::string& pooling,
    const std::string& bert_config, const std::string& st_config) {
  SentenceTransformerInfo info;
  if (!modules.empty()) {
    ASSIGN_OR_RETURN(const auto list, Modules(dir, modules));
    info.present = true;
    info.normalize = false;
    bool has_pooling = false;
    for (const auto& [type, path] : list) {
      if (type == kNormalizeType) info.normalize = true;
      if (type == kPoolingType) has_pooling = true;
    }
    if (has_pooling) {
      ASSIGN_OR_RETURN(const std::string path, PoolingModulePath(dir, modules));
      const std::string file = absl::StrCat(dir, "/", path, "/config.json");
      if (pooling.empty()) return Invalid(file, "missing or empty (modules.json names a Pooling module)");
      ASSIGN_OR_RETURN(info.pooling, ParsePooling(file, pooling));
    }
  }
  if (!bert_config.empty()) {
    const std::string file = absl::StrCat(dir, "/sentence_bert_config.json");
    ASSIGN_OR_RETURN(const nlohmann::ordered_json j, ParseJson(bert_config, file));
    if (!j.is_object()) return Invalid(file, "not a JSON object");
    if (auto it = j.find("max_seq_length"); it != j.end() && !it->is_null()) {
      if (!it->is_number_integer() || it->get<int64_t>() < 1) {
        return Invalid(file, "'max_seq_length' must be a positive integer");
      }
      info.max_seq_length = it->get<int64_t>();
    }
  }
  if (!st_config.empty()) {
    const std::string file = absl::StrCat(dir, "/config_sentence_transformers.json");
    ASSIGN_OR_RETURN(const nlohmann::ordered_json j, ParseJson(st_config, file));
    if (!j.is_object()) return Invalid(file, "not a JSON object");
    if (auto it = j.find("prompts"); it != j.end() && !it->is_null()) {
      if (!it->is_object()) return Invalid(file, "'prompts' is not an object of name -> text");
      for (auto p = it->begin(); p != it->end(); ++p) {
        if (!p.value().is_string()) {
          return Invalid(file, absl::StrCat("prompt '", p.key(), "' is not a string"));
        }
        info.prompts.emplace_back(p.key(), p.value().get<std::string>());
      }
    }
    if (auto it = j.find("default_prompt_name"); it != j.end() && !it->is_null()) {
      if (!it->is_string()) return Invalid(file, "'default_prompt_name' is not a string");
      info.default_prompt_name = *it;
      bool known = false;
      for (const auto& p : info.prompts) known = known || p.first == info.default_prompt_name;
      if (!known) {
        return Invalid(file, absl::StrCat("'default_prompt_name' '", info.default_prompt_name,
                                          "' is not one of the prompts"));
      }
    }
  }
  return info;
}

absl::StatusOr<SentenceTransformerInfo> LoadSentenceTransformerInfo(const std::string& dir) {
  const std::string modules = ReadIfPresent(absl::StrCat(dir, "/modules.json"));
  ASSIGN_OR_RETURN(const std::string pooling_path, PoolingModulePath(dir, modules));
  const std::string pooling =
      pooling_path.empty() ? "" : ReadIfPresent(absl::StrCat(dir, "/", pooling_path, "/config.json"));
  return ParseSentenceTransformerFiles(dir, modules, pooling,
                                       ReadIfPresent(absl::StrCat(dir, "/sentence_bert_config.json")),
                                       ReadIfPresent(absl::StrCat(dir, "/config_sentence_transformers.json")));
}

}  // namespace longenc::encoder
