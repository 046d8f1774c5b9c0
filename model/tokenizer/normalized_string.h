// A piece of text being normalised and split, with the byte span of the input it came from for
// every one of its bytes: Hugging Face `tokenizers`' NormalizedString, whose alignment rules
// decide the token offsets, reproduced exactly (transform_range, prepend, replace, slice).
//
// Internal to model/tokenizer. A value type; not shared between threads.
#ifndef LONGENC_MODEL_TOKENIZER_NORMALIZED_STRING_H_
#define LONGENC_MODEL_TOKENIZER_NORMALIZED_STRING_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace longenc::tokenizer::internal {

// A byte range [begin, end) of the input text.
struct Span {
  int32_t begin = 0;
  int32_t end = 0;
  bool operator==(const Span& o) const { return begin == o.begin && end == o.end; }
};

// One output character of a transformation and how it relates to the current text (HF's
// `(char, isize)`): 0 replaces the next character, +1 is inserted (and takes the span of the
// byte before it), -n replaces the next character and removes the n after it.
struct CharChange {
  char32_t cp;
  int change;
};

class NormalizedString {
 public:
  NormalizedString() = default;
  // `text` (valid UTF-8) that starts at byte `base` of the input; every byte is aligned to the
  // input character it belongs to.
  NormalizedString(std::string_view text, int32_t base);

  const std::string& text() const { return text_; }
  bool empty() const { return text_.empty(); }
  // Where this piece starts in the input (HF offsets_original().0).
  int32_t original_begin() const { return original_begin_; }

  // The input span of the bytes [begin, end) of text() (begin < end).
  Span OriginalSpan(size_t begin, size_t end) const;
  // The bytes [begin, end) of text() as their own piece, alignments kept.
  NormalizedString Slice(size_t begin, size_t end) const;

  // Replaces the bytes [begin, end) (character boundaries) by `dest`; the first
  // `initial_offset` characters of the range are removed first (HF transform_range).
  void Transform(size_t begin, size_t end, const std::vector<CharChange>& dest,
                 size_t initial_offset);
  void Transform(const std::vector<CharChange>& dest) { Transform(0, text_.size(), dest, 0); }
  // Puts `s` in front: its characters share the span of the first character (HF prepend).
  void Prepend(std::string_view s);
  // Replaces each range of `matches` (sorted, disjoint, on character boundaries) by `content`;
  // the new characters take the span of the last byte replaced (HF replace).
  void Replace(const std::vector<std::pair<size_t, size_t>>& matches, std::string_view content);

 private:
  std::string text_;
  std::vector<Span> alignments_;  // one per byte of text_
  int32_t original_begin_ = 0;
};

// Splits `piece` at `matches` (sorted, disjoint byte ranges of its text) and hands each part
// to `sink` in order. Parts that come out empty are dropped, as HF PreTokenizedString::split
// drops them.
enum class SplitBehavior { kRemoved, kIsolated, kMergedWithNext };
using PieceSink = std::function<void(NormalizedString)>;
void SplitPiece(const NormalizedString& piece,
                const std::vector<std::pair<size_t, size_t>>& matches, SplitBehavior behavior,
                const PieceSink& sink);

}  // namespace longenc::tokenizer::internal

#endif  // LONGENC_MODEL_TOKENIZER_NORMALIZED_STRING_H_
