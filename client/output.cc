#include "client/output.h"

#include <cstdint>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace longenc::client {
namespace {

nlohmann::json ToJson(const longenc::v1::Embedding& e) {
  nlohmann::json j;
  j["id"] = e.id();
  j["embedding"] = std::vector<float>(e.values().begin(), e.values().end());
  j["num_tokens"] = e.num_tokens();
  if (e.truncated()) j["truncated"] = true;
  return j;
}

// Little-endian float32 rows (x86-64 and aarch64 hosts are little-endian).
void WriteRow(const float* values, int64_t dim, std::ostream& out) {
  out.write(reinterpret_cast<const char*>(values),
            static_cast<std::streamsize>(dim * sizeof(float)));
}

absl::Status WriteNpy(const std::vector<longenc::v1::Embedding>& embeddings, std::ostream& out) {
  const int64_t dim = embeddings.empty() ? 0 : embeddings.front().values_size();
  for (const auto& e : embeddings) {
    if (e.values_size() != dim) {
      return absl::InternalError("embeddings of different sizes cannot form one npy array");
    }
  }
  out << NpyHeader(static_cast<int64_t>(embeddings.size()), dim);
  for (const auto& e : embeddings) WriteRow(e.values().data(), dim, out);
  return absl::OkStatus();
}


absl::Status CheckWidth(const longenc::v1::Embedding& e, int64_t dim) {
  if (e.values_size() == dim) return absl::OkStatus();
  return absl::InternalError(absl::StrCat("an embedding of ", e.values_size(),
                                          " values for an npy array of width ", dim));
}

absl::Status Flushed(std::ostream& out) {
  out.flush();
  if (!out) return absl::DataLossError("writing the output failed (disk full?)");
  return absl::OkStatus();
}

class JsonlWriter : public EmbeddingWriter {
 public:
  explicit JsonlWriter(std::ostream* out) : out_(*out) {}
  absl::Status Write(int64_t, const longenc::v1::Embedding& e) override {
    out_ << ToJson(e).dump() << "\n";
    return Flushed(out_);
  }
  absl::Status Fail(int64_t) override { return absl::OkStatus(); }
  absl::Status Finish() override { return Flushed(out_); }

 private:
  std::ostream& out_;
};

// The same bytes as WriteEmbeddings' json: "[a,b,...]\n".
class JsonWriter : public EmbeddingWriter {
 public:
  explicit JsonWriter(std::ostream* out) : out_(*out) { out_ << "["; }
  absl::Status Write(int64_t, const longenc::v1::Embedding& e) override {
    out_ << (first_ ? "" : ",") << ToJson(e).dump();
    first_ = false;
    return Flushed(out_);
  }
  absl::Status Fail(int64_t) override { return absl::OkStatus(); }
  absl::Status Finish() override {
    out_ << "]\n";
    return Flushed(out_);
  }

 private:
  std::ostream& out_;
  bool first_ = true;
};

// Row i of the array is document i: a failed document is a row of NaN.
class NpyWriter : public EmbeddingWriter {
 public:
  NpyWriter(std::ostream* out, int64_t rows, int64_t dim)
      : out_(*out), rows_(rows), dim_(dim),
        nan_(static_cast<size_t>(dim), std::numeric_limits<float>::quiet_NaN()) {
    out_ << NpyHeader(rows, dim);
  }
  absl::Status Write(int64_t index, const longenc::v1::Embedding& e) override {
    if (absl::Status s = CheckWidth(e, dim_); !s.ok()) return s;
    if (index >= rows_) return PastTheEnd(index);
    if (absl::Status s = FillTo(index); !s.ok()) return s;
    WriteRow(e.values().data(), dim_, out_);
    ++written_;
    return Flushed(out_);
  }
  absl::Status Fail(int64_t index) override {
    if (absl::Status s = FillTo(index + 1); !s.ok()) return s;
    return Flushed(out_);
  }
  absl::Status Finish() override {
    if (absl::Status s = FillTo(rows_); !s.ok()) return s;
    return Flushed(out_);
  }

 private:
  // NaN rows up to (not including) row `end`.
  absl::Status FillTo(int64_t end) {
    if (end > rows_) return PastTheEnd(end - 1);
    for (; written_ < end; ++written_) WriteRow(nan_.data(), dim_, out_);
    return absl::OkStatus();
  }

