// Late chunks as output rows, shared by `longenc embed --chunk/--spans` and longenc-encode:
// one row per chunk with its document's id, the chunk's index and count, its token and byte
// ranges, and its vector.
//   jsonl: {"id", "chunk", "chunks", "token_start", "token_end", "char_start", "char_end",
//           "embedding"[, "truncated": true]} a line; json: one array of them;
//   npy:   a float32 [rows, dim] file whose row r is the r-th line of a sidecar
//          (ChunkRowsSidecar) holding the same objects with "row" instead of "embedding".
// A document's rows are written together and flushed, and the npy header is rewritten with the
// row count after each document, so a killed run leaves whole documents readable (the last one
// possibly cut short: `chunks` says how many rows it has).
//
// Thread-compatible.
#ifndef LONGENC_COMMON_CHUNK_ROWS_H_
#define LONGENC_COMMON_CHUNK_ROWS_H_

#include <cstdint>
#include <iosfwd>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "nlohmann/json.hpp"

namespace longenc {

struct ChunkRow {
  nlohmann::json id;   // the document's id, as the input gave it
  int64_t chunk = 0;   // 0-based index among the document's chunks
  int64_t chunks = 0;  // how many the document has
  int64_t token_start = 0, token_end = 0;  // Tokenize's indices, [CLS] = 0, end exclusive
  int64_t char_start = 0, char_end = 0;    // UTF-8 byte offsets in the text (0, 0 for ids)
  bool truncated = false;                  // the document was truncated
  absl::Span<const float> values;
};

class ChunkRowWriter {
 public:
  virtual ~ChunkRowWriter() = default;
  // All rows of one document, in chunk order.
  virtual absl::Status WriteDocument(absl::Span<const ChunkRow> rows) = 0;
  // No more rows (json closes its array).
  virtual absl::Status Finish() = 0;
};

// The row metadata without the vector, as the sidecar holds it ("row" = the npy row).
nlohmann::ordered_json ChunkRowJson(const ChunkRow& row);

// A jsonl or json writer on `out`.
absl::StatusOr<std::unique_ptr<ChunkRowWriter>> NewChunkRowWriter(const std::string& format,
                                                                  std::ostream* out);

// An npy writer of rows of `dim` values: `npy` (opened for reading and writing) holds a
// float32 [rows, dim] array with a header of kChunkNpyHeaderBytes, `sidecar` its rows'
// metadata. `rows` already written (a resumed run): both files end right after them.
std::unique_ptr<ChunkRowWriter> NewNpyChunkRowWriter(std::iostream* npy, std::ostream* sidecar,
                                                     int64_t dim, int64_t rows);

// The sidecar of an npy output: "<path>.rows.jsonl".
std::string ChunkRowsSidecar(const std::string& npy_path);

// The npy (version 1.0) header of a float32 [rows, dim] C-order array, padded to a multiple of
// 64 bytes and to at least `min_bytes` (so it can be rewritten in place as rows grow).
std::string NpyHeader(int64_t rows, int64_t dim, size_t min_bytes = 0);
inline constexpr size_t kChunkNpyHeaderBytes = 128;

}  // namespace longenc

#endif  // LONGENC_COMMON_CHUNK_ROWS_H_
