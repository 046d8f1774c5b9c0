#include "client/resume.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <system_error>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/chunk_rows.h"
#include "nlohmann/json.hpp"

namespace longenc::client {
namespace {

// The complete lines of a file of chunk rows: where each begins, and its document.
struct RowLine {
  int64_t offset = 0;
  std::string id;
  bool last_of_document = false;  // chunk == chunks - 1
};

absl::StatusOr<std::vector<RowLine>> ReadRowLines(const std::string& path, int64_t* end) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(absl::StrCat("--resume: cannot read ", path));
  std::vector<RowLine> lines;
  std::string line;
  int64_t offset = 0;
  while (std::getline(in, line)) {
    if (in.eof()) break;  // no newline after it: cut off by a killed run
    nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object() || !j.contains("id") || !j["id"].is_string() ||
        !j.contains("chunk") || !j["chunk"].is_number_integer() || !j.contains("chunks") ||
        !j["chunks"].is_number_integer()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--resume: ", path, ":", lines.size() + 1,
          " is not a chunk row of `longenc embed --chunk/--spans`"));
    }
    lines.push_back({offset, j["id"].get<std::string>(),
                     j["chunk"].get<int64_t>() + 1 == j["chunks"].get<int64_t>()});
    offset += static_cast<int64_t>(line.size()) + 1;
  }
  *end = offset;
  return lines;
}

// Rows up to the end of the last whole document among the first `limit` lines.
int64_t WholeDocuments(const std::vector<RowLine>& lines, int64_t limit) {
  for (int64_t k = std::min<int64_t>(limit, static_cast<int64_t>(lines.size())); k > 0; --k) {
    if (lines[static_cast<size_t>(k - 1)].last_of_document) return k;
  }
  return 0;
}

absl::Status Truncate(const std::string& path, int64_t bytes) {
  std::error_code ec;
  if (static_cast<int64_t>(std::filesystem::file_size(path, ec)) == bytes) return absl::OkStatus();
  std::filesystem::resize_file(path, static_cast<uintmax_t>(bytes), ec);
  if (ec) return absl::InternalError(absl::StrCat("--resume: cannot truncate ", path));
  return absl::OkStatus();
}

void KeepIds(const std::vector<RowLine>& lines, ChunkRowsResume* r) {
  for (int64_t k = 0; k < r->rows; ++k) r->ids.insert(lines[static_cast<size_t>(k)].id);
}

}  // namespace

absl::StatusOr<ChunkRowsResume> PrepareJsonlChunkResume(const std::string& path) {
  ChunkRowsResume r;
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return r;
  int64_t end = 0;
  absl::StatusOr<std::vector<RowLine>> lines = ReadRowLines(path, &end);
  if (!lines.ok()) return lines.status();
  r.rows = WholeDocuments(*lines, static_cast<int64_t>(lines->size()));
  KeepIds(*lines, &r);
  const int64_t keep_bytes =
      r.rows < static_cast<int64_t>(lines->size()) ? (*lines)[static_cast<size_t>(r.rows)].offset
                                                   : end;
  if (absl::Status s = Truncate(path, keep_bytes); !s.ok()) return s;
  return r;
}

absl::StatusOr<ChunkRowsResume> PrepareNpyChunkResume(const std::string& path) {
  const std::string sidecar = ChunkRowsSidecar(path);
  const auto not_ours = [&](const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--resume: ", path, " is not an npy output of longenc embed --chunk/--spans (", why,
        ")"));
  };
  std::ifstream npy(path, std::ios::binary);
  std::string header(kChunkNpyHeaderBytes, '\0');
  if (!npy || !npy.read(header.data(), static_cast<std::streamsize>(header.size()))) {
    return not_ours("cannot read its header");
  }
  npy.close();
  long long rows = 0, dim = 0;
  const size_t shape = header.find("'shape': (");
  if (header.compare(0, 8, std::string("\x93NUMPY\x01\x00", 8)) != 0 ||
      header.find("'descr': '<f4'") == std::string::npos || shape == std::string::npos ||
      std::sscanf(header.c_str() + shape, "'shape': (%lld, %lld)", &rows, &dim) != 2 ||
      dim <= 0 || header.back() != '\n') {
    return not_ours("no float32 [rows, dim] header of 128 bytes");
  }
  int64_t end = 0;
  absl::StatusOr<std::vector<RowLine>> lines = ReadRowLines(sidecar, &end);
  if (!lines.ok()) return lines.status();
  std::error_code ec;
  const int64_t row_bytes = dim * static_cast<int64_t>(sizeof(float));
  const int64_t data_rows =
      (static_cast<int64_t>(std::filesystem::file_size(path, ec)) -
       static_cast<int64_t>(kChunkNpyHeaderBytes)) / row_bytes;
  ChunkRowsResume r;
  r.dim = dim;
  r.rows = WholeDocuments(*lines, data_rows);
  KeepIds(*lines, &r);
  const int64_t keep_bytes =
      r.rows < static_cast<int64_t>(lines->size()) ? (*lines)[static_cast<size_t>(r.rows)].offset
                                                   : end;
  if (absl::Status s = Truncate(sidecar, keep_bytes); !s.ok()) return s;
  if (absl::Status s = Truncate(path, static_cast<int64_t>(kChunkNpyHeaderBytes) +
                                          r.rows * row_bytes);
      !s.ok()) {
    return s;
  }
  std::fstream out(path, std::ios::binary | std::ios::in | std::ios::out);
  out << NpyHeader(r.rows, r.dim, kChunkNpyHeaderBytes);
  out.flush();
  if (!out) return absl::InternalError(absl::StrCat("--resume: cannot write ", path));
  return r;
}

