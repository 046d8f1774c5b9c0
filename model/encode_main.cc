// longenc-encode: offline batch encoding for users with a corpus and no server.
// JSON Lines in ({"text": ...} or {"token_ids": [...]}, optional "id"), JSON Lines out
// ({"id": ..., "embedding": [...], "num_tokens": n, "truncated": bool}), progress on stderr.
// With --chunk or --spans: late chunks instead, one row per chunk, in the rows of
// `longenc embed --chunk` (common/chunk_rows.h), as jsonl or npy plus a sidecar.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <numeric>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "common/chunk_rows.h"
#include "common/usage.h"
#include "model/backend.h"
#include "model/backend_flags.h"
#include "model/chunking.h"
#include "model/prompts.h"
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
ABSL_FLAG(std::string, normalize, "model",
          "model (normalised unless the directory has sentence-transformers files without a "
          "Normalize module), true or false: L2-normalise the embeddings and chunk vectors");
ABSL_FLAG(std::string, prompt_name, "",
          "the model's prompt (config_sentence_transformers.json) to prepend to every \"text\" "
          "line; empty: the model's default prompt, if any. Lines of token_ids are taken as given");
ABSL_FLAG(bool, progress, true, "report progress on stderr");
ABSL_FLAG(int64_t, chunk, 0,
          "late chunks of this many content tokens, pooled from the one pass over the whole "
          "document: one output row per chunk instead of one line per document (0: documents)");
ABSL_FLAG(int64_t, overlap, 0,
          "with --chunk, tokens each chunk shares with the one before it (0 <= overlap < chunk)");
ABSL_FLAG(bool, spans, false,
          "late chunks over the caller's spans: every line is {\"text\": ..., \"spans\": "
          "[[start, end], ...]} (UTF-8 byte offsets into the text, ordered); one row per span");
ABSL_FLAG(std::string, format, "jsonl",
          "jsonl, or with --chunk/--spans also json (one array) or npy (the vectors as float32 "
          "[rows, dim] in --output, each row's id, chunk, chunks, token_start, token_end, "
          "char_start, char_end in --output.rows.jsonl)");
ABSL_FLAG(std::string, output, "-", "output file; '-' writes standard output (not for npy)");

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
  // Late chunks (--chunk, --spans): token ranges, their byte ranges and their vectors.
  std::vector<longenc::model::TokenRange> chunks;
  std::vector<std::pair<int32_t, int32_t>> chunk_chars;
  std::vector<float> chunk_vectors;  // chunks.size() rows
  int64_t prompt_tokens = 0;         // the prompt's tokens after [CLS]; not in any chunk
};

// --chunk / --overlap / --spans.
struct ChunkOptions {
  int64_t max_tokens = 0;
  int64_t overlap = 0;
  bool spans = false;
  bool on() const { return max_tokens > 0 || spans; }
};

int Fail(const std::string& message) {
  std::cerr << "longenc-encode: " << message << "\n";
  return 2;
}

