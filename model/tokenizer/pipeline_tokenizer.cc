#include "model/tokenizer/pipeline_tokenizer.h"

#include <algorithm>
#include <array>
#include <limits>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "model/tokenizer/bert_chars.h"
#include "unicode/uchar.h"

namespace longenc::tokenizer {

using internal::NormalizedString;
using internal::Span;

struct PipelineTokenizer::Piece {
  NormalizedString text;
  const AddedToken* added = nullptr;  // set: the piece is this added token
  Span span;                          // with `added`: its input bytes
};

namespace {

bool IsWhiteSpace(char32_t cp) {
  return u_hasBinaryProperty(static_cast<UChar32>(cp), UCHAR_WHITE_SPACE) != 0;
}

// Rust regex's \w: Alphabetic, marks, decimal numbers, connector punctuation, join controls.
bool IsWordChar(char32_t cp) {
  const auto c = static_cast<UChar32>(cp);
  if (u_hasBinaryProperty(c, UCHAR_ALPHABETIC) || u_hasBinaryProperty(c, UCHAR_JOIN_CONTROL)) {
    return true;
  }
  switch (u_charType(c)) {
    case U_NON_SPACING_MARK:
    case U_COMBINING_SPACING_MARK:
    case U_ENCLOSING_MARK:
    case U_DECIMAL_DIGIT_NUMBER:
    case U_CONNECTOR_PUNCTUATION:
      return true;
    default:
      return false;
  }
}

// Start of the character that ends just before `pos`.
size_t PrevCharStart(std::string_view s, size_t pos) {
  size_t p = pos - 1;
  while (p > 0 && (static_cast<unsigned char>(s[p]) & 0xC0) == 0x80) --p;
  return p;
}

char32_t CharAt(std::string_view s, size_t pos) {
  char32_t cp = 0;
  internal::DecodeUtf8(s, pos, &cp);
  return cp;
}

// The whitespace run that ends at `end` starts here (`\s*$` on s[..end]).
size_t TrailingSpaceStart(std::string_view s, size_t end) {
  while (end > 0) {
    const size_t p = PrevCharStart(s, end);
    if (!IsWhiteSpace(CharAt(s, p))) break;
    end = p;
  }
  return end;
}

// The whitespace run that starts at `begin` ends here (`^\s*` on s[begin..]).
size_t LeadingSpaceEnd(std::string_view s, size_t begin) {
  char32_t cp;
  while (begin < s.size()) {
    const int len = internal::DecodeUtf8(s, begin, &cp);
    if (len == 0 || !IsWhiteSpace(cp)) break;
    begin += len;
  }
  return begin;
}

// HF byte_level::process_offsets on one token.
void TrimOffsets(std::string_view token, bool first, bool add_prefix_space, Span* span) {
  std::vector<char32_t> cps;
  char32_t cp;
  for (size_t pos = 0; pos < token.size();) {
    const int len = internal::DecodeUtf8(token, pos, &cp);
    if (len == 0) return;
    cps.push_back(cp);
    pos += len;
  }
  const auto is_space = [](char32_t c) { return c == 0x120 || IsWhiteSpace(c); };  // 'Ġ'
  size_t leading = 0, trailing = 0;
  while (leading < cps.size() && is_space(cps[leading])) ++leading;
  while (trailing < cps.size() && is_space(cps[cps.size() - 1 - trailing])) ++trailing;
  if (leading > 0) {
    if ((first || span->begin == 0) && add_prefix_space && leading == 1) leading = 0;
    span->begin = std::min(span->begin + static_cast<int32_t>(leading), span->end);
  }
  if (trailing > 0 && span->end >= static_cast<int32_t>(trailing)) {
    span->end = std::max(span->end - static_cast<int32_t>(trailing), span->begin);
  }
}

}  // namespace

PipelineTokenizer::PipelineTokenizer(PipelineParts parts) : parts_(std::move(parts)) {
  vocab_size_ = parts_.model->vocab_size();
  for (const AddedToken& token : parts_.added_tokens) {
    vocab_size_ = std::max<int64_t>(vocab_size_, static_cast<int64_t>(token.id) + 1);
    if (token.content.empty()) continue;
    if (!token.normalized) {
      raw_patterns_.push_back({token.content, &token});
      continue;
    }
    // HF matches a normalized token by its normalised form.
    NormalizedString s(token.content, 0);
    if (parts_.normalizer) parts_.normalizer->Normalize(&s);
    if (!s.empty()) normalized_patterns_.push_back({s.text(), &token});
  }
  for (auto* patterns : {&raw_patterns_, &normalized_patterns_}) {
    std::stable_sort(patterns->begin(), patterns->end(), [](const Pattern& a, const Pattern& b) {
      return a.text.size() > b.text.size();
    });
  }
}

int32_t PipelineTokenizer::cls_id() const {
  return parts_.post.prefix.empty() ? -1 : parts_.post.prefix.front();
}
int32_t PipelineTokenizer::sep_id() const {
  return parts_.post.suffix.empty() ? -1 : parts_.post.suffix.back();
}

// HF AddedVocabulary::find_matches: leftmost-longest matches, then single_word, lstrip and
// rstrip; the text between matches stays as pieces.
void PipelineTokenizer::SplitAdded(NormalizedString s, const std::vector<Pattern>& patterns,
                                   std::vector<Piece>* out) const {
  const std::string& text = s.text();
  if (patterns.empty()) {
    if (!text.empty()) out->push_back({std::move(s), nullptr, {}});
    return;
  }
  std::array<bool, 256> first_byte{};
  for (const Pattern& p : patterns) first_byte[static_cast<unsigned char>(p.text[0])] = true;
  const auto push_text = [&](size_t begin, size_t end) {
    if (begin < end) out->push_back({s.Slice(begin, end), nullptr, {}});
  };
  size_t start_offset = 0;
  for (size_t pos = 0; pos < text.size();) {
    const Pattern* match = nullptr;
    if (first_byte[static_cast<unsigned char>(text[pos])]) {
      for (const Pattern& p : patterns) {
        if (text.compare(pos, p.text.size(), p.text) == 0) {
          match = &p;
          break;
        }
      }
    }
    if (match == nullptr) {
      ++pos;
      continue;
    }
    size_t start = pos;
    size_t stop = pos + match->text.size();
    pos = stop;
    const AddedToken& token = *match->token;
    if (token.single_word) {
      const bool start_space = start == 0 || !IsWordChar(CharAt(text, PrevCharStart(text, start)));
      const bool stop_space = stop == text.size() || !IsWordChar(CharAt(text, stop));
      if (!start_space || !stop_space) continue;
    }
    if (token.lstrip) start = std::max(TrailingSpaceStart(text, start), start_offset);
    if (token.rstrip) stop = LeadingSpaceEnd(text, stop);
    if (start_offset < start) push_text(start_offset, start);
    out->push_back({s.Slice(start, stop), &token, s.OriginalSpan(start, stop)});
    start_offset = stop;
  }
  push_text(start_offset, text.size());
}

absl::StatusOr<Encoding> PipelineTokenizer::Encode(std::string_view text) const {
  if (text.size() > static_cast<size_t>(std::numeric_limits<int32_t>::max())) {
    return absl::InvalidArgumentError("text is longer than 2 GiB");
  }
  char32_t cp;
  for (size_t pos = 0; pos < text.size();) {
    const int len = internal::DecodeUtf8(text, pos, &cp);
    if (len == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "text is not valid UTF-8: bad byte 0x",
          absl::Hex(static_cast<unsigned char>(text[pos]), absl::kZeroPad2), " at byte offset ",
          pos));
    }
    pos += len;
  }

  Encoding encoding;
  encoding.ids.reserve(text.size() / 4 + 2);
  encoding.offsets.reserve(text.size() / 4 + 2);
  const PostProcessing& post = parts_.post;
  for (int32_t id : post.prefix) {
    encoding.ids.push_back(id);
    encoding.offsets.emplace_back(0, 0);
  }
  const size_t first_token = encoding.ids.size();
  // `token` is the token's text, which offset trimming looks at.
  const auto emit = [&](int32_t id, Span span, std::string_view token) {
    if (post.trim_offsets) {
      TrimOffsets(token, encoding.ids.size() == first_token, post.trim_add_prefix_space, &span);
    }
    encoding.ids.push_back(id);
    encoding.offsets.emplace_back(span.begin, span.end);
  };

  std::vector<Piece> raw;
  if (!text.empty()) SplitAdded(NormalizedString(text, 0), raw_patterns_, &raw);
  std::vector<Piece> pieces;
  std::vector<internal::PieceToken> piece_tokens;
  const internal::PieceSink tokenize = [&](NormalizedString word) {
    piece_tokens.clear();
    parts_.model->Tokenize(word.text(), &piece_tokens);
    for (const internal::PieceToken& t : piece_tokens) {
      emit(t.id, word.OriginalSpan(t.begin, t.end), parts_.model->IdToToken(t.id));
    }
  };
  for (Piece& raw_piece : raw) {
    if (raw_piece.added != nullptr) {
      // HF's token text is what matched, spaces taken by lstrip/rstrip included.
      emit(raw_piece.added->id, raw_piece.span, raw_piece.text.text());
      continue;
    }
    if (parts_.normalizer) parts_.normalizer->Normalize(&raw_piece.text);
    pieces.clear();
    SplitAdded(std::move(raw_piece.text), normalized_patterns_, &pieces);
    for (Piece& piece : pieces) {
      if (piece.added != nullptr) {
        emit(piece.added->id, piece.span, piece.text.text());
        continue;
      }
      if (parts_.pre_tokenizer) {
        parts_.pre_tokenizer->PreTokenize(std::move(piece.text), tokenize);
      } else {
        tokenize(std::move(piece.text));
      }
    }
  }
  for (int32_t id : post.suffix) {
    encoding.ids.push_back(id);
    encoding.offsets.emplace_back(0, 0);
  }
  return encoding;
}

}  // namespace longenc::tokenizer
