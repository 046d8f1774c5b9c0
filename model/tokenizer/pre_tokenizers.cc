#include "model/tokenizer/pre_tokenizers.h"

#include <array>

#include "model/tokenizer/bert_chars.h"
#include "unicode/uchar.h"

namespace longenc::tokenizer::internal {
namespace {

bool IsWhiteSpace(char32_t cp) {
  return u_hasBinaryProperty(static_cast<UChar32>(cp), UCHAR_WHITE_SPACE) != 0;
}

// The classes GPT-2's pattern distinguishes: \s, \p{L}, \p{N} and everything else.
enum class Class : uint8_t { kSpace, kLetter, kNumber, kOther };

Class Classify(char32_t cp) {
  if (cp < 0x80) {
    if ((cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z')) return Class::kLetter;
    if (cp >= '0' && cp <= '9') return Class::kNumber;
    if (cp == ' ' || (cp >= '\t' && cp <= '\r')) return Class::kSpace;
    return Class::kOther;
  }
  if (IsWhiteSpace(cp)) return Class::kSpace;
  switch (u_charType(static_cast<UChar32>(cp))) {
    case U_UPPERCASE_LETTER:
    case U_LOWERCASE_LETTER:
    case U_TITLECASE_LETTER:
    case U_MODIFIER_LETTER:
    case U_OTHER_LETTER:
      return Class::kLetter;
    case U_DECIMAL_DIGIT_NUMBER:
    case U_LETTER_NUMBER:
    case U_OTHER_NUMBER:
      return Class::kNumber;
    default:
      return Class::kOther;
  }
}

struct Char {
  size_t pos;
  char32_t cp;
  Class cls;
};

std::vector<Char> DecodeClassified(std::string_view text) {
  std::vector<Char> chars;
  chars.reserve(text.size());
  char32_t cp;
  for (size_t pos = 0; pos < text.size();) {
    const int len = DecodeUtf8(text, pos, &cp);
    if (len == 0) break;  // never: the text is validated on entry
    chars.push_back({pos, cp, Classify(cp)});
    pos += len;
  }
  return chars;
}

const std::array<char32_t, 256>& ByteChars() {
  static const std::array<char32_t, 256> table = [] {
    std::array<char32_t, 256> t{};
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      t[b] = printable ? static_cast<char32_t>(b) : next++;
    }
    return t;
  }();
  return table;
}

class ByteLevel : public PreTokenizer {
 public:
  ByteLevel(bool add_prefix_space, bool use_regex)
      : add_prefix_space_(add_prefix_space), use_regex_(use_regex) {}

  void PreTokenize(NormalizedString piece, const PieceSink& sink) const override {
    if (add_prefix_space_ && piece.text()[0] != ' ') piece.Prepend(" ");
    if (!use_regex_) {
      sink(ToBytes(std::move(piece)));
      return;
    }
    SplitPiece(piece, Gpt2Split(piece.text()), SplitBehavior::kIsolated,
               [&](NormalizedString part) { sink(ToBytes(std::move(part))); });
  }

 private:
  // Every byte becomes its character of the byte-level alphabet; all of a character's bytes
  // keep its span.
  static NormalizedString ToBytes(NormalizedString piece) {
    std::vector<CharChange> changes;
    changes.reserve(piece.text().size());
    const std::string& text = piece.text();
    char32_t cp;
    for (size_t pos = 0; pos < text.size();) {
      int len = DecodeUtf8(text, pos, &cp);
      if (len == 0) len = 1;  // never: the text is validated on entry
      for (int i = 0; i < len; ++i) {
        changes.push_back({ByteToChar(static_cast<unsigned char>(text[pos + i])), i > 0});
      }
      pos += len;
    }
    piece.Transform(changes);
    return piece;
  }

 private:
  bool add_prefix_space_, use_regex_;
};

class Metaspace : public PreTokenizer {
 public:
  Metaspace(std::string replacement, PrependScheme prepend, bool split)
      : replacement_(std::move(replacement)), prepend_(prepend), split_(split) {}

  void PreTokenize(NormalizedString piece, const PieceSink& sink) const override {
    std::vector<std::pair<size_t, size_t>> spaces;
    for (size_t pos = 0; pos < piece.text().size(); ++pos) {
      if (piece.text()[pos] == ' ') spaces.emplace_back(pos, pos + 1);
    }
    piece.Replace(spaces, replacement_);
    const bool starts = piece.text().compare(0, replacement_.size(), replacement_) == 0;
    if (!starts && (prepend_ == PrependScheme::kAlways ||
                    (prepend_ == PrependScheme::kFirst && piece.original_begin() == 0))) {
      piece.Prepend(replacement_);
    }
    if (!split_) {
      sink(std::move(piece));
      return;
    }
    std::vector<std::pair<size_t, size_t>> marks;
    for (size_t pos = piece.text().find(replacement_); pos != std::string::npos;
         pos = piece.text().find(replacement_, pos + replacement_.size())) {
      marks.emplace_back(pos, pos + replacement_.size());
    }
    SplitPiece(piece, marks, SplitBehavior::kMergedWithNext, sink);
  }

 private:
  std::string replacement_;
  PrependScheme prepend_;
  bool split_;
};

class WhitespaceSplit : public PreTokenizer {
 public:
  void PreTokenize(NormalizedString piece, const PieceSink& sink) const override {
    std::vector<std::pair<size_t, size_t>> spaces;
    const std::string& text = piece.text();
    char32_t cp;
    for (size_t pos = 0; pos < text.size();) {
      int len = DecodeUtf8(text, pos, &cp);
      if (len == 0) len = 1;  // never: the text is validated on entry
      if (IsWhiteSpace(cp)) spaces.emplace_back(pos, pos + len);
      pos += len;
    }
    SplitPiece(piece, spaces, SplitBehavior::kRemoved, sink);
  }
};

// Each stage's pieces go through the next stages before the stage makes its next piece.
class Sequence : public PreTokenizer {
 public:
  explicit Sequence(std::vector<std::unique_ptr<PreTokenizer>> parts)
      : parts_(std::move(parts)) {}
  void PreTokenize(NormalizedString piece, const PieceSink& sink) const override {
    Run(0, std::move(piece), sink);
  }

 private:
  void Run(size_t stage, NormalizedString piece, const PieceSink& sink) const {
    if (stage == parts_.size()) {
      sink(std::move(piece));
      return;
    }
    parts_[stage]->PreTokenize(std::move(piece), [&](NormalizedString part) {
      Run(stage + 1, std::move(part), sink);
    });
  }

  std::vector<std::unique_ptr<PreTokenizer>> parts_;
};

}  // namespace

char32_t ByteToChar(unsigned char b) { return ByteChars()[b]; }

std::vector<std::pair<size_t, size_t>> Gpt2Split(std::string_view text) {
  const std::vector<Char> chars = DecodeClassified(text);
  const size_t n = chars.size();
  const auto byte_pos = [&](size_t i) { return i < n ? chars[i].pos : text.size(); };
  const auto run_end = [&](size_t i, Class cls) {
    while (i < n && chars[i].cls == cls) ++i;
    return i;
  };
  std::vector<std::pair<size_t, size_t>> out;
  for (size_t i = 0; i < n;) {
    const char32_t c = chars[i].cp;
    size_t end = 0;
    // 's|'t|'re|'ve|'m|'ll|'d
    if (c == '\'' && i + 1 < n) {
      const char32_t a = chars[i + 1].cp;
      const char32_t b = i + 2 < n ? chars[i + 2].cp : 0;
      if (a == 's' || a == 't' || a == 'm' || a == 'd') {
        end = i + 2;
      } else if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) {
        end = i + 3;
      }
    }
    if (end == 0) {
      // " ?\p{L}+", " ?\p{N}+", " ?[^\s\p{L}\p{N}]+": an optional ASCII space, then a run.
      const size_t start = (c == ' ' && i + 1 < n && chars[i + 1].cls != Class::kSpace) ? i + 1
                                                                                          : i;
      if (chars[start].cls != Class::kSpace) {
        end = run_end(start, chars[start].cls);
      } else {
        // "\s+(?!\S)|\s+": a whitespace run, less its last character when a non-space
        // follows (that character then leads the next match), unless that leaves nothing.
        const size_t j = run_end(i, Class::kSpace);
        end = (j == n || j - i < 2) ? j : j - 1;
      }
    }
    out.emplace_back(byte_pos(i), byte_pos(end));
    i = end;
  }
  return out;
}

std::unique_ptr<PreTokenizer> MakeByteLevel(bool add_prefix_space, bool use_regex) {
  return std::make_unique<ByteLevel>(add_prefix_space, use_regex);
}
std::unique_ptr<PreTokenizer> MakeMetaspace(std::string replacement, PrependScheme prepend,
                                            bool split) {
  return std::make_unique<Metaspace>(std::move(replacement), prepend, split);
}
std::unique_ptr<PreTokenizer> MakeWhitespaceSplit() { return std::make_unique<WhitespaceSplit>(); }
std::unique_ptr<PreTokenizer> MakeSequence(std::vector<std::unique_ptr<PreTokenizer>> parts) {
  return std::make_unique<Sequence>(std::move(parts));
}

}  // namespace longenc::tokenizer::internal
