// longenc-encode: offline batch encoding for users with a corpus and no server.
// JSON Lines in ({"text": ...} or {"token_ids": [...]}, optional "id"), JSON Lines out
// ({"id": ..., "embedding": [...], "num_tokens": n, "truncated": bool}), progress on stderr.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <numeric>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "common/usage.h"
#include "model/backend.h"
#include "model/backend_flags.h"
#include "model/tokenizer/tokenizer.h"
#include "model/torch_backend.h"

ABSL_FLAG(std::string, input, "-", "JSON Lines file to encode; '-' reads standard input");
ABSL_FLAG(int64_t, batch_tokens, 16384,
          "padded-token budget of one forward pass (batch size x longest document); a longer "
          "document runs alone");
ABSL_FLAG(int64_t, max_length, 131072,
          "longest document in tokens, [CLS] and [SEP] included; longer ones are truncated and "
          "flagged \"truncated\": true");
ABSL_FLAG(std::string, pooling, "model",
          "model (what the directory's sentence-transformers files say; mean without them), "
          "mean, cls or last");
ABSL_FLAG(bool, normalize, true, "L2-normalise embeddings");
ABSL_FLAG(bool, progress, true, "report progress on stderr");

namespace {

using longenc::model::Batch;
using longenc::model::Pooling;

// Documents are read in windows, sorted by length inside a window (so short documents do
// not pad to long ones) and written back in input order.
constexpr size_t kWindowDocuments = 512;

struct Document {
  nlohmann::json id;
  std::vector<int32_t> ids;
  bool truncated = false;
  std::string error;
  std::vector<float> embedding;
};

int Fail(const std::string& message) {
  std::cerr << "longenc-encode: " << message << "\n";
  return 2;
}

Document ParseLine(const std::string& line, int64_t line_number,
                   const longenc::tokenizer::Tokenizer& tokenizer, int64_t max_length) {
  Document doc;
  doc.id = line_number;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(line);
  } catch (const nlohmann::json::exception& e) {
    doc.error = absl::StrCat("line ", line_number, ": not valid JSON (", e.what(), ")");
    return doc;
  }
  if (!j.is_object()) {
    doc.error = absl::StrCat("line ", line_number, ": expected a JSON object");
    return doc;
  }
  if (j.contains("id")) doc.id = j["id"];
  if (j.contains("text") && j["text"].is_string()) {
    auto encoding = tokenizer.Encode(j["text"].get<std::string>());
    if (!encoding.ok()) {
      doc.error = absl::StrCat("line ", line_number, ": ", encoding.status().message());
      return doc;
    }
    doc.ids = std::move(encoding->ids);
  } else if (j.contains("token_ids") && j["token_ids"].is_array()) {
    for (const auto& v : j["token_ids"]) {
      if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() >= tokenizer.vocab_size()) {
        doc.error = absl::StrCat("line ", line_number, ": token id ", v.dump(),
                                 " is not an integer in [0, ", tokenizer.vocab_size(), ")");
        return doc;
      }
      doc.ids.push_back(v.get<int32_t>());
    }
    if (doc.ids.empty()) doc.error = absl::StrCat("line ", line_number, ": token_ids is empty");
  } else {
    doc.error = absl::StrCat("line ", line_number,
                             ": expected a string \"text\" or an array \"token_ids\"");
  }
  if (static_cast<int64_t>(doc.ids.size()) > max_length) {
    // Keep the final token ([SEP]) so the truncated document is still well-formed.
    const int32_t last = doc.ids.back();
    doc.ids.resize(max_length);
    doc.ids.back() = last;
    doc.truncated = true;
  }
  return doc;
}

