#include "client/output.h"

#include <cstdint>

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

absl::Status WriteNpy(const std::vector<longenc::v1::Embedding>& embeddings, std::ostream& out) {
  const int64_t dim = embeddings.empty() ? 0 : embeddings.front().values_size();
  for (const auto& e : embeddings) {
    if (e.values_size() != dim) {
      return absl::InternalError("embeddings of different sizes cannot form one npy array");
    }
  }
  std::string header = absl::StrCat("{'descr': '<f4', 'fortran_order': False, 'shape': (",
                                    embeddings.size(), ", ", dim, "), }");
  // Magic (6) + version (2) + length (2) + header + '\n' is padded to a multiple of 64.
  const size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header.push_back('\n');
  out.write("\x93NUMPY\x01\x00", 8);
  const uint16_t len = static_cast<uint16_t>(header.size());
  const char len_bytes[2] = {static_cast<char>(len & 0xff), static_cast<char>(len >> 8)};
  out.write(len_bytes, 2);
  out << header;
  // Little-endian float32 rows (x86-64 and aarch64 hosts are little-endian).
  for (const auto& e : embeddings) {
    out.write(reinterpret_cast<const char*>(e.values().data()),
              static_cast<std::streamsize>(e.values_size() * sizeof(float)));
  }
  return absl::OkStatus();
}

}  // namespace

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
