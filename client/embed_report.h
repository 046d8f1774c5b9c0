// What `longenc embed` tells its user on stderr: progress (documents done / total, tokens/s),
// the lines that were not embedded ("7,18,401-") and the command that resumes the run.
//
// Thread-compatible: used from the thread that runs the embed command.
#ifndef LONGENC_CLIENT_EMBED_REPORT_H_
#define LONGENC_CLIENT_EMBED_REPORT_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace longenc::client {

// `arg` quoted for a POSIX shell when it needs it.
std::string ShellQuote(const std::string& arg);

// The command line `argv` with --resume added, each word shell-quoted. An --api_key value is
// left out (the text goes to a terminal or a log): the key then comes from $LONGENC_API_KEY.
std::string ResumeCommand(const std::vector<std::string>& argv);

// Increasing line numbers as "3,17-20,45", or with an open end "3,17-".
class LineRanges {
 public:
  void Add(int64_t line);
  // Every line from `line` on (the lines never sent); the last call.
  void AddFrom(int64_t line);
  bool empty() const { return ranges_.empty(); }
  std::string ToString() const;

 private:
  std::vector<std::pair<int64_t, int64_t>> ranges_;
  bool open_end_ = false;
};

// Documents done / total, failures and tokens per second on stderr: one line redrawn on a
// terminal (at most 5 times a second), a line every 5 s otherwise.
class Progress {
 public:
  // `total` < 0: unknown.
  Progress(bool enabled, int64_t total);
  // `skipped`: documents a --resume found already done so far.
  void Update(int64_t done, int64_t skipped, int64_t failed, int64_t tokens, bool last = false);

 private:
  const bool enabled_;
  const bool tty_;
  const int64_t total_;
  const absl::Time start_ = absl::Now();
  absl::Time shown_ = absl::InfinitePast();
};

}  // namespace longenc::client

#endif  // LONGENC_CLIENT_EMBED_REPORT_H_
