// Late chunking's span rule: which tokens of a document each chunk pools (docs/API.md, "Late
// chunking"). Torch-free and proto-free, so the server computes spans before a batch runs and
// tests check the rule alone.
//
// Thread-safety: pure functions; safe from any thread.
#ifndef LONGENC_MODEL_CHUNKING_H_
#define LONGENC_MODEL_CHUNKING_H_

#include <cstdint>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "model/backend.h"

namespace longenc::model {

// The content tokens of a sequence: [begin, end) without the leading `cls_id` and the trailing
// `sep_id` (each stripped once, when present; -1 means the template adds none).
TokenRange ContentTokens(absl::Span<const int32_t> ids, int32_t cls_id, int32_t sep_id);

// How many chunks FixedChunks returns; requires max_tokens > 0 and
// 0 <= overlap_tokens < max_tokens. 0 for empty content.
int64_t CountFixedChunks(TokenRange content, int64_t max_tokens, int64_t overlap_tokens);

// Chunks of at most `max_tokens` content tokens: the first starts at content.begin, each next
// one max_tokens - overlap_tokens later; each ends max_tokens later or at content.end; the last
// is the first that reaches content.end. None for empty content. Same preconditions.
std::vector<TokenRange> FixedChunks(TokenRange content, int64_t max_tokens,
                                    int64_t overlap_tokens);

// One chunk per byte span [first, second) of the text: the content tokens whose byte range
// (`offsets`, one per token) overlaps it. Spans must be in range [0, text_bytes], non-empty,
// and ordered (start and end non-decreasing); InvalidArgument names "spans[k]" otherwise, or
// when a span overlaps no content token (e.g. whitespace, or text cut off by truncation).
absl::StatusOr<std::vector<TokenRange>> SpanChunks(
    absl::Span<const std::pair<int32_t, int32_t>> offsets, TokenRange content,
    int64_t text_bytes, absl::Span<const std::pair<int32_t, int32_t>> spans);

}  // namespace longenc::model

#endif  // LONGENC_MODEL_CHUNKING_H_
