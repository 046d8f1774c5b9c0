#include "model/tokenizer/precompiled_charsmap.h"

#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "model/tokenizer/bert_chars.h"

namespace longenc::tokenizer::internal {
namespace {

// Fields of a double-array unit (Darts-clone layout).
bool HasLeaf(uint32_t unit) { return ((unit >> 8) & 1) != 0; }
uint32_t Value(uint32_t unit) { return unit & 0x7FFFFFFFu; }
uint32_t Label(uint32_t unit) { return unit & 0x800000FFu; }
uint32_t Offset(uint32_t unit) { return (unit >> 10) << ((unit & (1u << 9)) >> 6); }

uint32_t ReadLe32(const char* p) {
  const auto* b = reinterpret_cast<const unsigned char*>(p);
  return static_cast<uint32_t>(b[0]) | static_cast<uint32_t>(b[1]) << 8 |
         static_cast<uint32_t>(b[2]) << 16 | static_cast<uint32_t>(b[3]) << 24;
}

bool IsValidUtf8(std::string_view s) {
  char32_t cp;
  for (size_t pos = 0; pos < s.size();) {
    const int len = DecodeUtf8(s, pos, &cp);
    if (len == 0) return false;
    pos += len;
  }
  return true;
}

}  // namespace

absl::StatusOr<PrecompiledCharsmap> PrecompiledCharsmap::Parse(std::string_view blob) {
  if (blob.size() < 4) {
    return absl::InvalidArgumentError("precompiled_charsmap is shorter than its 4-byte header");
  }
  const uint32_t trie_bytes = ReadLe32(blob.data());
  if (trie_bytes % 4 != 0 || trie_bytes > blob.size() - 4) {
    return absl::InvalidArgumentError(absl::StrCat("precompiled_charsmap: trie size ", trie_bytes,
                                                   " does not fit its ", blob.size(), " bytes"));
  }
  PrecompiledCharsmap map;
  map.units_.resize(trie_bytes / 4);
  for (size_t i = 0; i < map.units_.size(); ++i) map.units_[i] = ReadLe32(blob.data() + 4 + 4 * i);
  map.pool_ = std::string(blob.substr(4 + trie_bytes));
  if (!IsValidUtf8(map.pool_)) {
    return absl::InvalidArgumentError("precompiled_charsmap: replacement pool is not UTF-8");
  }
  if (map.units_.empty()) {
    return absl::InvalidArgumentError("precompiled_charsmap: empty trie");
  }
  return map;
}

std::optional<std::string_view> PrecompiledCharsmap::Transform(std::string_view text) const {
  // Every index is checked: the blob comes from a file.
  size_t pos = Offset(units_[0]);
  for (const char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == 0) break;
    pos ^= c;
    if (pos >= units_.size()) return std::nullopt;
    const uint32_t unit = units_[pos];
    if (Label(unit) != c) return std::nullopt;
    pos ^= Offset(unit);
    if (HasLeaf(unit)) {
      if (pos >= units_.size()) return std::nullopt;
      const size_t begin = Value(units_[pos]);
      if (begin >= pool_.size()) return std::nullopt;
      size_t end = pool_.find('\0', begin);
      if (end == std::string::npos) end = pool_.size();
      const std::string_view replacement(pool_.data() + begin, end - begin);
      // A replacement that starts inside a character would break the text's UTF-8.
      if (!IsValidUtf8(replacement)) return std::nullopt;
      return replacement;
    }
  }
  return std::nullopt;
}

std::optional<std::string> DecodeBase64(std::string_view text) {
  std::string out;
  out.reserve(text.size() / 4 * 3);
  uint32_t acc = 0;
  int bits = 0;
  size_t padding = 0;
  for (const char c : text) {
    int v;
    if (c >= 'A' && c <= 'Z') {
      v = c - 'A';
    } else if (c >= 'a' && c <= 'z') {
      v = c - 'a' + 26;
    } else if (c >= '0' && c <= '9') {
      v = c - '0' + 52;
    } else if (c == '+') {
      v = 62;
    } else if (c == '/') {
      v = 63;
    } else if (c == '=') {
      ++padding;
      continue;
    } else {
      return std::nullopt;
    }
    if (padding > 0) return std::nullopt;  // data after '='
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  if (padding > 2) return std::nullopt;
  return out;
}

}  // namespace longenc::tokenizer::internal
