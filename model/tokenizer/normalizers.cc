#include "model/tokenizer/normalizers.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "model/tokenizer/bert_chars.h"
#include "unicode/brkiter.h"
#include "unicode/normalizer2.h"
#include "unicode/regex.h"
#include "unicode/unistr.h"
#include "unicode/utext.h"

namespace longenc::tokenizer::internal {
namespace {

std::u32string DecodeAll(std::string_view s) {
  std::u32string out;
  char32_t cp;
  for (size_t pos = 0; pos < s.size();) {
    const int len = DecodeUtf8(s, pos, &cp);
    if (len == 0) break;  // never: the text is validated on entry
    out.push_back(cp);
    pos += len;
  }
  return out;
}

// UTF-8 byte ranges of the extended grapheme clusters of `text` (ICU's character breaks, as
// the unicode-segmentation crate draws them for HF).
bool IsAscii(std::string_view s) {
  for (const char c : s) {
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  }
  return true;
}

// Calls fn(begin, end) for the UTF-8 byte range of each extended grapheme cluster of `text`
// (ICU's character breaks, as the unicode-segmentation crate draws them for HF).
template <typename Fn>
void ForEachGrapheme(const std::string& text, Fn fn) {
  if (IsAscii(text)) {
    // ASCII clusters are single characters, except CR LF.
    for (size_t pos = 0; pos < text.size();) {
      const size_t len =
          (text[pos] == '\r' && pos + 1 < text.size() && text[pos + 1] == '\n') ? 2 : 1;
      fn(pos, pos + len);
      pos += len;
    }
    return;
  }
  UErrorCode status = U_ZERO_ERROR;
  // Creating a break iterator costs far more than using one: one per thread.
  thread_local std::unique_ptr<icu::BreakIterator> iterator(
      icu::BreakIterator::createCharacterInstance(icu::Locale::getRoot(), status));
  icu::BreakIterator* it = iterator.get();
  UText* ut = utext_openUTF8(nullptr, text.data(), static_cast<int64_t>(text.size()), &status);
  if (U_FAILURE(status) || it == nullptr) {
    utext_close(ut);
    fn(size_t{0}, text.size());
    return;
  }
  it->setText(ut, status);
  int32_t prev = it->first();
  for (int32_t next = it->next(); next != icu::BreakIterator::DONE; next = it->next()) {
    fn(static_cast<size_t>(prev), static_cast<size_t>(next));
    prev = next;
  }
  utext_close(ut);
}

class UnicodeNormalizer : public Normalizer {
 public:
  explicit UnicodeNormalizer(UnicodeForm form) {
    UErrorCode status = U_ZERO_ERROR;
    switch (form) {
      case UnicodeForm::kNfc: norm_ = icu::Normalizer2::getNFCInstance(status); break;
      case UnicodeForm::kNfd: norm_ = icu::Normalizer2::getNFDInstance(status); break;
      case UnicodeForm::kNfkc: norm_ = icu::Normalizer2::getNFKCInstance(status); break;
      case UnicodeForm::kNfkd: norm_ = icu::Normalizer2::getNFKDInstance(status); break;
    }
  }

  void Normalize(NormalizedString* s) const override {
    // ASCII is unchanged by every normalisation form.
    if (norm_ == nullptr || s->empty() || IsAscii(s->text())) return;
    UErrorCode status = U_ZERO_ERROR;
    const icu::UnicodeString whole = icu::UnicodeString::fromUTF8(s->text());
    if (norm_->isNormalized(whole, status) || U_FAILURE(status)) return;
    // Segment by segment (a starter and what combines with it): an unchanged segment keeps
    // its characters one to one; a changed one is replaced as HF's alignments crate does.
    const std::u32string cps = DecodeAll(s->text());
    std::vector<CharChange> changes;
    changes.reserve(cps.size());
    for (size_t begin = 0; begin < cps.size();) {
      size_t end = begin + 1;
      while (end < cps.size() && !norm_->hasBoundaryBefore(static_cast<UChar32>(cps[end]))) ++end;
      icu::UnicodeString segment;
      for (size_t i = begin; i < end; ++i) segment.append(static_cast<UChar32>(cps[i]));
      icu::UnicodeString normalized = norm_->normalize(segment, status);
      if (U_FAILURE(status) || normalized == segment) {
        for (size_t i = begin; i < end; ++i) changes.push_back({cps[i], 0});
      } else {
        std::vector<char32_t> replacement;
        for (int32_t i = 0; i < normalized.length();) {
          const UChar32 c = normalized.char32At(i);
          replacement.push_back(static_cast<char32_t>(c));
          i += U16_LENGTH(c);
        }
        // HF's alignment rules: characters composed into the starter are removed by the
        // starter (so what follows keeps its position); extra characters are inserted last.
        const auto diff = static_cast<int64_t>(replacement.size()) -
                          static_cast<int64_t>(end - begin);
        for (size_t i = 0; i < replacement.size(); ++i) {
          int change = 0;
          if (diff < 0 && i == 0) change = static_cast<int>(diff);
          if (diff > 0 && static_cast<int64_t>(i) >= static_cast<int64_t>(replacement.size()) - diff) {
            change = 1;
          }
          changes.push_back({replacement[i], change});
        }
      }
      begin = end;
    }
    s->Transform(changes);
  }

