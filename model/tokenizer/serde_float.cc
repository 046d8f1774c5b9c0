#include "model/tokenizer/serde_float.h"

#include <array>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>

#include "nlohmann/json.hpp"

namespace longenc::tokenizer::internal {
namespace {

// 1e0 .. 1e308, correctly rounded (serde_json's POW10 table).
const std::array<double, 309>& Pow10() {
  static const std::array<double, 309> table = [] {
    std::array<double, 309> t{};
    for (int i = 0; i < 309; ++i) {
      const std::string text = "1e" + std::to_string(i);
      t[i] = std::strtod(text.c_str(), nullptr);
    }
    return t;
  }();
  return table;
}

// serde_json's `overflow!(a * 10 + b, max)`.
bool Overflows(uint64_t a, uint64_t digit) {
  constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
  return a >= kMax / 10 && (a > kMax / 10 || digit > kMax % 10);
}

double FromParts(bool positive, uint64_t significand, int64_t exponent) {
  double f = static_cast<double>(significand);
  while (true) {
    const uint64_t index = static_cast<uint64_t>(exponent < 0 ? -exponent : exponent);
    if (index < Pow10().size()) {
      if (exponent >= 0) {
        f *= Pow10()[index];
      } else {
        f /= Pow10()[index];
      }
      break;
    }
    if (f == 0.0) break;
    if (exponent >= 0) return positive ? HUGE_VAL : -HUGE_VAL;  // serde: an error
    f /= 1e308;
    exponent += 308;
  }
  return positive ? f : -f;
}

// Records the raw number texts at root.model.vocab[i][j].
class ScoreCollector : public nlohmann::json_sax<nlohmann::json> {
 public:
  std::vector<std::string> texts;

  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t v) override { return Number(std::to_string(v)); }
  bool number_unsigned(number_unsigned_t v) override { return Number(std::to_string(v)); }
  bool number_float(number_float_t, const string_t& s) override { return Number(s); }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool start_object(std::size_t) override {
    stack_.push_back({true, ""});
    return true;
  }
  bool key(string_t& k) override {
    if (!stack_.empty()) stack_.back().key = k;
    return true;
  }
  bool end_object() override {
    stack_.pop_back();
    return true;
  }
  bool start_array(std::size_t) override {
    stack_.push_back({false, ""});
    return true;
  }
  bool end_array() override {
    stack_.pop_back();
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override {
    texts.clear();
    return false;
  }

 private:
  struct Frame {
    bool object;
    std::string key;
  };
  bool Number(const std::string& text) {
    if (stack_.size() == 4 && stack_[0].object && stack_[0].key == "model" &&
        stack_[1].object && stack_[1].key == "vocab" && !stack_[2].object && !stack_[3].object) {
      texts.push_back(text);
    }
    return true;
  }
  std::vector<Frame> stack_;
};

}  // namespace

std::optional<double> SerdeJsonF64(std::string_view s) {
  size_t i = 0;
  const bool positive = !(i < s.size() && s[i] == '-');
  if (!positive) ++i;
  const auto digit_at = [&](size_t k) { return k < s.size() && s[k] >= '0' && s[k] <= '9'; };
  if (!digit_at(i)) return std::nullopt;
  uint64_t significand = 0;
  int64_t exponent = 0;
  bool overflowed = false;
  if (s[i] == '0') {
    ++i;
  } else {
    while (digit_at(i)) {
      const auto d = static_cast<uint64_t>(s[i] - '0');
      if (Overflows(significand, d)) {
        // A long integer: serde keeps counting digits as powers of ten.
        overflowed = true;
        ++exponent;
      } else {
        significand = significand * 10 + d;
      }
      ++i;
    }
  }
  if (i < s.size() && s[i] == '.') {
    ++i;
    if (!digit_at(i)) return std::nullopt;
    while (digit_at(i)) {
      const auto d = static_cast<uint64_t>(s[i] - '0');
      if (!overflowed && Overflows(significand, d)) overflowed = true;  // ignore the rest
      if (!overflowed) {
        significand = significand * 10 + d;
        --exponent;
      }
      ++i;
    }
  }
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    bool exp_positive = true;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) exp_positive = s[i++] == '+';
    if (!digit_at(i)) return std::nullopt;
    int64_t exp = 0;
    while (digit_at(i)) {
      exp = std::min<int64_t>(exp * 10 + (s[i] - '0'), 1 << 30);
      ++i;
    }
    exponent += exp_positive ? exp : -exp;
  }
  if (i != s.size()) return std::nullopt;
  return FromParts(positive, significand, exponent);
}

std::vector<std::string> UnigramScoreTexts(std::string_view json) {
  ScoreCollector collector;
  nlohmann::json::sax_parse(json.begin(), json.end(), &collector);
  return collector.texts;
}

}  // namespace longenc::tokenizer::internal
