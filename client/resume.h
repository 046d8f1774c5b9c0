// `longenc embed --resume`: what an earlier run already wrote to --output, so that only the
// rest is embedded. A run killed mid-write is handled: a JSONL file loses its cut-off last line,
// an npy file gets its missing tail rows as NaN.
//
// Thread-compatible (plain functions over files).
#ifndef LONGENC_CLIENT_RESUME_H_
#define LONGENC_CLIENT_RESUME_H_

#include <cstdint>
#include <string>
#include <unordered_set>
#include <vector>

#include "absl/status/statusor.h"

namespace longenc::client {

// The "id" of every complete line of a JSONL output; a last line without its newline is cut
// off the file. A missing file is an empty set.
absl::StatusOr<std::unordered_set<std::string>> PrepareJsonlResume(const std::string& path);

struct NpyResume {
  int64_t rows = 0;
  int64_t dim = 0;
  int64_t data_offset = 0;    // bytes before row 0
  std::vector<bool> missing;  // per row: NaN (failed, never sent or cut off)
};

// Reads the header and rows of a float32 [rows, dim] npy output; rows a killed run did not
// write are appended as NaN first, so the file has all its rows again.
absl::StatusOr<NpyResume> PrepareNpyResume(const std::string& path);

// `longenc embed --chunk/--spans --resume`: chunk rows (common/chunk_rows.h) already written.
// Rows of one document are consecutive, so only the last document can be cut short (fewer
// rows than its "chunks", or a line without its newline): its rows are removed, so that it is
// embedded again whole.
struct ChunkRowsResume {
  std::unordered_set<std::string> ids;  // documents whose rows are all there
  int64_t rows = 0;                     // rows kept
  int64_t dim = 0;                      // npy: the width of its rows
};

// A jsonl output of chunk rows; a missing file is an empty output.
absl::StatusOr<ChunkRowsResume> PrepareJsonlChunkResume(const std::string& path);

// An npy output of chunk rows and its sidecar (ChunkRowsSidecar): both cut back to the last
// whole document the two agree on, and the npy header rewritten with that row count. Both must
// exist.
absl::StatusOr<ChunkRowsResume> PrepareNpyChunkResume(const std::string& path);

}  // namespace longenc::client

#endif  // LONGENC_CLIENT_RESUME_H_
