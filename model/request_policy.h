// What a request may set in `attention_options`. The operator's own settings (--attention,
// --attention_options, --attention_preset) are trusted; a request's are not: it may set only
// the numeric and choice options listed here, numbers within ranges that keep one request's
// attention memory and time bounded (docs/API.md, "Per-request attention options"). Options
// that name a file are never accepted from a request, with one message that does not depend
// on the value (no file is opened, so nothing about the server's files leaks).
//
// The defaults can be narrowed or widened with --request_option_limits, e.g.
// "iclustered.topk=1:1024,yoso.tau=none" (none: the key may not be set per request).
//
// Thread-safety: immutable after construction; Check() is safe from any thread.
#ifndef LONGENC_MODEL_REQUEST_POLICY_H_
#define LONGENC_MODEL_REQUEST_POLICY_H_

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace longenc::model {

class RequestPolicy {
 public:
  // A numeric range [min, max]; keys without a range (booleans, choices) have kAnyValue.
  struct Range {
    int64_t min = 0;
    int64_t max = 0;
    bool any_value = false;
  };

  // The built-in table, then the overrides of `flag` (--request_option_limits).
  static absl::StatusOr<RequestPolicy> Create(absl::string_view flag);

  // InvalidArgument naming the option when `options` (already split into key/value) of
  // `variant` are not all allowed for a request.
  absl::Status Check(absl::string_view variant,
                     const std::map<std::string, std::string>& options) const;

  // "variant.key=min:max, ..." of the table in effect (for --help and docs).
  std::string Describe() const;

 private:
  std::map<std::string, std::map<std::string, Range>, std::less<>> table_;
};

}  // namespace longenc::model

#endif  // LONGENC_MODEL_REQUEST_POLICY_H_