 private:
  const icu::Normalizer2* norm_ = nullptr;
};

class Lowercase : public Normalizer {
 public:
  void Normalize(NormalizedString* s) const override {
    std::vector<CharChange> changes;
    changes.reserve(s->text().size());
    for (char32_t cp : DecodeAll(s->text())) {
      char32_t lower[2];
      const int n = ToLower(cp, lower);
      for (int i = 0; i < n; ++i) changes.push_back({lower[i], i > 0 ? 1 : 0});
    }
    s->Transform(changes);
  }
};

class Precompiled : public Normalizer {
 public:
  explicit Precompiled(PrecompiledCharsmap map) : map_(std::move(map)) {}

  // HF's rule: a grapheme shorter than 6 bytes whose bytes start with a key is replaced
  // whole; otherwise character by character.
  void Normalize(NormalizedString* s) const override {
    const std::string& text = s->text();
    std::vector<CharChange> changes;
    changes.reserve(text.size());
    bool modified = false;
    ForEachGrapheme(text, [&](size_t begin, size_t end) {
      const std::string_view grapheme(text.data() + begin, end - begin);
      if (grapheme.size() < 6) {
        if (auto norm = map_.Transform(grapheme)) {
          modified = true;
          AppendReplacement(DecodeAll(grapheme).size(), DecodeAll(*norm), &changes);
          return;
        }
      }
      char32_t cp;
      for (size_t pos = 0; pos < grapheme.size();) {
        int len = DecodeUtf8(grapheme, pos, &cp);
        if (len == 0) len = 1;  // never: the text is validated on entry
        if (auto norm = map_.Transform(grapheme.substr(pos, len))) {
          modified = true;
          AppendReplacement(1, DecodeAll(*norm), &changes);
        } else {
          changes.push_back({cp, 0});
        }
        pos += len;
      }
    });
    if (modified) s->Transform(changes);
  }

 private:
  PrecompiledCharsmap map_;
};

class Replace : public Normalizer {
 public:
  Replace(std::string pattern, std::unique_ptr<icu::RegexPattern> regex, std::string content)
      : pattern_(std::move(pattern)), regex_(std::move(regex)), content_(std::move(content)) {}

  void Normalize(NormalizedString* s) const override {
    std::vector<std::pair<size_t, size_t>> matches;
    const std::string& text = s->text();
    if (regex_ == nullptr) {
      if (pattern_.empty()) return;
      for (size_t pos = text.find(pattern_); pos != std::string::npos;
           pos = text.find(pattern_, pos + pattern_.size())) {
        matches.emplace_back(pos, pos + pattern_.size());
      }
    } else {
      UErrorCode status = U_ZERO_ERROR;
      UText* ut = utext_openUTF8(nullptr, text.data(), static_cast<int64_t>(text.size()), &status);
      std::unique_ptr<icu::RegexMatcher> m(regex_->matcher(status));
      if (U_FAILURE(status) || m == nullptr) {
        utext_close(ut);
        return;
      }
      m->reset(ut);
      while (m->find(status) && U_SUCCESS(status)) {
        const auto begin = static_cast<size_t>(m->start64(status));
        const auto end = static_cast<size_t>(m->end64(status));
        if (begin == end) continue;  // an empty match replaces nothing worth keeping
        matches.emplace_back(begin, end);
      }
      utext_close(ut);
    }
    s->Replace(matches, content_);
  }

 private:
  std::string pattern_;
  std::unique_ptr<icu::RegexPattern> regex_;
  std::string content_;
};

class Sequence : public Normalizer {
 public:
  explicit Sequence(std::vector<std::unique_ptr<Normalizer>> parts) : parts_(std::move(parts)) {}
  void Normalize(NormalizedString* s) const override {
    for (const auto& part : parts_) part->Normalize(s);
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> parts_;
};

}  // namespace

void AppendReplacement(size_t old_count, const std::u32string& replacement,
                       std::vector<CharChange>* out) {
  for (char32_t cp : replacement) out->push_back({cp, 0});
  const auto diff = static_cast<int64_t>(replacement.size()) - static_cast<int64_t>(old_count);
  if (diff > 0) {
    for (int64_t k = 0; k < diff; ++k) (*out)[out->size() - 1 - k].change = 1;
  } else if (diff < 0 && out->size() > 0) {
    // HF adds the removal to the last change pushed, which is the previous character's when
    // the replacement is empty.
    out->back().change += static_cast<int>(diff);
  }
}

std::unique_ptr<Normalizer> MakeUnicodeNormalizer(UnicodeForm form) {
  return std::make_unique<UnicodeNormalizer>(form);
}
std::unique_ptr<Normalizer> MakeLowercase() { return std::make_unique<Lowercase>(); }
std::unique_ptr<Normalizer> MakePrecompiled(PrecompiledCharsmap charsmap) {
  return std::make_unique<Precompiled>(std::move(charsmap));
}

absl::StatusOr<std::unique_ptr<Normalizer>> MakeReplace(const std::string& pattern, bool regex,
                                                        const std::string& content) {
  std::unique_ptr<icu::RegexPattern> compiled;
  if (regex) {
    UErrorCode status = U_ZERO_ERROR;
    UParseError parse_error;
    compiled.reset(icu::RegexPattern::compile(icu::UnicodeString::fromUTF8(pattern), 0,
                                              parse_error, status));
    if (U_FAILURE(status) || compiled == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("Replace: cannot compile the regular expression \"", pattern, "\": ",
                       u_errorName(status)));
    }
  }
  return std::unique_ptr<Normalizer>(
      std::make_unique<Replace>(pattern, std::move(compiled), content));
}

std::unique_ptr<Normalizer> MakeSequence(std::vector<std::unique_ptr<Normalizer>> parts) {
  return std::make_unique<Sequence>(std::move(parts));
}

}  // namespace longenc::tokenizer::internal
