#include "model/request_policy.h"

#include <set>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace longenc::model {
namespace {

using Range = RequestPolicy::Range;

constexpr Range Any() { return Range{0, 0, true}; }

// Options that name a server file: operator-only (an --attention_preset may set them).
const std::set<std::string, std::less<>>& FileOptions() {
  static const auto* const kKeys = new std::set<std::string, std::less<>>{"surrogates"};
  return *kKeys;
}

// The built-in limits. The bounds keep one request's attention within a few hundred MiB at the
// 131072-token document limit (i-clustered with topk = 512 holds 131072 x 512 fp32 scores per
// head: 256 MiB; YOSO with tau = 16 holds 2^16 buckets x head_dim per hash) and its time within
// a few times the defaults' (iterations, refine). min_len_efficient is capped where exact
// attention is capped by default, so a request cannot turn a linear variant quadratic beyond it.
std::map<std::string, std::map<std::string, Range>, std::less<>> DefaultTable() {
  const Range min_len{0, 16384, false};
  std::map<std::string, Range> clustered = {
      {"clusters", {1, 256, false}}, {"bits", {1, 63, false}},   {"iterations", {0, 20, false}},
      {"refine", {0, 10, false}},    {"hash_bias", Any()},       {"min_len_efficient", min_len}};
  std::map<std::string, Range> iclustered = clustered;
  iclustered["clusters"] = {1, 512, false};
  iclustered["topk"] = {1, 512, false};
  return {
      {"full", {{"query_block", {512, 131072, false}}}},
      {"clustered", clustered},
      {"iclustered", iclustered},
      {"yoso", {{"tau", {1, 16, false}}, {"hashes", {1, 64, false}}, {"min_len_efficient", min_len}}},
      {"cast",
       {{"clusters", {1, 256, false}},
        {"kappa", {1, 1024, false}},
        {"assignment", Any()},
        {"mix", Any()},
        {"min_len_efficient", min_len}}},
  };
}

std::string RangeText(const Range& r) {
  return r.any_value ? "any" : absl::StrCat(r.min, ":", r.max);
}

}  // namespace

absl::StatusOr<RequestPolicy> RequestPolicy::Create(absl::string_view flag) {
  RequestPolicy policy;
  policy.table_ = DefaultTable();
  for (absl::string_view item : absl::StrSplit(flag, ',', absl::SkipWhitespace())) {
    item = absl::StripAsciiWhitespace(item);
    auto bad = [&](absl::string_view why) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--request_option_limits: \"", item, "\": ", why,
          " (expected variant.key=min:max, variant.key=any or variant.key=none)"));
    };
    const std::vector<absl::string_view> kv = absl::StrSplit(item, absl::MaxSplits('=', 1));
    if (kv.size() != 2) return bad("no '='");
    const std::vector<absl::string_view> name = absl::StrSplit(kv[0], absl::MaxSplits('.', 1));
    if (name.size() != 2 || name[0].empty() || name[1].empty()) return bad("no variant.key");
    if (FileOptions().count(name[1]) > 0) return bad("options naming files are operator-only");
    auto& keys = policy.table_[std::string(name[0])];
    if (kv[1] == "none") {
      keys.erase(std::string(name[1]));
      continue;
    }
    if (kv[1] == "any") {
      keys[std::string(name[1])] = Any();
      continue;
    }
    const std::vector<absl::string_view> bounds = absl::StrSplit(kv[1], absl::MaxSplits(':', 1));
    Range range;
    if (bounds.size() != 2 || !absl::SimpleAtoi(bounds[0], &range.min) ||
        !absl::SimpleAtoi(bounds[1], &range.max) || range.min > range.max) {
      return bad("bad range");
    }
    keys[std::string(name[1])] = range;
  }
  return policy;
}

absl::Status RequestPolicy::Check(absl::string_view variant,
                                  const std::map<std::string, std::string>& options) const {
  const auto keys = table_.find(variant);
  for (const auto& [key, value] : options) {
    if (FileOptions().count(key) > 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "attention_options: \"", key, "\" names a file on the server and cannot be set by a "
          "request; the operator offers such settings as presets (--attention_preset, listed in "
          "GetInfo.attention_presets)"));
    }
    const Range* range = nullptr;
    if (keys != table_.end()) {
      const auto it = keys->second.find(key);
      if (it != keys->second.end()) range = &it->second;
    }
    if (range == nullptr) {
      std::vector<std::string> allowed;
      if (keys != table_.end()) {
        for (const auto& [k, r] : keys->second) allowed.push_back(k);
      }
      return absl::InvalidArgumentError(absl::StrCat(
          "attention_options: \"", key, "\" of attention \"", variant,
          "\" cannot be set by a request (a request may set: ",
          allowed.empty() ? "nothing" : absl::StrJoin(allowed, ", "),
          "; --request_option_limits)"));
    }
    if (range->any_value) continue;  // the variant itself checks booleans and choices
    int64_t number = 0;
    if (!absl::SimpleAtoi(value, &number) || number < range->min || number > range->max) {
      return absl::InvalidArgumentError(absl::StrCat(
          "attention_options: ", variant, " ", key, "=", value,
          " is outside what a request may set: an integer in [", range->min, ", ", range->max,
          "] (--request_option_limits)"));
    }
  }
  return absl::OkStatus();
}

std::string RequestPolicy::Describe() const {
  std::vector<std::string> items;
  for (const auto& [variant, keys] : table_) {
    for (const auto& [key, range] : keys) {
      items.push_back(absl::StrCat(variant, ".", key, "=", RangeText(range)));
    }
  }
  return absl::StrJoin(items, ",");
}

}  // namespace longenc::model
