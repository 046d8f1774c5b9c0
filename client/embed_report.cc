#include "client/embed_report.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace longenc::client {

std::string ShellQuote(const std::string& arg) {
  if (!arg.empty() && arg.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                            "0123456789_-./=:,@%+") == std::string::npos) {
    return arg;
  }
  std::string quoted = "'";
  for (char c : arg) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

std::string ResumeCommand(const std::vector<std::string>& argv) {
  std::vector<std::string> words;
  bool has_resume = false;
  for (size_t i = 0; i < argv.size(); ++i) {
    if (absl::StartsWith(argv[i], "--api_key") || absl::StartsWith(argv[i], "-api_key")) {
      if (argv[i].find('=') == std::string::npos) ++i;  // "--api_key KEY"
      continue;
    }
    has_resume = has_resume || argv[i] == "--resume" || argv[i] == "--resume=true";
    words.push_back(ShellQuote(argv[i]));
  }
  if (!has_resume) words.push_back("--resume");
  return absl::StrJoin(words, " ");
}

void LineRanges::Add(int64_t line) {
  if (!ranges_.empty() && ranges_.back().second + 1 == line) {
    ranges_.back().second = line;
  } else {
    ranges_.emplace_back(line, line);
  }
}

void LineRanges::AddFrom(int64_t line) {
  if (ranges_.empty() || ranges_.back().second + 1 != line) ranges_.emplace_back(line, line);
  open_end_ = true;
}

std::string LineRanges::ToString() const {
  std::vector<std::string> parts;
  for (size_t i = 0; i < ranges_.size(); ++i) {
    const auto [first, last] = ranges_[i];
    if (open_end_ && i + 1 == ranges_.size()) {
      parts.push_back(absl::StrCat(first, "-"));
    } else {
      parts.push_back(first == last ? absl::StrCat(first) : absl::StrCat(first, "-", last));
    }
  }
  return absl::StrJoin(parts, ",");
}

Progress::Progress(bool enabled, int64_t total)
    : enabled_(enabled), tty_(isatty(2) != 0), total_(total) {}

void Progress::Update(int64_t done, int64_t skipped, int64_t failed, int64_t tokens, bool last) {
  if (!enabled_) return;
  const absl::Time now = absl::Now();
  if (!last && now - shown_ < (tty_ ? absl::Milliseconds(200) : absl::Seconds(5))) return;
  shown_ = now;
  const double seconds = std::max(1e-3, absl::ToDoubleSeconds(now - start_));
  std::string line = absl::StrCat(skipped + done);
  if (total_ >= 0) {
    absl::StrAppend(&line, "/", total_, " documents (",
                    (skipped + done) * 100 / std::max<int64_t>(total_, 1), "%)");
  } else {
    absl::StrAppend(&line, " documents");
  }
  if (skipped > 0) absl::StrAppend(&line, ", ", skipped, " already in the output");
  if (failed > 0) absl::StrAppend(&line, ", ", failed, " failed");
  absl::StrAppend(&line, ", ", static_cast<int64_t>(tokens / seconds), " tokens/s");
  if (tty_) {
    std::fprintf(stderr, "\r%-78s%s", line.c_str(), last ? "\n" : "");
  } else {
    std::fprintf(stderr, "%s\n", line.c_str());
  }
}

}  // namespace longenc::client
