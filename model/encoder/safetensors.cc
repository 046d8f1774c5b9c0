#include "model/encoder/safetensors.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>
#include <utility>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace longenc::encoder {
namespace {

constexpr uint64_t kMaxHeaderBytes = 100ull << 20;  // as the reference implementation

struct DTypeEntry {
  DType dtype;
  const char* name;
  int64_t size;
};
constexpr DTypeEntry kDTypes[] = {
    {DType::kF64, "F64", 8}, {DType::kF32, "F32", 4}, {DType::kF16, "F16", 2},
    {DType::kBF16, "BF16", 2}, {DType::kI64, "I64", 8}, {DType::kI32, "I32", 4},
    {DType::kI16, "I16", 2}, {DType::kI8, "I8", 1}, {DType::kU8, "U8", 1},
    {DType::kBool, "BOOL", 1},
};

absl::Status Corrupt(const std::string& source, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(source, ": not a valid safetensors file: ", what));
}

bool LookupDType(const std::string& name, DType* out) {
  for (const auto& e : kDTypes) {
    if (name == e.name) {
      *out = e.dtype;
      return true;
    }
  }
  return false;
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

}  // namespace

const char* DTypeName(DType dtype) {
  for (const auto& e : kDTypes) {
    if (e.dtype == dtype) return e.name;
  }
  return "?";
}

int64_t DTypeSize(DType dtype) {
  for (const auto& e : kDTypes) {
    if (e.dtype == dtype) return e.size;
  }
  return 0;
}

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

absl::StatusOr<SafetensorsFile> SafetensorsFile::Open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::NotFoundError(absl::StrCat(path, ": cannot open weights file"));
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a regular file"));
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size == 0) {
    ::close(fd);
    return Parse(std::string(), path);
  }
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);  // the mapping keeps the file
  if (map == MAP_FAILED) return absl::DataLossError(absl::StrCat(path, ": cannot map the file"));
  std::shared_ptr<const void> owner(map, [size](const void* p) { ::munmap(const_cast<void*>(p), size); });
  return ParseBytes(static_cast<const uint8_t*>(map), size, std::move(owner), /*mapped=*/true, path);
}

absl::StatusOr<SafetensorsFile> SafetensorsFile::Parse(std::string bytes,
                                                       const std::string& source) {
  auto owner = std::make_shared<const std::string>(std::move(bytes));
  const auto* data = reinterpret_cast<const uint8_t*>(owner->data());
  const uint64_t size = owner->size();
  return ParseBytes(data, size, std::move(owner), /*mapped=*/false, source);
}

