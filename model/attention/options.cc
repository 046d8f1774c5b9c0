#include "model/attention/options.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace longenc::attention {
namespace {
// Debian's Abseil 20220623 has its own absl::string_view (not an alias of std::string_view).
absl::string_view Av(std::string_view s) { return absl::string_view(s.data(), s.size()); }
}  // namespace

absl::StatusOr<std::map<std::string, std::string>> ParseAttentionOptions(
    std::string_view text_in) {
  const absl::string_view text = Av(text_in);
  std::map<std::string, std::string> out;
  if (absl::StripAsciiWhitespace(text).empty()) return out;
  for (absl::string_view item : absl::StrSplit(text, ',')) {
    item = absl::StripAsciiWhitespace(item);
    const size_t eq = item.find('=');
    if (eq == absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat(
          "attention option '", item, "' is not of the form key=value (in \"", text, "\")"));
    }
    std::string key(absl::StripAsciiWhitespace(item.substr(0, eq)));
    std::string value(absl::StripAsciiWhitespace(item.substr(eq + 1)));
    if (key.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("attention option '", item, "' has an empty key"));
    }
    if (out.count(key) != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("attention option '", key, "' is given twice"));
    }
    out.emplace(std::move(key), std::move(value));
  }
  return out;
}

OptionReader::OptionReader(std::string_view variant,
                           const std::map<std::string, std::string>& options)
    : variant_(variant), options_(options) {}

const std::string* OptionReader::Find(std::string_view key) {
  known_.emplace(key);
  auto it = options_.find(std::string(key));
  return it == options_.end() ? nullptr : &it->second;
}

absl::Status OptionReader::Bad(std::string_view key, std::string_view value,
                               std::string_view why) const {
  return absl::InvalidArgumentError(absl::StrCat("attention '", variant_, "': option ", Av(key),
                                                 "='", Av(value), "' ", Av(why)));
}

absl::StatusOr<int64_t> OptionReader::Int(std::string_view key, int64_t default_value,
                                          int64_t min_value, int64_t max_value) {
  const std::string* text = Find(key);
  if (text == nullptr) return default_value;
  int64_t value = 0;
  if (!absl::SimpleAtoi(*text, &value)) return Bad(key, *text, "is not an integer");
  if (value < min_value || value > max_value) {
    return Bad(key, *text, absl::StrCat("is outside [", min_value, ", ", max_value, "]"));
  }
  return value;
}

absl::StatusOr<double> OptionReader::Double(std::string_view key, double default_value,
                                            double min_value, double max_value) {
  const std::string* text = Find(key);
  if (text == nullptr) return default_value;
  double value = 0;
  if (!absl::SimpleAtod(*text, &value) || !std::isfinite(value)) {
    return Bad(key, *text, "is not a finite number");
  }
  if (value < min_value || value > max_value) {
    return Bad(key, *text, absl::StrCat("is outside [", min_value, ", ", max_value, "]"));
  }
  return value;
}

absl::StatusOr<bool> OptionReader::Bool(std::string_view key, bool default_value) {
  const std::string* text = Find(key);
  if (text == nullptr) return default_value;
  bool value = false;
  if (!absl::SimpleAtob(*text, &value)) return Bad(key, *text, "is not a boolean (1/0)");
  return value;
}

absl::StatusOr<std::string> OptionReader::Choice(std::string_view key,
                                                 std::string_view default_value,
                                                 const std::vector<std::string>& allowed) {
  const std::string* text = Find(key);
  if (text == nullptr) return std::string(default_value);
  if (std::find(allowed.begin(), allowed.end(), *text) == allowed.end()) {
    return Bad(key, *text, absl::StrCat("is not one of {", absl::StrJoin(allowed, ", "), "}"));
  }
  return *text;
}

absl::StatusOr<std::string> OptionReader::String(std::string_view key,
                                                 std::string_view default_value) {
  const std::string* text = Find(key);
  if (text == nullptr) return std::string(default_value);
  if (text->empty()) return Bad(key, *text, "is empty");
  return *text;
}

absl::Status OptionReader::Finish() const {
  std::vector<std::string> unknown;
  for (const auto& [key, value] : options_) {
    if (known_.count(key) == 0) unknown.push_back(key);
  }
  if (unknown.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "attention '", variant_, "': unknown option(s) ", absl::StrJoin(unknown, ", "),
      "; known options: ", absl::StrJoin(known_, ", ")));
}

}  // namespace longenc::attention