// The late chunks of `doc` (ids after truncation) as docs/API.md "Late chunking" defines them.
void AddChunks(const nlohmann::json& j, const std::vector<std::pair<int32_t, int32_t>>& offsets,
               int64_t line_number, const longenc::tokenizer::Tokenizer& tokenizer,
               const ChunkOptions& chunking, Document& doc) {
  using longenc::model::TokenRange;
  TokenRange content = longenc::model::ContentTokens(doc.ids, tokenizer.cls_id(), tokenizer.sep_id());
  content.begin = std::min(content.end, content.begin + doc.prompt_tokens);
  if (!chunking.spans) {
    doc.chunks = longenc::model::FixedChunks(content, chunking.max_tokens, chunking.overlap);
  } else {
    if (offsets.empty()) {
      doc.error = absl::StrCat("line ", line_number,
                               ": --spans are byte offsets into \"text\"; this line has token_ids");
      return;
    }
    std::vector<std::pair<int32_t, int32_t>> spans;
    const nlohmann::json& list = j.contains("spans") ? j["spans"] : nlohmann::json();
    if (!list.is_array() || list.empty()) {
      doc.error = absl::StrCat("line ", line_number, ": --spans: needs \"spans\": [[start, end], "
                               "...] (UTF-8 byte offsets of the text)");
      return;
    }
    for (const auto& span : list) {
      if (!span.is_array() || span.size() != 2 || !span[0].is_number_integer() ||
          !span[1].is_number_integer()) {
        doc.error = absl::StrCat("line ", line_number, ": --spans: each span is [start, end] "
                                 "(two integers), not ", span.dump());
        return;
      }
      spans.emplace_back(span[0].get<int32_t>(), span[1].get<int32_t>());
    }
    auto found = longenc::model::SpanChunks(
        offsets, content, static_cast<int64_t>(j["text"].get_ref<const std::string&>().size()),
        spans);
    if (!found.ok()) {
      doc.error = absl::StrCat("line ", line_number, ": ", found.status().message());
      return;
    }
    doc.chunks = *std::move(found);
  }
  for (const TokenRange& c : doc.chunks) {
    doc.chunk_chars.push_back(offsets.empty() ? std::pair<int32_t, int32_t>{0, 0}
                                              : std::pair<int32_t, int32_t>{
                                                    offsets[c.begin].first, offsets[c.end - 1].second});
  }
}

