// SentencePiece's precompiled normalisation map (the `precompiled_charsmap` of a tokenizer.json
// Precompiled normaliser): a Darts double-array trie from UTF-8 keys to offsets in a pool of
// NUL-terminated replacement strings. Layout: u32 LE trie size T in bytes, T/4 u32 LE units,
// then the pool. Read here from the format, not from sentencepiece's code.
//
// Internal to model/tokenizer. Immutable after Parse; thread-safe.
#ifndef LONGENC_MODEL_TOKENIZER_PRECOMPILED_CHARSMAP_H_
#define LONGENC_MODEL_TOKENIZER_PRECOMPILED_CHARSMAP_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace longenc::tokenizer::internal {

class PrecompiledCharsmap {
 public:
  // `blob` is the decoded bytes (not base64). Refuses a blob too short for its trie size or
  // whose pool is not UTF-8.
  static absl::StatusOr<PrecompiledCharsmap> Parse(std::string_view blob);

  // The replacement of the shortest key that is a prefix of `text`, as HF's Precompiled uses
  // it (sentencepiece's common-prefix search, first result); nullopt when no key is.
  std::optional<std::string_view> Transform(std::string_view text) const;

 private:
  std::vector<uint32_t> units_;
  std::string pool_;
};

// Standard base64 (RFC 4648, '=' padding optional); nullopt on any other character.
std::optional<std::string> DecodeBase64(std::string_view text);

}  // namespace longenc::tokenizer::internal

#endif  // LONGENC_MODEL_TOKENIZER_PRECOMPILED_CHARSMAP_H_
