// Reading and writing the safetensors format (header length, JSON header, data buffer).
//
// Torch-free on purpose: the reader is fuzzed alone and also loads CAST surrogate files.
// Every malformed input is an absl error naming the file and the problem; nothing here
// crashes or reads out of bounds on hostile input (docs/ARCHITECTURE.md, "Model files: what
// the readers refuse", lists the rules).
//
// Ownership: a SafetensorsFile owns its bytes (a read-only memory map of the file for Open(),
// a string for Parse()); TensorView::data points into them and lives as long as the file
// object or a holder of bytes_owner(). Mapped pages are read from the page cache on first touch, so opening a multi-GB
// checkpoint costs no copy; Release() hands pages the caller has consumed back to the kernel,
// which keeps a load's peak RSS at the model's size. Thread-compatible.
#ifndef LONGENC_MODEL_ENCODER_SAFETENSORS_H_
#define LONGENC_MODEL_ENCODER_SAFETENSORS_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace longenc::encoder {

enum class DType { kF64, kF32, kF16, kBF16, kI64, kI32, kI16, kI8, kU8, kBool };

const char* DTypeName(DType dtype);  // "F32", ... as spelled in the format
int64_t DTypeSize(DType dtype);

struct TensorView {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;  // little-endian, row-major
  int64_t nbytes = 0;
  int64_t numel() const;
};

class SafetensorsFile {
 public:
  // Maps and validates `path`.
  static absl::StatusOr<SafetensorsFile> Open(const std::string& path);
  // Validates `bytes` (the whole file); `source` names it in error messages.
  static absl::StatusOr<SafetensorsFile> Parse(std::string bytes, const std::string& source);

  // Tensors in file order of their data offsets.
  const std::vector<TensorView>& tensors() const { return tensors_; }
  // nullptr if absent.
  const TensorView* Find(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::string& source() const { return source_; }
  // Drops the resident pages wholly inside [data, data + nbytes) of a mapped file (they are
  // read again from the page cache if touched later); a no-op for Parse()d bytes.
  void Release(const uint8_t* data, int64_t nbytes) const;
  // True for Open()ed files: the bytes are a read-only map of the file, so a tensor may point
  // into them (writing through such a pointer faults).
  bool mapped() const { return mapped_; }
  // Keeps the bytes (the mapping or the string) alive for as long as the pointer is held, so
  // tensors that point into them may outlive this object.
  std::shared_ptr<const void> bytes_owner() const { return owner_; }

  SafetensorsFile(SafetensorsFile&&) = default;
  SafetensorsFile& operator=(SafetensorsFile&&) = default;

 private:
  SafetensorsFile() = default;
  // Validates the `size` bytes at `bytes` (kept alive by `owner`) and fills a file.
  static absl::StatusOr<SafetensorsFile> ParseBytes(const uint8_t* bytes, uint64_t size,
                                                    std::shared_ptr<const void> owner,
                                                    bool mapped, const std::string& source);
  std::string source_;
  std::shared_ptr<const void> owner_;  // the mapping or the string
  bool mapped_ = false;
  std::vector<TensorView> tensors_;
  std::map<std::string, std::string> metadata_;
};

// A tensor to write: raw little-endian bytes of prod(shape) * DTypeSize(dtype).
struct TensorToWrite {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  std::string bytes;
};

// Writes `tensors` (names must be unique) atomically to `path` (temporary file + rename).
absl::Status WriteSafetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                              const std::map<std::string, std::string>& metadata = {});

}  // namespace longenc::encoder

#endif  // LONGENC_MODEL_ENCODER_SAFETENSORS_H_
