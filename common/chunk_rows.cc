#include "common/chunk_rows.h"

#include <istream>
#include <ostream>
#include <vector>

#include "absl/strings/str_cat.h"

namespace longenc {
namespace {

absl::Status Flushed(std::ostream& out) {
  out.flush();
  if (!out) return absl::DataLossError("writing the output failed (disk full?)");
  return absl::OkStatus();
}

nlohmann::ordered_json WithEmbedding(const ChunkRow& row) {
  nlohmann::ordered_json j = ChunkRowJson(row);
  j["embedding"] = std::vector<float>(row.values.begin(), row.values.end());
  if (row.truncated) j["truncated"] = true;
  return j;
}

class JsonlChunkRowWriter : public ChunkRowWriter {
 public:
  JsonlChunkRowWriter(std::ostream* out, bool array) : out_(*out), array_(array) {
    if (array_) out_ << "[";
  }
  absl::Status WriteDocument(absl::Span<const ChunkRow> rows) override {
    for (const ChunkRow& row : rows) {
      if (array_) {
        out_ << (first_ ? "" : ",") << WithEmbedding(row).dump();
        first_ = false;
      } else {
        out_ << WithEmbedding(row).dump() << "\n";
      }
    }
    return Flushed(out_);
  }
  absl::Status Finish() override {
    if (array_) out_ << "]\n";
    return Flushed(out_);
  }

 private:
  std::ostream& out_;
  const bool array_;
  bool first_ = true;
};

class NpyChunkRowWriter : public ChunkRowWriter {
 public:
  NpyChunkRowWriter(std::iostream* npy, std::ostream* sidecar, int64_t dim, int64_t rows)
      : npy_(*npy), sidecar_(*sidecar), dim_(dim), rows_(rows) {
    if (rows_ == 0) {
      npy_.seekp(0);
      npy_ << NpyHeader(0, dim_, kChunkNpyHeaderBytes);
    }
    npy_.seekp(0, std::ios::end);
  }
  absl::Status WriteDocument(absl::Span<const ChunkRow> rows) override {
    for (const ChunkRow& row : rows) {
      if (static_cast<int64_t>(row.values.size()) != dim_) {
        return absl::InternalError(absl::StrCat("a chunk of ", row.values.size(),
                                                " values for an npy array of width ", dim_));
      }
      // Little-endian float32 (x86-64 and aarch64 hosts are little-endian).
      npy_.write(reinterpret_cast<const char*>(row.values.data()),
                 static_cast<std::streamsize>(dim_ * sizeof(float)));
      nlohmann::ordered_json j = ChunkRowJson(row);
      j["row"] = rows_++;
      sidecar_ << j.dump() << "\n";
    }
    // The data first, then the header that counts it, then the sidecar.
    if (absl::Status s = Flushed(npy_); !s.ok()) return s;
    if (absl::Status s = WriteHeader(); !s.ok()) return s;
    return Flushed(sidecar_);
  }
  absl::Status Finish() override {
    if (absl::Status s = WriteHeader(); !s.ok()) return s;
    return Flushed(sidecar_);
  }

 private:
  absl::Status WriteHeader() {
    npy_.seekp(0);
    npy_ << NpyHeader(rows_, dim_, kChunkNpyHeaderBytes);
    npy_.seekp(0, std::ios::end);
    return Flushed(npy_);
  }

  std::iostream& npy_;
  std::ostream& sidecar_;
  const int64_t dim_;
  int64_t rows_;
};

}  // namespace

nlohmann::ordered_json ChunkRowJson(const ChunkRow& row) {
  nlohmann::ordered_json j;
  j["id"] = row.id;
  j["chunk"] = row.chunk;
  j["chunks"] = row.chunks;
  j["token_start"] = row.token_start;
  j["token_end"] = row.token_end;
  j["char_start"] = row.char_start;
  j["char_end"] = row.char_end;
  return j;
}

absl::StatusOr<std::unique_ptr<ChunkRowWriter>> NewChunkRowWriter(const std::string& format,
                                                                  std::ostream* out) {
  if (format == "jsonl" || format == "json") {
    return std::make_unique<JsonlChunkRowWriter>(out, format == "json");
  }
  return absl::InvalidArgumentError(
      absl::StrCat("--format=", format, ": chunk rows are written as json, jsonl or npy"));
}

std::unique_ptr<ChunkRowWriter> NewNpyChunkRowWriter(std::iostream* npy, std::ostream* sidecar,
                                                     int64_t dim, int64_t rows) {
  return std::make_unique<NpyChunkRowWriter>(npy, sidecar, dim, rows);
}

std::string ChunkRowsSidecar(const std::string& npy_path) {
  return absl::StrCat(npy_path, ".rows.jsonl");
}

std::string NpyHeader(int64_t rows, int64_t dim, size_t min_bytes) {
  std::string header = absl::StrCat("{'descr': '<f4', 'fortran_order': False, 'shape': (", rows,
                                    ", ", dim, "), }");
  // Magic (6) + version (2) + length (2) + header + '\n' is padded to a multiple of 64.
  size_t total = 10 + header.size() + 1;
  total += (64 - total % 64) % 64;
  while (total < min_bytes) total += 64;
  header.append(total - 10 - header.size() - 1, ' ');
  header.push_back('\n');
  const uint16_t len = static_cast<uint16_t>(header.size());
  const char len_bytes[2] = {static_cast<char>(len & 0xff), static_cast<char>(len >> 8)};
  return absl::StrCat(std::string("\x93NUMPY\x01\x00", 8), std::string(len_bytes, 2), header);
}

}  // namespace longenc
