#include "model/tokenizer/normalized_string.h"

#include <algorithm>

#include "model/tokenizer/bert_chars.h"

namespace longenc::tokenizer::internal {
namespace {

// Length of the UTF-8 sequence that starts with `lead` (the text is always valid UTF-8).
size_t Utf8Length(char lead) {
  const unsigned char c = static_cast<unsigned char>(lead);
  if (c < 0x80) return 1;
  if (c < 0xE0) return 2;
  if (c < 0xF0) return 3;
  return 4;
}

}  // namespace

NormalizedString::NormalizedString(std::string_view text, int32_t base)
    : text_(text), original_begin_(base) {
  alignments_.resize(text.size());
  for (size_t pos = 0; pos < text.size();) {
    const size_t len = std::min(Utf8Length(text[pos]), text.size() - pos);
    const Span span{base + static_cast<int32_t>(pos), base + static_cast<int32_t>(pos + len)};
    std::fill_n(alignments_.begin() + static_cast<std::ptrdiff_t>(pos), len, span);
    pos += len;
  }
}

Span NormalizedString::OriginalSpan(size_t begin, size_t end) const {
  return {alignments_[begin].begin, alignments_[end - 1].end};
}

NormalizedString NormalizedString::Slice(size_t begin, size_t end) const {
  NormalizedString out;
  out.text_ = text_.substr(begin, end - begin);
  out.alignments_.assign(alignments_.begin() + static_cast<std::ptrdiff_t>(begin),
                         alignments_.begin() + static_cast<std::ptrdiff_t>(end));
  out.original_begin_ = begin < alignments_.size() ? alignments_[begin].begin : original_begin_;
  return out;
}

void NormalizedString::Transform(size_t begin, size_t end, const std::vector<CharChange>& dest,
                                 size_t initial_offset) {
  std::vector<uint8_t> replaced;  // byte length of each character of [begin, end)
  for (size_t pos = begin; pos < end;) {
    replaced.push_back(static_cast<uint8_t>(Utf8Length(text_[pos])));
    pos += replaced.back();
  }
  size_t next = 0;
  size_t offset = begin;
  for (; next < initial_offset && next < replaced.size(); ++next) offset += replaced[next];

  // An inserted character at the very start has no byte before it: HF gives it (0, 0) of the
  // piece, i.e. where the piece starts in the input.
  const Span start_span{original_begin_, original_begin_};
  const auto span_at = [&](size_t i) {
    return i < alignments_.size() ? alignments_[i] : (alignments_.empty() ? start_span
                                                                          : alignments_.back());
  };
  std::string text;
  std::vector<Span> alignments;
  text.reserve(end - begin);
  alignments.reserve(end - begin);
  for (const CharChange& c : dest) {
    const Span span = c.change > 0 ? (offset < 1 ? start_span : span_at(offset - 1))
                                   : span_at(offset);
    if (c.change <= 0 && next < replaced.size()) offset += replaced[next++];
    for (int k = 0; k < -c.change && next < replaced.size(); ++k) offset += replaced[next++];
    const size_t before = text.size();
    AppendUtf8(c.cp, &text);
    alignments.insert(alignments.end(), text.size() - before, span);
  }
  text_.replace(begin, end - begin, text);
  alignments_.erase(alignments_.begin() + static_cast<std::ptrdiff_t>(begin),
                    alignments_.begin() + static_cast<std::ptrdiff_t>(end));
  alignments_.insert(alignments_.begin() + static_cast<std::ptrdiff_t>(begin),
                     alignments.begin(), alignments.end());
}

void NormalizedString::Prepend(std::string_view s) {
  if (text_.empty() || s.empty()) return;
  std::vector<CharChange> dest;
  for (size_t pos = 0; pos < s.size();) {
    char32_t cp = 0;
    const int len = DecodeUtf8(s, pos, &cp);
    if (len == 0) return;
    dest.push_back({cp, dest.empty() ? 0 : 1});
    pos += len;
  }
  char32_t first = 0;
  const int first_len = DecodeUtf8(text_, 0, &first);
  dest.push_back({first, 1});
  Transform(0, static_cast<size_t>(first_len), dest, 0);
}

void NormalizedString::Replace(const std::vector<std::pair<size_t, size_t>>& matches,
                               std::string_view content) {
  if (matches.empty()) return;
  std::string text;
  std::vector<Span> alignments;
  text.reserve(text_.size());
  alignments.reserve(alignments_.size());
  size_t last = 0;
  for (const auto& [begin, end] : matches) {
    text.append(text_, last, begin - last);
    alignments.insert(alignments.end(), alignments_.begin() + static_cast<std::ptrdiff_t>(last),
                      alignments_.begin() + static_cast<std::ptrdiff_t>(begin));
    // Every new character is "inserted" after the whole match: it takes the span of the byte
    // before `end`.
    const Span span = end < 1 ? Span{original_begin_, original_begin_} : alignments_[end - 1];
    text.append(content);
    alignments.insert(alignments.end(), content.size(), span);
    last = end;
  }
  text.append(text_, last, std::string::npos);
  alignments.insert(alignments.end(), alignments_.begin() + static_cast<std::ptrdiff_t>(last),
                    alignments_.end());
  text_ = std::move(text);
  alignments_ = std::move(alignments);
}

void SplitPiece(const NormalizedString& piece,
                const std::vector<std::pair<size_t, size_t>>& matches, SplitBehavior behavior,
                const PieceSink& sink) {
  struct Part {
    size_t begin, end;
    bool is_match;
  };
  std::vector<Part> parts;
  size_t prev = 0;
  for (const auto& [begin, end] : matches) {
    if (prev != begin) parts.push_back({prev, begin, false});
    parts.push_back({begin, end, true});
    prev = end;
  }
  if (prev != piece.text().size()) parts.push_back({prev, piece.text().size(), false});

  std::vector<std::pair<size_t, size_t>> ranges;
  switch (behavior) {
    case SplitBehavior::kRemoved:
      for (const Part& p : parts) {
        if (!p.is_match) ranges.emplace_back(p.begin, p.end);
      }
      break;
    case SplitBehavior::kIsolated:
      for (const Part& p : parts) ranges.emplace_back(p.begin, p.end);
      break;
    case SplitBehavior::kMergedWithNext: {
      // HF folds from the end: a match that follows no match takes the part after it.
      bool previous_match = false;
      for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
        if (it->is_match && !previous_match && !ranges.empty()) {
          ranges.back().first = it->begin;
        } else {
          ranges.emplace_back(it->begin, it->end);
        }
        previous_match = it->is_match;
      }
      std::reverse(ranges.begin(), ranges.end());
      break;
    }
  }
  for (const auto& [begin, end] : ranges) {
    if (begin < end) sink(piece.Slice(begin, end));
  }
}

}  // namespace longenc::tokenizer::internal
