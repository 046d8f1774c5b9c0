#include "client/embed_input.h"

#include <iostream>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "client/client.h"
#include "nlohmann/json.hpp"

namespace longenc::client {
namespace {

absl::Status CheckUtf8(const std::string& text, const std::string& where) {
  size_t bad = 0;
  if (IsValidUtf8(text, &bad)) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(where, " is not valid UTF-8 (byte ", bad, ")"));
}

// --spans: "spans": [[start, end], ...] of a text line into d->spans. The server checks the
// values themselves (in range, ordered, over a token) and names the span it refuses.
absl::Status ParseSpans(const nlohmann::json& j, InputDocument* d) {
  if (!d->document.has_text()) {
    return absl::InvalidArgumentError(
        "--spans: spans are byte offsets into \"text\"; this line has token_ids");
  }
  if (!j.contains("spans") || !j["spans"].is_array() || j["spans"].empty()) {
    return absl::InvalidArgumentError(
        "--spans: needs \"spans\": [[start, end], ...] (UTF-8 byte offsets of the text)");
  }
  for (const auto& span : j["spans"]) {
    if (!span.is_array() || span.size() != 2 || !span[0].is_number_integer() ||
        !span[1].is_number_integer()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--spans: each span is [start, end] (two integers), not ", span.dump()));
    }
    d->spans.emplace_back(span[0].get<int32_t>(), span[1].get<int32_t>());
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<EmbedInput>> EmbedInput::Open(const InputSpec& spec) {
  std::unique_ptr<EmbedInput> input(new EmbedInput());
  int64_t index = 0;
  for (size_t i = 0; i < spec.texts.size(); ++i, ++index) {
    if (absl::Status s = CheckUtf8(spec.texts[i], absl::StrCat("argument ", i + 1)); !s.ok()) {
      return s;
    }
    InputDocument d;
    d.index = index;
    d.line = static_cast<int64_t>(i) + 1;
    d.document.set_text(spec.texts[i]);
    d.document.set_id(std::to_string(index));
    d.tokens = EstimateTokens(spec.texts[i]);
    input->ready_.push_back(std::move(d));
  }
  for (size_t i = 0; i < spec.files.size(); ++i, ++index) {
    const std::string& path = spec.files[i];
    std::ifstream in(path, std::ios::binary);
    if (!in) return absl::InvalidArgumentError(absl::StrCat("cannot read --file ", path));
    std::stringstream ss;
    ss << in.rdbuf();
    if (absl::Status s = CheckUtf8(ss.str(), path); !s.ok()) return s;
    InputDocument d;
    d.index = index;
    d.line = static_cast<int64_t>(i) + 1;
    d.tokens = EstimateTokens(ss.str());
    d.document.set_text(ss.str());
    d.document.set_id(path);
    input->ready_.push_back(std::move(d));
  }
  input->files_ = spec.files;
  input->spans_ = spec.spans;
  input->first_line_document_ = index;
  input->next_index_ = index;
  std::istream* std_in = spec.stdin_stream != nullptr ? spec.stdin_stream : &std::cin;
  if (!spec.jsonl.empty()) {
    input->json_lines_ = true;
    if (spec.jsonl == "-") {
      input->in_ = std_in;
      input->line_source_ = "stdin";
    } else {
      input->file_.open(spec.jsonl, std::ios::binary);
      if (!input->file_) {
        return absl::InvalidArgumentError(absl::StrCat("cannot read --jsonl ", spec.jsonl));
      }
      input->in_ = &input->file_;
      input->line_source_ = spec.jsonl;
      // Counted once up front (cheap next to embedding), so progress and npy know the total.
      std::ifstream count(spec.jsonl, std::ios::binary);
      std::string line;
      int64_t lines = 0;
      while (std::getline(count, line)) lines += line.empty() ? 0 : 1;
      input->total_ = index + lines;
    }
  } else if (spec.texts.empty() && spec.files.empty()) {
    input->in_ = std_in;
    input->line_source_ = "stdin";
  } else {
    input->total_ = index;
  }
  if (input->in_ == std_in && spec.need_total) {
    std::string line;
    int64_t lines = 0;
    while (std::getline(*std_in, line)) {
      lines += line.empty() ? 0 : 1;
      input->buffered_.push_back(std::move(line));
    }
    input->use_buffer_ = true;
    input->total_ = index + lines;
  }
  return input;
}

bool EmbedInput::ReadRaw(std::string* line) {
  if (use_buffer_) {
    if (buffered_.empty()) return false;
    *line = std::move(buffered_.front());
    buffered_.pop_front();
  } else if (in_ == nullptr || !std::getline(*in_, *line)) {
    return false;
  }
  ++line_;
  return true;
}

void EmbedInput::Parse(const std::string& line, InputDocument* d) const {
  const std::string default_id = std::to_string(d->index);
  d->document.set_id(default_id);
  if (!json_lines_) {
    d->input_error = CheckUtf8(line, "the line");
    if (d->input_error.ok()) {
      d->tokens = EstimateTokens(line);
      d->document.set_text(line);
    }
    return;
  }
  nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    d->input_error = absl::InvalidArgumentError("not a JSON object");
    return;
  }
  if (j.contains("id")) {
    d->document.set_id(j["id"].is_string() ? j["id"].get<std::string>() : j["id"].dump());
  }
  if (j.contains("text") && j["text"].is_string()) {
    std::string text = j["text"].get<std::string>();
    d->input_error = CheckUtf8(text, "\"text\"");
    d->tokens = EstimateTokens(text);
    d->document.set_text(std::move(text));
  } else if (j.contains("token_ids") && j["token_ids"].is_array()) {
    for (const auto& t : j["token_ids"]) {
      if (!t.is_number_integer()) {
        d->input_error = absl::InvalidArgumentError("token_ids must be integers");
        return;
      }
      d->document.mutable_tokens()->add_ids(t.get<int32_t>());
    }
    d->tokens = d->document.tokens().ids_size();
  } else {
    d->input_error =
        absl::InvalidArgumentError("needs \"text\" (string) or \"token_ids\" (array)");
  }
  if (spans_ && d->input_error.ok()) d->input_error = ParseSpans(j, d);
}

bool EmbedInput::Next(InputDocument* out) {
  while (true) {
    InputDocument d;
    if (!ready_.empty()) {
      d = std::move(ready_.front());
      ready_.pop_front();
    } else {
      std::string raw;
      do {
        if (!ReadRaw(&raw)) return false;
      } while (raw.empty());
      d.index = next_index_++;
      d.line = line_;
      Parse(raw, &d);
    }
    if (skip_ && skip_(d)) {
      ++skipped_;
      continue;
    }
    *out = std::move(d);
    return true;
  }
}

std::string EmbedInput::Where(const InputDocument& d) const {
  if (IsLine(d)) return absl::StrCat(line_source_, ":", d.line);
  if (d.index < first_line_document_ - static_cast<int64_t>(files_.size())) {
    return absl::StrCat("argument ", d.line);
  }
  return files_[static_cast<size_t>(d.line - 1)];
}

}  // namespace longenc::client
