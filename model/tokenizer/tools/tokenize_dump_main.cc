// longenc-tokenize-dump: tokenizes text lines from stdin with the model's tokenizer
// (tokenizer.json, else vocab.txt) and prints one JSON array of token ids per line, special
// tokens included, no truncation.
//
// Used by tests/python/test_tokenizer_parity.py and test_tokenizer_json_parity.py (against
// Hugging Face) and by
// bench/tokenizer_bench.sh (--stats --repeat). An input line that cannot be encoded prints
// {"error": "..."} so that output line i always belongs to input line i.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "common/usage.h"
#include "model/tokenizer/tokenizer.h"
#include "model/tokenizer/wordpiece.h"
#include "nlohmann/json.hpp"

ABSL_FLAG(std::string, model_dir, LONGENC_DEFAULT_MODEL_DIR,
          "Hugging Face model directory with tokenizer.json, or vocab.txt and "
          "tokenizer_config.json");
ABSL_FLAG(bool, vocab_txt, false,
          "With --model_dir: read vocab.txt and tokenizer_config.json even if tokenizer.json "
          "is there");
ABSL_FLAG(std::string, vocab, "",
          "Use this vocab.txt with the options below instead of --model_dir");
ABSL_FLAG(bool, lower_case, true, "With --vocab: do_lower_case");
ABSL_FLAG(std::string, strip_accents, "", "With --vocab: true, false or empty (= lower_case)");
ABSL_FLAG(bool, chinese, true, "With --vocab: tokenize_chinese_chars");
ABSL_FLAG(bool, json_input, false,
          "Each input line is a JSON string literal (so texts may hold newlines)");
ABSL_FLAG(bool, offsets, false,
          "Print {\"ids\": [...], \"offsets\": [[begin, end], ...]} (byte offsets)");
ABSL_FLAG(bool, stats, false, "Print lines, bytes, tokens, seconds and tokens/s to stderr");
ABSL_FLAG(bool, quiet, false, "Print nothing on stdout (benchmarking)");
ABSL_FLAG(int32_t, repeat, 1, "Encode the whole input this many times (benchmarking)");

namespace {

using longenc::tokenizer::Encoding;
using longenc::tokenizer::Tokenizer;
using longenc::tokenizer::WordPieceTokenizer;

absl::StatusOr<std::unique_ptr<Tokenizer>> Wrap(absl::StatusOr<WordPieceTokenizer> wordpiece) {
  if (!wordpiece.ok()) return wordpiece.status();
  return std::unique_ptr<Tokenizer>(std::make_unique<WordPieceTokenizer>(*std::move(wordpiece)));
}

void AppendEncoding(const Encoding& encoding, bool with_offsets, std::string* out) {
  out->append(with_offsets ? "{\"ids\":[" : "[");
  for (size_t i = 0; i < encoding.ids.size(); ++i) {
    absl::StrAppend(out, i ? "," : "", encoding.ids[i]);
  }
  out->push_back(']');
  if (with_offsets) {
    out->append(",\"offsets\":[");
    for (size_t i = 0; i < encoding.offsets.size(); ++i) {
      absl::StrAppend(out, i ? ",[" : "[", encoding.offsets[i].first, ",",
                      encoding.offsets[i].second, "]");
    }
    out->append("]}");
  }
  out->push_back('\n');
}

}  // namespace

int main(int argc, char** argv) {
  longenc::InstallUsage(
      "longenc-tokenize-dump",
      "Reads text lines on stdin, prints one JSON array of token ids per line.",
      {"model/tokenizer/tools/tokenize_dump_main.cc"});
  absl::ParseCommandLine(argc, argv);
  std::ios::sync_with_stdio(false);  // large inputs: no per-character stdio locking
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = absl::UnknownError("no tokenizer");
  if (const std::string vocab = absl::GetFlag(FLAGS_vocab); !vocab.empty()) {
    longenc::tokenizer::TokenizerOptions options;
    options.do_lower_case = absl::GetFlag(FLAGS_lower_case);
    options.tokenize_chinese_chars = absl::GetFlag(FLAGS_chinese);
    const std::string strip = absl::GetFlag(FLAGS_strip_accents);
    if (strip == "true" || strip == "false") {
      options.strip_accents = strip == "true";
    } else if (!strip.empty()) {
      std::cerr << "longenc-tokenize-dump: --strip_accents must be true, false or empty\n";
      return 2;
    }
    tokenizer = Wrap(WordPieceTokenizer::FromVocabFile(vocab, options));
  } else if (absl::GetFlag(FLAGS_vocab_txt)) {
    tokenizer = Wrap(WordPieceTokenizer::FromModelDir(absl::GetFlag(FLAGS_model_dir)));
  } else {
    tokenizer = longenc::tokenizer::LoadTokenizer(absl::GetFlag(FLAGS_model_dir));
  }
  if (!tokenizer.ok()) {
    std::cerr << "longenc-tokenize-dump: " << tokenizer.status() << "\n";
    return 1;
  }
  const bool json_input = absl::GetFlag(FLAGS_json_input);
  std::vector<std::string> lines;
  std::vector<std::string> errors;  // per line; non-empty when the input line is unusable
  for (std::string line; std::getline(std::cin, line);) {
    std::string error;
    if (json_input) {
      nlohmann::json value = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (value.is_string()) {
        line = value.get<std::string>();
      } else {
        error = "input line is not a JSON string";
        line.clear();
      }
    }
    lines.push_back(std::move(line));
    errors.push_back(std::move(error));
  }

  const bool quiet = absl::GetFlag(FLAGS_quiet);
  const bool with_offsets = absl::GetFlag(FLAGS_offsets);
  const int repeat = std::max(1, absl::GetFlag(FLAGS_repeat));
  int64_t tokens = 0, bytes = 0;
  double seconds = 0;
  std::string out;
  for (int r = 0; r < repeat; ++r) {
    for (size_t i = 0; i < lines.size(); ++i) {
      if (!errors[i].empty()) {
        if (!quiet && r == 0) out.append(nlohmann::json({{"error", errors[i]}}).dump() + "\n");
        continue;
      }
      const auto start = std::chrono::steady_clock::now();
      auto encoding = (*tokenizer)->Encode(lines[i]);
      seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      bytes += static_cast<int64_t>(lines[i].size());
      if (encoding.ok()) tokens += static_cast<int64_t>(encoding->ids.size());
      if (quiet || r > 0) continue;
      if (encoding.ok()) {
        AppendEncoding(*encoding, with_offsets, &out);
      } else {
        out.append(nlohmann::json({{"error", std::string(encoding.status().message())}})
                       .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) +
                   "\n");
      }
      if (out.size() > (1 << 20)) {
        std::cout << out;
        out.clear();
      }
    }
  }
  std::cout << out << std::flush;
  if (absl::GetFlag(FLAGS_stats)) {
    std::cerr << "lines=" << lines.size() * repeat << " bytes=" << bytes << " tokens=" << tokens
              << " seconds=" << seconds << " tokens_per_second="
              << (seconds > 0 ? static_cast<double>(tokens) / seconds : 0.0)
              << " MB_per_second=" << (seconds > 0 ? bytes / seconds / 1e6 : 0.0) << "\n";
  }
  return 0;
}
