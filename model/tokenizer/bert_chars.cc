#include "model/tokenizer/bert_chars.h"

#include <array>
#include <memory>

#include "unicode/normalizer2.h"
#include "unicode/uchar.h"
#include "unicode/unistr.h"

namespace longenc::tokenizer::internal {
namespace {

// The Unicode version of the `unicode_categories` crate's tables that `tokenizers` uses for
// "is other", "is punctuation" and "is non-spacing mark" (verified code point by code point
// against tokenizers 0.23: see tests/python/test_tokenizer_parity.py).
constexpr int kCategoryVersionMajor = 8;

bool AssignedByCategoryTables(char32_t cp) {
  UVersionInfo age;
  u_charAge(static_cast<UChar32>(cp), age);
  return age[0] <= kCategoryVersionMajor;
}

// The general category the crate's Unicode 8.0 tables give, for the few characters whose
// category changed between 8.0 and ICU's version; U_CHAR_CATEGORY_COUNT when unchanged.
int8_t Unicode8Category(char32_t cp) {
  switch (cp) {
    case 0x166D:   // CANADIAN SYLLABICS CHI SIGN: Po in 8.0, So since 12.0
    case 0x111C9:  // SHARADA SANDHI MARK: Po in 8.0, Mn since 11.0
      return U_OTHER_PUNCTUATION;
    case 0x1734:  // HANUNOO SIGN PAMUDPOD: Mn in 8.0, Mc since 14.0
      return U_NON_SPACING_MARK;
    case 0x1885:  // MONGOLIAN LETTER ALI GALI BALUDA: Lo in 8.0, Mn since 9.0
    case 0x1886:  // MONGOLIAN LETTER ALI GALI THREE BALUDA: likewise
      return U_OTHER_LETTER;
    case 0xA9BD:  // JAVANESE CONSONANT SIGN KERET: Mc in 8.0, Mn since 12.0
      return U_COMBINING_SPACING_MARK;
    default:
      return U_CHAR_CATEGORY_COUNT;
  }
}

bool IsChineseChar(char32_t cp) {
  // The block list of BertNormalizer (tokenizers/src/normalizers/bert.rs).
  return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) ||
         (cp >= 0x20000 && cp <= 0x2A6DF) || (cp >= 0x2A700 && cp <= 0x2B73F) ||
         (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B920 && cp <= 0x2CEAF) ||
         (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

uint8_t ComputeFlags(char32_t cp) {
  uint8_t flags = 0;
  int8_t category = Unicode8Category(cp);
  if (category == U_CHAR_CATEGORY_COUNT) {
    category = AssignedByCategoryTables(cp) ? u_charType(static_cast<UChar32>(cp))
                                            : static_cast<int8_t>(U_UNASSIGNED);
  }
  const bool is_other = category == U_CONTROL_CHAR || category == U_FORMAT_CHAR ||
                        category == U_PRIVATE_USE_CHAR;
  const bool tab_newline = cp == '\t' || cp == '\n' || cp == '\r';
  if (cp == 0 || cp == 0xFFFD || (is_other && !tab_newline)) flags |= kDrop;
  if (tab_newline || u_isUWhiteSpace(static_cast<UChar32>(cp))) flags |= kWhitespace;
  if (IsChineseChar(cp)) flags |= kChinese;
  const bool ascii_punct = (cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) ||
                           (cp >= 91 && cp <= 96) || (cp >= 123 && cp <= 126);
  const bool unicode_punct =
      category == U_CONNECTOR_PUNCTUATION || category == U_DASH_PUNCTUATION ||
      category == U_START_PUNCTUATION || category == U_END_PUNCTUATION ||
      category == U_INITIAL_PUNCTUATION || category == U_FINAL_PUNCTUATION ||
      category == U_OTHER_PUNCTUATION;
  if (ascii_punct || unicode_punct) flags |= kPunctuation;
  if (category == U_NON_SPACING_MARK) flags |= kNonSpacingMark;
  return flags;
}

// Flags of the Basic Multilingual Plane, computed once; other planes are computed per call.
const std::array<uint8_t, 0x10000>& BmpFlags() {
  static const auto* table = [] {
    auto* t = new std::array<uint8_t, 0x10000>();
    for (char32_t cp = 0; cp < 0x10000; ++cp) (*t)[cp] = ComputeFlags(cp);
    return t;
  }();
  return *table;
}

const icu::Normalizer2* NfdInstance() {
  static const icu::Normalizer2* nfd = [] {
    UErrorCode status = U_ZERO_ERROR;
    const icu::Normalizer2* n = icu::Normalizer2::getNFDInstance(status);
    return U_SUCCESS(status) ? n : nullptr;
  }();
  return nfd;
}

}  // namespace

int DecodeUtf8(std::string_view text, size_t pos, char32_t* cp) {
  const size_t n = text.size();
  const auto byte = [&](size_t i) { return static_cast<unsigned char>(text[i]); };
  const unsigned char b0 = byte(pos);
  if (b0 < 0x80) {
    *cp = b0;
    return 1;
  }
  int len;
  char32_t value;
  char32_t min;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    len = 2, value = b0 & 0x1F, min = 0x80;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3, value = b0 & 0x0F, min = 0x800;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4, value = b0 & 0x07, min = 0x10000;
  } else {
    return 0;  // a continuation byte, C0/C1 (always overlong) or F5..FF
  }
  if (pos + len > n) return 0;
  for (int i = 1; i < len; ++i) {
    const unsigned char b = byte(pos + i);
    if ((b & 0xC0) != 0x80) return 0;
    value = (value << 6) | (b & 0x3F);
  }
  if (value < min || value > 0x10FFFF || (value >= 0xD800 && value <= 0xDFFF)) return 0;
  *cp = value;
  return len;
}

void AppendUtf8(char32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

uint8_t CharFlags(char32_t cp) {
  if (cp < 0x10000) return BmpFlags()[cp];
  return ComputeFlags(cp);
}

int Decompose(char32_t cp, char32_t* out) {
  const icu::Normalizer2* nfd = NfdInstance();
  icu::UnicodeString decomposition;  // short strings stay in its inline buffer
  if (cp < 0xC0 || nfd == nullptr ||
      !nfd->getDecomposition(static_cast<UChar32>(cp), decomposition)) {
    out[0] = cp;
    return 1;
  }
  int count = 0;
  for (int32_t i = 0; i < decomposition.length() && count < kMaxDecomposition;) {
    const UChar32 c = decomposition.char32At(i);
    out[count++] = static_cast<char32_t>(c);
    i += U16_LENGTH(c);
  }
  return count;
}

uint8_t CombiningClass(char32_t cp) {
  if (cp < 0x300) return 0;
  return u_getCombiningClass(static_cast<UChar32>(cp));
}

int ToLower(char32_t cp, char32_t* out) {
  if (cp < 0x80) {
    out[0] = (cp >= 'A' && cp <= 'Z') ? cp + ('a' - 'A') : cp;
    return 1;
  }
  // The only unconditional one-to-many lower-case mapping (SpecialCasing.txt).
  if (cp == 0x130) {
    out[0] = 'i';
    out[1] = 0x307;
    return 2;
  }
  out[0] = static_cast<char32_t>(u_tolower(static_cast<UChar32>(cp)));
  return 1;
}

}  // namespace longenc::tokenizer::internal