// Encodes the documents of a window in length-sorted, token-budgeted batches.
absl::Status EncodeWindow(std::vector<Document>& docs, longenc::model::Backend& backend,
                          const longenc::model::EncodeSettings& settings, Pooling pooling,
                          bool normalize, int64_t batch_tokens) {
  std::vector<size_t> order;
  for (size_t i = 0; i < docs.size(); ++i) {
    if (docs[i].error.empty()) order.push_back(i);
  }
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return docs[a].ids.size() < docs[b].ids.size(); });
  size_t begin = 0;
  while (begin < order.size()) {
    Batch batch;
    batch.settings = settings;
    size_t end = begin;
    while (end < order.size()) {
      const int64_t padded = static_cast<int64_t>(docs[order[end]].ids.size()) *
                             static_cast<int64_t>(end - begin + 1);
      if (end > begin && padded > batch_tokens) break;
      batch.Add(docs[order[end]].ids, pooling, normalize);
      ++end;
    }
    auto result = backend.Embed(batch);
    if (!result.ok()) return result.status();
    for (size_t k = begin; k < end; ++k) {
      const float* row = result->embeddings.data() + (k - begin) * result->dim;
      docs[order[k]].embedding.assign(row, row + result->dim);
    }
    begin = end;
  }
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  longenc::InstallUsage(
      "longenc-encode",
      "Encodes JSON Lines documents into embeddings, offline (no server).\n"
      "  input : {\"text\": \"...\"} or {\"token_ids\": [101, ..., 102]} (ids are used as given,\n"
      "          special tokens included), with an optional \"id\"\n"
      "  output: {\"id\": ..., \"embedding\": [...], \"num_tokens\": n, \"truncated\": false}\n"
      "          or {\"id\": ..., \"error\": \"...\"} for a bad line (exit status 1)\n"
      "Example: longenc-encode --input=docs.jsonl > embeddings.jsonl",
      {"model/encode_main.cc", longenc::model::kBackendFlagsFile});
  absl::ParseCommandLine(argc, argv);

  const std::string pooling_name = absl::GetFlag(FLAGS_pooling);
  if (pooling_name != "model" && pooling_name != "mean" && pooling_name != "cls" &&
      pooling_name != "last") {
    return Fail(absl::StrCat("--pooling=", pooling_name, ": expected model, mean, cls or last"));
  }
  const int64_t batch_tokens = absl::GetFlag(FLAGS_batch_tokens);
  if (batch_tokens < 1) return Fail("--batch_tokens must be at least 1");
  const int64_t max_length = absl::GetFlag(FLAGS_max_length);
  if (max_length < 2) return Fail("--max_length must be at least 2 ([CLS] and [SEP])");

  longenc::model::BackendOptions options = longenc::model::BackendOptionsFromFlags();
  auto tokenizer = longenc::tokenizer::LoadTokenizer(options.model_dir);
  if (!tokenizer.ok()) return Fail(std::string(tokenizer.status().message()));
  options.max_tokens_per_document = max_length;
  auto backend = longenc::model::CreateTorchBackend(options);
  if (!backend.ok()) return Fail(std::string(backend.status().message()));
  const Pooling pooling = pooling_name == "cls"    ? Pooling::kCls
                          : pooling_name == "last" ? Pooling::kLastToken
                          : pooling_name == "mean" ? Pooling::kMean
                                                   : (*backend)->info().default_pooling;

  std::ifstream file;
  const std::string input = absl::GetFlag(FLAGS_input);
  if (input != "-") {
    file.open(input);
    if (!file) return Fail(absl::StrCat("--input=", input, ": cannot open"));
  }
  std::istream& in = input == "-" ? std::cin : file;

  const bool progress = absl::GetFlag(FLAGS_progress);
  const auto start = std::chrono::steady_clock::now();
  auto last_report = start;
  int64_t line_number = 0, documents = 0, tokens = 0, errors = 0;
  std::string line;
  bool eof = false;
  while (!eof) {
    std::vector<Document> window;
    while (window.size() < kWindowDocuments) {
      if (!std::getline(in, line)) {
        eof = true;
        break;
      }
      ++line_number;
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;  // blank line
      window.push_back(ParseLine(line, line_number, **tokenizer, max_length));
    }
    absl::Status s = EncodeWindow(window, **backend, {}, pooling, absl::GetFlag(FLAGS_normalize),
                                  batch_tokens);
    if (!s.ok()) return Fail(std::string(s.message()));
    for (const Document& doc : window) {
      nlohmann::ordered_json out = {{"id", doc.id}};
      if (!doc.error.empty()) {
        out["error"] = doc.error;
        std::cerr << "longenc-encode: " << doc.error << "\n";
        ++errors;
      } else {
        out["embedding"] = doc.embedding;
        out["num_tokens"] = doc.ids.size();
        out["truncated"] = doc.truncated;
        ++documents;
        tokens += static_cast<int64_t>(doc.ids.size());
      }
      std::cout << out.dump() << "\n";
    }
    std::cout.flush();
    const auto now = std::chrono::steady_clock::now();
    if (progress && (eof || now - last_report > std::chrono::seconds(2))) {
      const double seconds = std::chrono::duration<double>(now - start).count();
      std::fprintf(stderr, "\rlongenc-encode: %lld documents, %lld tokens, %.0f tokens/s%s",
                   static_cast<long long>(documents), static_cast<long long>(tokens),
                   seconds > 0 ? tokens / seconds : 0.0, eof ? "\n" : "");
      last_report = now;
    }
  }
  return errors > 0 ? 1 : 0;
}