absl::StatusOr<std::unordered_set<std::string>> PrepareJsonlResume(const std::string& path) {
  std::unordered_set<std::string> ids;
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return ids;
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(absl::StrCat("--resume: cannot read ", path));
  std::string line;
  int64_t complete_bytes = 0;  // up to the last newline
  int64_t n = 0;
  while (std::getline(in, line)) {
    if (in.eof()) break;  // no newline after it: cut off by a killed run
    ++n;
    complete_bytes += static_cast<int64_t>(line.size()) + 1;
    if (line.empty()) continue;
    nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object() || !j.contains("id") || !j["id"].is_string()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--resume: ", path, ":", n, " is not a line of `longenc embed --format=jsonl`"));
    }
    ids.insert(j["id"].get<std::string>());
  }
  in.close();
  if (static_cast<int64_t>(std::filesystem::file_size(path, ec)) != complete_bytes) {
    std::filesystem::resize_file(path, static_cast<uintmax_t>(complete_bytes), ec);
    if (ec) return absl::InternalError(absl::StrCat("--resume: cannot truncate ", path));
  }
  return ids;
}

absl::StatusOr<NpyResume> PrepareNpyResume(const std::string& path) {
  const auto not_ours = [&](const std::string& why) {
    return absl::InvalidArgumentError(
        absl::StrCat("--resume: ", path, " is not an npy output of longenc embed (", why, ")"));
  };
  std::fstream file(path, std::ios::binary | std::ios::in | std::ios::out);
  if (!file) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--resume: cannot open ", path, " (npy output is resumed in place; it must exist)"));
  }
  char prefix[10];
  if (!file.read(prefix, sizeof prefix) || std::string(prefix, 8) != std::string("\x93NUMPY\x01\x00", 8)) {
    return not_ours("no npy 1.0 magic");
  }
  const size_t header_len = static_cast<unsigned char>(prefix[8]) |
                            (static_cast<size_t>(static_cast<unsigned char>(prefix[9])) << 8);
  std::string header(header_len, '\0');
  if (!file.read(header.data(), static_cast<std::streamsize>(header_len))) {
    return not_ours("short header");
  }
  if (header.find("'descr': '<f4'") == std::string::npos ||
      header.find("'fortran_order': False") == std::string::npos) {
    return not_ours("not little-endian float32 in C order");
  }
  NpyResume r;
  long long rows = 0, dim = 0;
  const size_t shape = header.find("'shape': (");
  if (shape == std::string::npos ||
      std::sscanf(header.c_str() + shape, "'shape': (%lld, %lld)", &rows, &dim) != 2 ||
      rows < 0 || dim <= 0) {
    return not_ours("no 2-d shape");
  }
  r.rows = rows;
  r.dim = dim;
  r.data_offset = 10 + static_cast<int64_t>(header_len);
  const int64_t row_bytes = r.dim * static_cast<int64_t>(sizeof(float));
  std::error_code ec;
  const int64_t size = static_cast<int64_t>(std::filesystem::file_size(path, ec));
  const int64_t complete = std::min<int64_t>(r.rows, (size - r.data_offset) / row_bytes);
  r.missing.assign(static_cast<size_t>(r.rows), true);
  std::vector<float> row(static_cast<size_t>(r.dim));
  file.seekg(r.data_offset);
  for (int64_t i = 0; i < complete; ++i) {
    if (!file.read(reinterpret_cast<char*>(row.data()), row_bytes)) {
      return absl::InternalError(absl::StrCat("--resume: cannot read ", path));
    }
    bool nan = false;
    for (float v : row) nan = nan || std::isnan(v);
    r.missing[static_cast<size_t>(i)] = nan;
  }
  if (complete < r.rows) {
    // The run was killed: drop a partial row and write the missing ones as NaN.
    file.clear();
    file.seekp(r.data_offset + complete * row_bytes);
    const std::vector<float> nan_row(static_cast<size_t>(r.dim),
                                     std::numeric_limits<float>::quiet_NaN());
    for (int64_t i = complete; i < r.rows; ++i) {
      file.write(reinterpret_cast<const char*>(nan_row.data()), row_bytes);
    }
    file.flush();
    if (!file) return absl::InternalError(absl::StrCat("--resume: cannot write ", path));
  }
  return r;
}

}  // namespace longenc::client