Document ParseLine(const std::string& line, int64_t line_number,
                   const longenc::tokenizer::Tokenizer& tokenizer, int64_t max_length,
                   const ChunkOptions& chunking, const std::string* prompt) {
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
  std::vector<std::pair<int32_t, int32_t>> offsets;  // text lines only
  if (j.contains("text") && j["text"].is_string()) {
    const std::string& text = j["text"].get_ref<const std::string&>();
    // As the server: the prompt and the text are tokenized as one string.
    auto encoding = tokenizer.Encode(prompt == nullptr ? text : absl::StrCat(*prompt, text));
    if (!encoding.ok()) {
      doc.error = absl::StrCat("line ", line_number, ": ", encoding.status().message());
      return doc;
    }
    doc.ids = std::move(encoding->ids);
    offsets = std::move(encoding->offsets);
    if (prompt != nullptr) {
      const int64_t first = !doc.ids.empty() && doc.ids[0] == tokenizer.cls_id() ? 1 : 0;
      doc.prompt_tokens = longenc::model::StripPromptOffsets(
          static_cast<int64_t>(prompt->size()), first, offsets);
    }
  } else if (j.contains("token_ids") && j["token_ids"].is_array()) {
    if (!absl::GetFlag(FLAGS_prompt_name).empty()) {
      doc.error = absl::StrCat("line ", line_number, ": --prompt_name applies to \"text\" lines; "
                               "token_ids are taken as given (prepend the prompt's tokens yourself)");
      return doc;
    }
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
    if (!offsets.empty()) offsets.resize(static_cast<size_t>(max_length));
  }
  if (doc.error.empty() && chunking.on()) AddChunks(j, offsets, line_number, tokenizer, chunking, doc);
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
      batch.Add(docs[order[end]].ids, pooling, normalize, docs[order[end]].chunks);
      ++end;
    }
    auto result = backend.Embed(batch);
    if (!result.ok()) return result.status();
    for (size_t k = begin; k < end; ++k) {
      const float* row = result->embeddings.data() + (k - begin) * result->dim;
      docs[order[k]].embedding.assign(row, row + result->dim);
      const float* chunks = result->chunk_embeddings.data() +
                            batch.chunk_offsets[k - begin] * result->dim;
      docs[order[k]].chunk_vectors.assign(
          chunks, chunks + static_cast<int64_t>(docs[order[k]].chunks.size()) * result->dim);
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
      "  --chunk=256 --overlap=32, or --spans (a line's \"spans\": [[start, end], ...], UTF-8\n"
      "          byte offsets of its text): late chunks, pooled from the one pass over the whole\n"
      "          document, one row per chunk: {\"id\", \"chunk\", \"chunks\", \"token_start\",\n"
      "          \"token_end\", \"char_start\", \"char_end\", \"embedding\"} (the rows of `longenc\n"
      "          embed --chunk`); --format=npy --output=F writes the vectors to F and the rest to\n"
      "          F.rows.jsonl; a bad line is reported on stderr and has no row (exit status 1)\n"
      "Example: longenc-encode --input=docs.jsonl > embeddings.jsonl\n"
      "         longenc-encode --input=docs.jsonl --chunk=256 --position_mode=chunk > chunks.jsonl",
      {"model/encode_main.cc", longenc::model::kBackendFlagsFile});
  absl::ParseCommandLine(argc, argv);

  const int64_t batch_tokens = absl::GetFlag(FLAGS_batch_tokens);
  if (batch_tokens < 1) return Fail("--batch_tokens must be at least 1");
  const int64_t max_length = absl::GetFlag(FLAGS_max_length);
  if (max_length < 2) return Fail("--max_length must be at least 2 ([CLS] and [SEP])");
  ChunkOptions chunking;
  chunking.max_tokens = absl::GetFlag(FLAGS_chunk);
  chunking.overlap = absl::GetFlag(FLAGS_overlap);
  chunking.spans = absl::GetFlag(FLAGS_spans);
  if (chunking.max_tokens < 0) return Fail("--chunk must be >= 0");
  if (chunking.overlap != 0 &&
      (chunking.max_tokens == 0 || chunking.overlap < 0 || chunking.overlap >= chunking.max_tokens)) {
    return Fail(absl::StrCat("--overlap=", chunking.overlap, ": needs --chunk and 0 <= overlap < chunk (",
                             chunking.max_tokens, ")"));
  }
  if (chunking.max_tokens > 0 && chunking.spans) return Fail("--chunk and --spans: give one of them");
  const std::string format = absl::GetFlag(FLAGS_format);
  const std::string output = absl::GetFlag(FLAGS_output);
  if (format != "jsonl" && !(chunking.on() && (format == "json" || format == "npy"))) {
    return Fail(absl::StrCat("--format=", format, ": documents are written as jsonl; chunk rows "
                             "(--chunk, --spans) as jsonl, json or npy"));
  }
  if (format == "npy" && output == "-") {
    return Fail("--format=npy writes a file: give --output=FILE (the vectors; the rows' ids and "
                "offsets go to FILE.rows.jsonl)");
  }

  longenc::model::BackendOptions options = longenc::model::BackendOptionsFromFlags();
  auto tokenizer = longenc::tokenizer::LoadTokenizer(options.model_dir);
  if (!tokenizer.ok()) return Fail(std::string(tokenizer.status().message()));
  options.max_tokens_per_document = max_length;
  auto backend = longenc::model::CreateTorchBackend(options);
  if (!backend.ok()) return Fail(std::string(backend.status().message()));
  const longenc::model::ModelInfo& info = (*backend)->info();
  const absl::StatusOr<Pooling> pooling =
      longenc::model::PoolingFromFlag(absl::GetFlag(FLAGS_pooling), info);
  if (!pooling.ok()) return Fail(std::string(pooling.status().message()));
  const absl::StatusOr<bool> normalize =
      longenc::model::NormalizeFromFlag(absl::GetFlag(FLAGS_normalize), info);
  if (!normalize.ok()) return Fail(std::string(normalize.status().message()));
  absl::StatusOr<const std::string*> prompt =
      longenc::model::FindPrompt(info, absl::GetFlag(FLAGS_prompt_name), "--prompt_name");
  if (!prompt.ok()) return Fail(std::string(prompt.status().message()));

  std::ifstream file;
  const std::string input = absl::GetFlag(FLAGS_input);
  if (input != "-") {
    file.open(input);
    if (!file) return Fail(absl::StrCat("--input=", input, ": cannot open"));
  }
  std::istream& in = input == "-" ? std::cin : file;

  std::ofstream out_file, sidecar;
  std::fstream npy;
  std::unique_ptr<longenc::ChunkRowWriter> rows;
  if (format == "npy") {
    npy.open(output, std::ios::binary | std::ios::in | std::ios::out | std::ios::trunc);
    sidecar.open(longenc::ChunkRowsSidecar(output), std::ios::binary | std::ios::trunc);
    if (!npy || !sidecar) return Fail(absl::StrCat("--output=", output, ": cannot write"));
    rows = longenc::NewNpyChunkRowWriter(&npy, &sidecar, (*backend)->info().embedding_dim, 0);
  } else if (output != "-") {
    out_file.open(output, std::ios::binary | std::ios::trunc);
    if (!out_file) return Fail(absl::StrCat("--output=", output, ": cannot write"));
  }
  std::ostream& out = output == "-" || format == "npy" ? std::cout : out_file;
  if (chunking.on() && format != "npy") {
    auto writer = longenc::NewChunkRowWriter(format, &out);
    if (!writer.ok()) return Fail(std::string(writer.status().message()));
    rows = std::move(*writer);
  }

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
      window.push_back(ParseLine(line, line_number, **tokenizer, max_length, chunking, *prompt));
    }
    absl::Status s = EncodeWindow(window, **backend, {}, *pooling, *normalize, batch_tokens);
    if (!s.ok()) return Fail(std::string(s.message()));
    const int64_t dim = (*backend)->info().embedding_dim;
    for (const Document& doc : window) {
      if (!doc.error.empty()) {
        std::cerr << "longenc-encode: " << doc.error << "\n";
        ++errors;
        // Chunk rows leave a bad line out, as `longenc embed --chunk` does.
        if (rows == nullptr) out << nlohmann::ordered_json{{"id", doc.id}, {"error", doc.error}}.dump() << "\n";
        continue;
      }
      ++documents;
      tokens += static_cast<int64_t>(doc.ids.size());
      if (rows == nullptr) {
        out << nlohmann::ordered_json{{"id", doc.id},
                                      {"embedding", doc.embedding},
                                      {"num_tokens", doc.ids.size()},
                                      {"truncated", doc.truncated}}.dump()
            << "\n";
        continue;
      }
      std::vector<longenc::ChunkRow> doc_rows(doc.chunks.size());
      for (size_t k = 0; k < doc.chunks.size(); ++k) {
        longenc::ChunkRow& r = doc_rows[k];
        r.id = doc.id;
        r.chunk = static_cast<int64_t>(k);
        r.chunks = static_cast<int64_t>(doc.chunks.size());
        r.token_start = doc.chunks[k].begin;
        r.token_end = doc.chunks[k].end;
        r.char_start = doc.chunk_chars[k].first;
        r.char_end = doc.chunk_chars[k].second;
        r.truncated = doc.truncated;
        r.values = absl::MakeConstSpan(doc.chunk_vectors.data() + static_cast<int64_t>(k) * dim,
                                       static_cast<size_t>(dim));
      }
      if (absl::Status w = rows->WriteDocument(doc_rows); !w.ok()) return Fail(std::string(w.message()));
    }
    out.flush();
    if (!out) return Fail("writing the output failed (disk full?)");
    const auto now = std::chrono::steady_clock::now();
    if (progress && (eof || now - last_report > std::chrono::seconds(2))) {
      const double seconds = std::chrono::duration<double>(now - start).count();
      std::fprintf(stderr, "\rlongenc-encode: %lld documents, %lld tokens, %.0f tokens/s%s",
                   static_cast<long long>(documents), static_cast<long long>(tokens),
                   seconds > 0 ? tokens / seconds : 0.0, eof ? "\n" : "");
      last_report = now;
    }
  }
  if (rows != nullptr) {
    if (absl::Status w = rows->Finish(); !w.ok()) return Fail(std::string(w.message()));
  }
  return errors > 0 ? 1 : 0;
}
