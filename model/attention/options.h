// Parsing of attention options: the "key=value,key=value" string of --attention_options and
// typed readers that every variant uses to read its settings with documented defaults.
//
// Ownership: OptionReader borrows the option map; it must not outlive it.
// Thread-safety: none needed (used once per variant construction).
#ifndef LONGENC_MODEL_ATTENTION_OPTIONS_H_
#define LONGENC_MODEL_ATTENTION_OPTIONS_H_

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace longenc::attention {

// Splits "k=v,k=v" into a map. Whitespace around keys and values is trimmed, an empty string
// gives an empty map. InvalidArgument on an item without '=', an empty key or a repeated key.
absl::StatusOr<std::map<std::string, std::string>> ParseAttentionOptions(std::string_view text);

// Reads typed options of one variant. Every accessor returns the default when the key is absent
// and InvalidArgument naming the variant, the option and the value when it is malformed or out
// of range. Finish() rejects keys no accessor asked for, so a typo never silently falls back to
// a default.
class OptionReader {
 public:
  OptionReader(std::string_view variant, const std::map<std::string, std::string>& options);

  absl::StatusOr<int64_t> Int(std::string_view key, int64_t default_value, int64_t min_value,
                              int64_t max_value);
  absl::StatusOr<double> Double(std::string_view key, double default_value, double min_value,
                                double max_value);
  // Accepts 1/0, true/false, yes/no, on/off.
  absl::StatusOr<bool> Bool(std::string_view key, bool default_value);
  // One of `allowed` (exact match).
  absl::StatusOr<std::string> Choice(std::string_view key, std::string_view default_value,
                                     const std::vector<std::string>& allowed);
  // Any non-empty string (e.g. a file path).
  absl::StatusOr<std::string> String(std::string_view key, std::string_view default_value);

  // InvalidArgument listing the unknown keys and the known ones.
  absl::Status Finish() const;

 private:
  const std::string* Find(std::string_view key);
  absl::Status Bad(std::string_view key, std::string_view value, std::string_view why) const;

  std::string variant_;
  const std::map<std::string, std::string>& options_;
  std::set<std::string> known_;
};

}  // namespace longenc::attention

#endif  // LONGENC_MODEL_ATTENTION_OPTIONS_H_
