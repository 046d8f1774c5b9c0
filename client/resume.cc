#include "client/resume.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace longenc::client {

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
