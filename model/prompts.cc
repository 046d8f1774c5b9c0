#include "model/prompts.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace longenc::model {

absl::StatusOr<const std::string*> FindPrompt(const ModelInfo& info, const std::string& requested,
                                              const std::string& field) {
  const std::string& name = requested.empty() ? info.default_prompt_name : requested;
  if (name.empty()) return nullptr;
  for (const auto& [known, text] : info.prompts) {
    if (known == name) return &text;
  }
  if (info.prompts.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": unknown prompt '", name, "'; the model defines no prompts "
        "(config_sentence_transformers.json, GetInfo.prompts): leave ", field, " empty"));
  }
  std::vector<std::string> names;
  for (const auto& p : info.prompts) names.push_back(p.first);
  return absl::InvalidArgumentError(absl::StrCat(field, ": unknown prompt '", name,
                                                 "'; known: ", absl::StrJoin(names, ", "),
                                                 " (GetInfo.prompts)"));
}

int64_t StripPromptOffsets(int64_t prompt_bytes, int64_t first,
                           std::vector<std::pair<int32_t, int32_t>>& offsets) {
  int64_t end = first;
  const int64_t n = static_cast<int64_t>(offsets.size());
  while (end < n && offsets[end].first < prompt_bytes && offsets[end].second <= prompt_bytes) {
    ++end;
  }
  const auto shift = [prompt_bytes](int32_t at) {
    return static_cast<int32_t>(std::max<int64_t>(0, at - prompt_bytes));
  };
  for (auto& [begin, stop] : offsets) {
    begin = shift(begin);
    stop = shift(stop);
  }
  return end - first;
}

}  // namespace longenc::model