absl::StatusOr<SafetensorsFile> SafetensorsFile::ParseBytes(const uint8_t* bytes, uint64_t size,
                                                            std::shared_ptr<const void> owner,
                                                            bool mapped, const std::string& source) {
  if (size < 8) {
    return Corrupt(source, absl::StrCat("file has ", size,
                                        " bytes, fewer than the 8-byte header length"));
  }
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | static_cast<uint8_t>(bytes[i]);
  if (header_len > kMaxHeaderBytes) {
    return Corrupt(source, absl::StrCat("header length ", header_len, " exceeds the 100 MB limit"));
  }
  if (header_len > size - 8) {
    return Corrupt(source, absl::StrCat("header length ", header_len, " runs past the end of the ",
                                        size, "-byte file (truncated?)"));
  }

  // Duplicate keys are legal JSON but ambiguous tensors: catch them while parsing.
  std::set<std::string> seen;
  std::string duplicate;
  auto on_event = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    if (event == nlohmann::json::parse_event_t::key && depth == 1) {
      const std::string key = parsed.get<std::string>();
      if (!seen.insert(key).second && duplicate.empty()) duplicate = key;
    }
    return true;
  };
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(bytes + 8, bytes + 8 + header_len, on_event);
  } catch (const nlohmann::json::exception& e) {
    return Corrupt(source, absl::StrCat("header is not valid JSON (", e.what(), ")"));
  }
  if (!duplicate.empty()) return Corrupt(source, absl::StrCat("duplicate tensor name '", duplicate, "'"));
  if (!header.is_object()) return Corrupt(source, "header is not a JSON object");

  SafetensorsFile file;
  file.source_ = source;
  const uint64_t data_begin = 8 + header_len;
  const uint64_t data_size = size - data_begin;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;  // begin, end per tensor
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const nlohmann::json& entry = it.value();
    if (name == "__metadata__") {
      if (!entry.is_object()) return Corrupt(source, "__metadata__ is not an object");
      for (auto m = entry.begin(); m != entry.end(); ++m) {
        if (!m.value().is_string()) {
          return Corrupt(source, absl::StrCat("__metadata__ value '", m.key(), "' is not a string"));
        }
        file.metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string where = absl::StrCat("tensor '", name, "': ");
    if (!entry.is_object()) return Corrupt(source, where + "entry is not an object");
    auto dtype_it = entry.find("dtype");
    auto shape_it = entry.find("shape");
    auto offsets_it = entry.find("data_offsets");
    if (dtype_it == entry.end() || !dtype_it->is_string()) {
      return Corrupt(source, where + "missing or non-string 'dtype'");
    }
    TensorView view;
    view.name = name;
    if (!LookupDType(dtype_it->get<std::string>(), &view.dtype)) {
      return Corrupt(source, where + "unknown dtype '" + dtype_it->get<std::string>() + "'");
    }
    if (shape_it == entry.end() || !shape_it->is_array()) {
      return Corrupt(source, where + "missing or non-array 'shape'");
    }
    // numel * dtype size must not overflow; the data size bounds every valid product.
    uint64_t numel = 1;
    for (const auto& d : *shape_it) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0) {
        return Corrupt(source, where + "shape has a negative or non-integer dimension");
      }
      const uint64_t dim = d.get<uint64_t>();
      if (dim != 0 && numel > std::numeric_limits<uint64_t>::max() / dim / 8) {
        return Corrupt(source, where + "shape product overflows");
      }
      numel *= dim;
      view.shape.push_back(static_cast<int64_t>(dim));
    }
    if (offsets_it == entry.end() || !offsets_it->is_array() || offsets_it->size() != 2 ||
        !(*offsets_it)[0].is_number_unsigned() || !(*offsets_it)[1].is_number_unsigned()) {
      return Corrupt(source, where + "'data_offsets' is not a pair of non-negative integers");
    }
    const uint64_t begin = (*offsets_it)[0].get<uint64_t>();
    const uint64_t end = (*offsets_it)[1].get<uint64_t>();
    if (begin > end || end > data_size) {
      return Corrupt(source, absl::StrCat(where, "data_offsets [", begin, ", ", end,
                                          ") run outside the ", data_size, "-byte data buffer"));
    }
    const uint64_t expected = numel * static_cast<uint64_t>(DTypeSize(view.dtype));
    if (end - begin != expected) {
      return Corrupt(source, absl::StrCat(where, "holds ", end - begin, " bytes but ",
                                          DTypeName(view.dtype), " ", ShapeString(view.shape),
                                          " needs ", expected));
    }
    view.nbytes = static_cast<int64_t>(expected);
    ranges.emplace_back(begin, end);
    file.tensors_.push_back(std::move(view));
  }

  // The data buffer must be tiled exactly: no overlap, no gap, nothing after the last tensor.
  std::vector<size_t> order(file.tensors_.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return ranges[a] < ranges[b]; });
  uint64_t cursor = 0;
  for (size_t i : order) {
    if (ranges[i].first < cursor) {
      return Corrupt(source, absl::StrCat("tensor '", file.tensors_[i].name, "' overlaps another tensor"));
    }
    if (ranges[i].first > cursor) {
      return Corrupt(source, absl::StrCat("gap of ", ranges[i].first - cursor,
                                          " bytes before tensor '", file.tensors_[i].name, "'"));
    }
    cursor = ranges[i].second;
  }
  if (cursor != data_size) {
    return Corrupt(source, absl::StrCat(data_size - cursor,
                                        " bytes after the last tensor are not described by the header"));
  }

  file.owner_ = std::move(owner);
  file.mapped_ = mapped;
  const uint8_t* base = bytes + data_begin;
  std::vector<TensorView> sorted;
  sorted.reserve(order.size());
  for (size_t i : order) {
    TensorView view = std::move(file.tensors_[i]);
    view.data = base + ranges[i].first;
    sorted.push_back(std::move(view));
  }
  file.tensors_ = std::move(sorted);
  return file;
}

void SafetensorsFile::Release(const uint8_t* data, int64_t nbytes) const {
  if (!mapped_ || nbytes <= 0) return;
  // Whole pages only: a partly consumed page may still hold a neighbour's bytes.
  const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto begin = reinterpret_cast<uintptr_t>(data);
  const uintptr_t first = (begin + page - 1) / page * page;
  const uintptr_t last = (begin + static_cast<uintptr_t>(nbytes)) / page * page;
  if (last > first) ::madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);
}

const TensorView* SafetensorsFile::Find(const std::string& name) const {
  for (const auto& t : tensors_) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

absl::Status WriteSafetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                              const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto& t : tensors) {
    if (header.contains(t.name)) {
      return absl::InvalidArgumentError(absl::StrCat("duplicate tensor name '", t.name, "'"));
    }
    int64_t numel = 1;
    for (int64_t d : t.shape) numel *= d;
    if (static_cast<int64_t>(t.bytes.size()) != numel * DTypeSize(t.dtype)) {
      return absl::InvalidArgumentError(absl::StrCat("tensor '", t.name, "' has ", t.bytes.size(),
                                                     " bytes for shape ", ShapeString(t.shape)));
    }
    header[t.name] = {{"dtype", DTypeName(t.dtype)},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + t.bytes.size()}}};
    offset += t.bytes.size();
  }
  std::string json = header.dump();
  // Spaces up to a multiple of 8, as the safetensors library writes it: the data buffer starts
  // 8-byte aligned, so a reader may point tensors into a map of the file.
  json.append((8 - json.size() % 8) % 8, ' ');
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) return absl::PermissionDeniedError(absl::StrCat(path, ": cannot write"));
    uint64_t len = json.size();
    for (int i = 0; i < 8; ++i) out.put(static_cast<char>((len >> (8 * i)) & 0xff));
    out << json;
    for (const auto& t : tensors) out.write(t.bytes.data(), static_cast<std::streamsize>(t.bytes.size()));
    if (!out) return absl::DataLossError(absl::StrCat(path, ": write failed"));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::PermissionDeniedError(absl::StrCat(path, ": cannot rename temporary file"));
  }
  return absl::OkStatus();
}

}  // namespace longenc::encoder
