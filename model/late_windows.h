// Long late chunking's window plan (docs/API.md, "Late chunking"): a document longer than the
// position table is encoded in windows of the table's length, each framed by the document's
// first and last token. The windows that tile the document give the document embedding (as
// position mode "chunk" always did); when the document has late chunks, windows shifted by
// half a window are added, and each chunk is pooled from the one window where it has the most
// context on both sides. Torch-free, so the plan is unit-tested alone.
//
// Thread-safety: pure functions; safe from any thread.
#ifndef LONGENC_MODEL_LATE_WINDOWS_H_
#define LONGENC_MODEL_LATE_WINDOWS_H_

#include <cstdint>
#include <vector>

#include "absl/types/span.h"
#include "model/backend.h"

namespace longenc::model {

// Tokens [begin, end) of a chunk whose states come from one window.
struct LateSegment {
  int64_t chunk = 0;  // index into the chunks given to PlanLateWindows
  int64_t begin = 0;
  int64_t end = 0;
};

// One window: document tokens [begin, end) (within [1, n - 1)) between the document's first
// and last token, so window position p holds document token begin - 1 + p. Its first position
// is document token 0 only when begin == 1, its last is token n - 1 only when end == n - 1.
struct LateWindow {
  int64_t begin = 0;
  int64_t end = 0;
  bool tiling = false;  // one of the non-overlapping windows that give the document embedding
  std::vector<LateSegment> segments;  // what late chunks take from this window
};

// The document tokens window `w` holds, frame included where it is the document's own:
// [begin, end), widened to 0 when begin == 1 and to n when end == n - 1.
TokenRange Covered(const LateWindow& w, int64_t num_tokens);

// Windows (ordered by begin) for a document of `num_tokens` tokens ([CLS] and [SEP] included)
// and `window` tokens between the frame (the position table minus 2), with `chunks` (token
// ranges within [0, num_tokens)) assigned:
// - tiling windows start at 1, 1 + window, 1 + 2 * window, ... (the last one shorter);
// - with chunks, shifted windows start at 1 + window / 2 + k * window; one that lies inside a
//   tiling window, or that no chunk uses, is left out;
// - a chunk of at most window / 2 + 1 tokens (rounded down) lies whole in some window: it is
//   taken from the window where min(context before, context after) is largest
//   (then the larger sum, then the earlier window); a longer chunk takes each token from the
//   window where that token is most central (the earlier on a tie), in segments.
// Every token of every chunk is in exactly one segment. Requires window >= 2.
std::vector<LateWindow> PlanLateWindows(int64_t num_tokens, int64_t window,
                                        absl::Span<const TokenRange> chunks);

}  // namespace longenc::model

#endif  // LONGENC_MODEL_LATE_WINDOWS_H_
