// The tokenizer.json pre-tokenisers longenc supports, as Hugging Face `tokenizers` runs them:
// ByteLevel (GPT-2's split pattern, written out by hand, and the byte-to-character map),
// Metaspace, WhitespaceSplit and Sequence. (BertPreTokenizer lives in the WordPiece tokenizer.)
//
// Internal to model/tokenizer. Immutable after construction; PreTokenize is thread-safe.
#ifndef LONGENC_MODEL_TOKENIZER_PRE_TOKENIZERS_H_
#define LONGENC_MODEL_TOKENIZER_PRE_TOKENIZERS_H_

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "model/tokenizer/normalized_string.h"

namespace longenc::tokenizer::internal {

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Hands the pieces `piece` splits into (empty ones dropped) to `sink`, in order, one at a
  // time: a document of a million words never holds a million pieces at once.
  virtual void PreTokenize(NormalizedString piece, const PieceSink& sink) const = 0;
};

std::unique_ptr<PreTokenizer> MakeByteLevel(bool add_prefix_space, bool use_regex);
enum class PrependScheme { kAlways, kFirst, kNever };
std::unique_ptr<PreTokenizer> MakeMetaspace(std::string replacement, PrependScheme prepend,
                                            bool split);
std::unique_ptr<PreTokenizer> MakeWhitespaceSplit();
std::unique_ptr<PreTokenizer> MakeSequence(std::vector<std::unique_ptr<PreTokenizer>> parts);

// GPT-2's pre-tokenisation pattern
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// as byte ranges of `text` (valid UTF-8); together they cover it.
std::vector<std::pair<size_t, size_t>> Gpt2Split(std::string_view text);

// The byte-level alphabet: byte b is written as this code point (GPT-2's bytes_to_unicode).
char32_t ByteToChar(unsigned char b);

}  // namespace longenc::tokenizer::internal

#endif  // LONGENC_MODEL_TOKENIZER_PRE_TOKENIZERS_H_
