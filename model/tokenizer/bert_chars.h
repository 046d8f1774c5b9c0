// Character-level primitives of the BERT tokenizer: strict UTF-8 decoding and the Unicode
// classes, decompositions and case mappings exactly as Hugging Face `tokenizers` sees them.
//
// `tokenizers` takes general categories from the `unicode_categories` crate, whose tables
// are Unicode 8.0, while whitespace, lower-casing and NFD come from newer tables. ICU (Unicode
// 15 on Debian 12) supplies all of them here; category lookups are capped at Unicode 8.0 with
// u_charAge so that characters assigned later are "uncategorised", as they are in HF.
//
// Internal to model/tokenizer. All functions are pure and thread-safe (the lookup table is
// built once, on first use, under a function-local static).
#ifndef LONGENC_MODEL_TOKENIZER_BERT_CHARS_H_
#define LONGENC_MODEL_TOKENIZER_BERT_CHARS_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace longenc::tokenizer::internal {

// Decodes the code point that starts at text[pos]. Returns its length in bytes (1-4), or 0 if
// the bytes there are not well-formed UTF-8 (overlong forms, surrogates and values above
// U+10FFFF are rejected, as Python and Rust reject them).
int DecodeUtf8(std::string_view text, size_t pos, char32_t* cp);
void AppendUtf8(char32_t cp, std::string* out);

// Flags of one code point, as BertNormalizer / BertPreTokenizer classify it.
enum CharFlag : uint8_t {
  kDrop = 1 << 0,        // removed by clean_text: U+0000, U+FFFD, Cc/Cf/Co except \t \n \r
  kWhitespace = 1 << 1,  // White_Space property, \t \n \r included
  kChinese = 1 << 2,     // a CJK ideograph (BERT's block list)
  kPunctuation = 1 << 3, // ASCII punctuation or a Unicode P* character
  kNonSpacingMark = 1 << 4,  // Mn: removed when stripping accents
};
uint8_t CharFlags(char32_t cp);

// Longest canonical decomposition in Unicode is 4 code points; room for more is a guard.
inline constexpr int kMaxDecomposition = 8;
// Writes the full canonical (NFD) decomposition of cp, or cp itself, and returns the count.
int Decompose(char32_t cp, char32_t* out);
// Canonical combining class (0 for starters).
uint8_t CombiningClass(char32_t cp);
// Full lower-case mapping as Rust's char::to_lowercase (1 or 2 code points); returns count.
int ToLower(char32_t cp, char32_t* out);

}  // namespace longenc::tokenizer::internal

#endif  // LONGENC_MODEL_TOKENIZER_BERT_CHARS_H_
