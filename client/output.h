// Writers of embeddings for `longenc embed --format json|jsonl|npy`: all at once
// (WriteEmbeddings) or one document at a time as results arrive (EmbeddingWriter). Over a
// std::ostream; thread-compatible.
#ifndef LONGENC_CLIENT_OUTPUT_H_
#define LONGENC_CLIENT_OUTPUT_H_

#include <cstdint>
#include <iosfwd>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/chunk_rows.h"
#include "longenc/v1/encoder.pb.h"

namespace longenc::client {

// json: one array of {"id","embedding","num_tokens","truncated"}; jsonl: one such object a
// line (the same lines longenc-encode writes); npy: a float32 [N, dim] NumPy array (version 1.0
// header), rows in input order, nothing else.
absl::Status WriteEmbeddings(const std::vector<longenc::v1::Embedding>& embeddings,
                             const std::string& format, std::ostream& out);

// Writes documents in input order as they arrive (each line/row is flushed at once, so a
// killed run leaves every finished document in the output).
class EmbeddingWriter {
 public:
  virtual ~EmbeddingWriter() = default;
  // The embedding of document `index`; indices only grow.
  virtual absl::Status Write(int64_t index, const longenc::v1::Embedding& embedding) = 0;
  // Document `index` failed: json/jsonl leave it out, npy writes a row of NaN in its place.
  virtual absl::Status Fail(int64_t index) = 0;
  // No more documents: npy fills the rows up to its row count with NaN, json closes the array.
  virtual absl::Status Finish() = 0;
};

// A writer of `format` on `out`. npy needs the row count and width up front: `rows`
// (documents of the input) and `dim` (GetInfo.embedding_dim).
absl::StatusOr<std::unique_ptr<EmbeddingWriter>> NewEmbeddingWriter(const std::string& format,
                                                                     std::ostream* out,
                                                                     int64_t rows, int64_t dim);

// `longenc embed --chunk/--spans`: each embedded document's late chunks as rows of `rows`
// (common/chunk_rows.h; the row id is Embedding.id); a failed document writes no row.
std::unique_ptr<EmbeddingWriter> NewChunkRowsWriter(std::unique_ptr<ChunkRowWriter> rows);

// Rewrites rows of an existing float32 [rows, dim] npy file in place (`longenc embed --resume`
// fills the rows a failed run left NaN). `data_offset` = the size of its header.
std::unique_ptr<EmbeddingWriter> NewNpyPatcher(std::iostream* file, int64_t data_offset,
                                               int64_t rows, int64_t dim);

}  // namespace longenc::client

#endif  // LONGENC_CLIENT_OUTPUT_H_