  absl::Status PastTheEnd(int64_t index) const {
    return absl::InternalError(absl::StrCat("document ", index, " past the ", rows_,
                                            " rows of the npy header"));
  }

  std::ostream& out_;
  const int64_t rows_;
  const int64_t dim_;
  const std::vector<float> nan_;
  int64_t written_ = 0;
};

class NpyPatcher : public EmbeddingWriter {
 public:
  NpyPatcher(std::iostream* file, int64_t data_offset, int64_t rows, int64_t dim)
      : file_(*file), data_offset_(data_offset), rows_(rows), dim_(dim) {}
  absl::Status Write(int64_t index, const longenc::v1::Embedding& e) override {
    if (absl::Status s = CheckWidth(e, dim_); !s.ok()) return s;
    if (index < 0 || index >= rows_) {
      return absl::InternalError(absl::StrCat("document ", index, " past the ", rows_,
                                              " rows of the npy file"));
    }
    file_.seekp(data_offset_ + index * dim_ * static_cast<int64_t>(sizeof(float)));
    WriteRow(e.values().data(), dim_, file_);
    return Flushed(file_);
  }
  absl::Status Fail(int64_t) override { return absl::OkStatus(); }  // the row stays NaN
  absl::Status Finish() override { return Flushed(file_); }

 private:
  std::iostream& file_;
  const int64_t data_offset_;
  const int64_t rows_;
  const int64_t dim_;
};

class ChunkRowsWriter : public EmbeddingWriter {
 public:
  explicit ChunkRowsWriter(std::unique_ptr<ChunkRowWriter> rows) : rows_(std::move(rows)) {}
  absl::Status Write(int64_t, const longenc::v1::Embedding& e) override {
    std::vector<ChunkRow> rows(static_cast<size_t>(e.chunks_size()));
    for (int k = 0; k < e.chunks_size(); ++k) {
      const longenc::v1::Chunk& c = e.chunks(k);
      ChunkRow& r = rows[static_cast<size_t>(k)];
      r.id = e.id();
      r.chunk = k;
      r.chunks = e.chunks_size();
      r.token_start = c.token_start();
      r.token_end = c.token_end();
      r.char_start = c.char_start();
      r.char_end = c.char_end();
      r.truncated = e.truncated();
      r.values = absl::MakeConstSpan(c.values().data(), static_cast<size_t>(c.values_size()));
    }
    return rows_->WriteDocument(rows);
  }
  absl::Status Fail(int64_t) override { return absl::OkStatus(); }
  absl::Status Finish() override { return rows_->Finish(); }

 private:
  std::unique_ptr<ChunkRowWriter> rows_;
};

}  // namespace

std::unique_ptr<EmbeddingWriter> NewChunkRowsWriter(std::unique_ptr<ChunkRowWriter> rows) {
  return std::make_unique<ChunkRowsWriter>(std::move(rows));
}

absl::StatusOr<std::unique_ptr<EmbeddingWriter>> NewEmbeddingWriter(const std::string& format,
                                                                     std::ostream* out,
                                                                     int64_t rows, int64_t dim) {
  if (format == "jsonl") return std::make_unique<JsonlWriter>(out);
  if (format == "json") return std::make_unique<JsonWriter>(out);
  if (format == "npy") return std::make_unique<NpyWriter>(out, rows, dim);
  return absl::InvalidArgumentError(
      absl::StrCat("--format=", format, ": must be json, jsonl or npy"));
}

std::unique_ptr<EmbeddingWriter> NewNpyPatcher(std::iostream* file, int64_t data_offset,
                                               int64_t rows, int64_t dim) {
  return std::make_unique<NpyPatcher>(file, data_offset, rows, dim);
}

absl::Status WriteEmbeddings(const std::vector<longenc::v1::Embedding>& embeddings,
                             const std::string& format, std::ostream& out) {
  if (format == "npy") return WriteNpy(embeddings, out);
  if (format == "jsonl") {
    for (const auto& e : embeddings) out << ToJson(e).dump() << "\n";
    return absl::OkStatus();
  }
  if (format == "json") {
    nlohmann::json all = nlohmann::json::array();
    for (const auto& e : embeddings) all.push_back(ToJson(e));
    out << all.dump() << "\n";
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(
      absl::StrCat("--format=", format, ": must be json, jsonl or npy"));
}

}  // namespace longenc::client
