#include "model/chunking.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace longenc::model {

TokenRange ContentTokens(absl::Span<const int32_t> ids, int32_t cls_id, int32_t sep_id) {
  TokenRange r{0, static_cast<int64_t>(ids.size())};
  if (r.end > r.begin && cls_id >= 0 && ids[r.begin] == cls_id) ++r.begin;
  if (r.end > r.begin && sep_id >= 0 && ids[r.end - 1] == sep_id) --r.end;
  return r;
}

int64_t CountFixedChunks(TokenRange content, int64_t max_tokens, int64_t overlap_tokens) {
  const int64_t length = content.end - content.begin;
  if (length <= 0) return 0;
  const int64_t step = max_tokens - overlap_tokens;
  // One chunk, plus one per step needed until a chunk's end reaches the content's end.
  return 1 + (std::max<int64_t>(0, length - max_tokens) + step - 1) / step;
}

std::vector<TokenRange> FixedChunks(TokenRange content, int64_t max_tokens,
                                    int64_t overlap_tokens) {
  std::vector<TokenRange> chunks;
  if (content.end <= content.begin) return chunks;
  chunks.reserve(static_cast<size_t>(CountFixedChunks(content, max_tokens, overlap_tokens)));
  const int64_t step = max_tokens - overlap_tokens;
  for (int64_t start = content.begin;; start += step) {
    const int64_t end = std::min(start + max_tokens, content.end);
    chunks.push_back({start, end});
    if (end == content.end) break;
  }
  return chunks;
}

absl::StatusOr<std::vector<TokenRange>> SpanChunks(
    absl::Span<const std::pair<int32_t, int32_t>> offsets, TokenRange content,
    int64_t text_bytes, absl::Span<const std::pair<int32_t, int32_t>> spans) {
  std::vector<TokenRange> chunks;
  chunks.reserve(spans.size());
  for (size_t k = 0; k < spans.size(); ++k) {
    const auto [start, end] = spans[k];
    const std::string name = absl::StrCat("spans[", k, "] = [", start, ", ", end, ")");
    if (start < 0 || end > text_bytes || start >= end) {
      return absl::InvalidArgumentError(absl::StrCat(
          name, " is out of range: need 0 <= start < end <= ", text_bytes,
          " (the text's length in UTF-8 bytes)"));
    }
    if (k > 0 && (start < spans[k - 1].first || end < spans[k - 1].second)) {
      return absl::InvalidArgumentError(absl::StrCat(
          name, " is unordered: starts and ends must not decrease (spans[", k - 1, "] = [",
          spans[k - 1].first, ", ", spans[k - 1].second, "))"));
    }
    // Offsets never decrease, so the overlapping tokens are contiguous: the first token that
    // ends after `start`, up to the last that begins before `end`.
    const auto* first = std::partition_point(
        offsets.begin() + content.begin, offsets.begin() + content.end,
        [start = start](const std::pair<int32_t, int32_t>& o) { return o.second <= start; });
    const auto* last = std::partition_point(
        first, offsets.begin() + content.end,
        [end = end](const std::pair<int32_t, int32_t>& o) { return o.first < end; });
    if (first == last) {
      return absl::InvalidArgumentError(absl::StrCat(
          name, " overlaps no token (only whitespace or control characters, or text cut off "
                "by truncation)"));
    }
    chunks.push_back({first - offsets.begin(), last - offsets.begin()});
  }
  return chunks;
}

}  // namespace longenc::model
