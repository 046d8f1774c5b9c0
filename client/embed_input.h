// The documents of `longenc embed`: texts given as arguments, files (--file, one document
// each), a JSONL file (--jsonl, one document a line) or stdin lines. The JSONL file is read one
// line at a time, so a corpus is never held in memory whole; stdin is read into memory only when
// the number of documents must be known before the first result (npy output).
//
// A line that cannot be read (not a JSON object, no "text"/"token_ids", invalid UTF-8) becomes
// a document with `input_error` set: it fails in its place and the run goes on.
//
// Thread-compatible.
#ifndef LONGENC_CLIENT_EMBED_INPUT_H_
#define LONGENC_CLIENT_EMBED_INPUT_H_

#include <cstdint>
#include <deque>
#include <fstream>
#include <functional>
#include <istream>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "client/batch_embed.h"

namespace longenc::client {

struct InputSpec {
  std::vector<std::string> texts;  // arguments, one document each
  std::vector<std::string> files;  // --file
  std::string jsonl;               // --jsonl: a path, "-" (stdin) or "" (none)
  // Read stdin to the end before the first document so that total() is known.
  bool need_total = false;
  // --spans: every JSONL line is a text with "spans": [[start, end], ...] (UTF-8 byte offsets,
  // EmbedRequest.chunking.spans); a line without them fails in its place.
  bool spans = false;
  // Documents given neither as texts, files nor jsonl come from stdin lines (plain text). Tests
  // pass their own stream.
  std::istream* stdin_stream = nullptr;  // null: std::cin
};

class EmbedInput {
 public:
  // Reads the texts and files (an unreadable file or invalid UTF-8 there is an
  // INVALID_ARGUMENT naming it) and opens the JSONL file, counting its lines.
  static absl::StatusOr<std::unique_ptr<EmbedInput>> Open(const InputSpec& spec);

  // The next document not skipped; false at the end of the input.
  bool Next(InputDocument* d);

  // Documents not handed out by Next but skipped because `skip` said so (--resume: already in
  // the output). Set before the first Next.
  void SetSkip(std::function<bool(const InputDocument&)> skip) { skip_ = std::move(skip); }
  int64_t skipped() const { return skipped_; }

  // Documents in the whole input (skipped ones included); -1 when not known (stdin read as it
  // comes).
  int64_t total() const { return total_; }

  // Where a document came from: "docs.jsonl:17", "stdin:3", "argument 2", "a.txt".
  std::string Where(const InputDocument& d) const;
  // True when documents from `d` on are numbered lines (JSONL or stdin), so "lines N-" makes
  // sense to a reader.
  bool IsLine(const InputDocument& d) const { return d.index >= first_line_document_; }
  // The name of the line source: the --jsonl path or "stdin"; "" without one.
  const std::string& line_source() const { return line_source_; }

 private:
  EmbedInput() = default;
  bool ReadRaw(std::string* line);  // the next raw line of the line source
  void Parse(const std::string& line, InputDocument* d) const;

  std::deque<InputDocument> ready_;  // arguments and files, read up front
  std::vector<std::string> files_;
  int64_t first_line_document_ = 0;  // index of the first document of the line source
  std::string line_source_;
  bool json_lines_ = false;  // JSON objects, else plain text lines
  bool spans_ = false;       // InputSpec::spans
  std::ifstream file_;
  std::istream* in_ = nullptr;  // the line source, or null
  std::deque<std::string> buffered_;  // stdin read to the end (need_total)
  bool use_buffer_ = false;
  int64_t line_ = 0;      // lines read from the line source
  int64_t next_index_ = 0;
  int64_t total_ = -1;
  int64_t skipped_ = 0;
  std::function<bool(const InputDocument&)> skip_;
};

}  // namespace longenc::client

#endif  // LONGENC_CLIENT_EMBED_INPUT_H_
