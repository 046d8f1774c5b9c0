// A model directory's weights: one model.safetensors, or the shards that
// model.safetensors.index.json lists (what save_pretrained writes past its shard size). Every
// shard is memory-mapped (safetensors.h), so opening costs no copy of the weights.
//
// Torch-free. Ownership: a WeightFiles owns its shards; the TensorViews it hands out live as
// long as it does. Thread-compatible.
#ifndef LONGENC_MODEL_ENCODER_WEIGHT_FILES_H_
#define LONGENC_MODEL_ENCODER_WEIGHT_FILES_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "model/encoder/safetensors.h"

namespace longenc::encoder {

class WeightFiles {
 public:
  // Opens <dir>/model.safetensors.index.json if present, else <dir>/model.safetensors.
  static absl::StatusOr<WeightFiles> Open(const std::string& dir);
  // Validates index.json text: a "weight_map" object of tensor name -> shard file name (a
  // plain file name in the same directory). Returns the (name, shard) pairs.
  static absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ParseIndex(
      const std::string& json_text, const std::string& source);

  struct Entry {
    const TensorView* view;
    const SafetensorsFile* file;
  };
  // Every tensor of every shard.
  const std::vector<Entry>& entries() const { return entries_; }
  // "dir/model.safetensors" or "dir/model.safetensors.index.json", for error messages.
  const std::string& source() const { return source_; }

  WeightFiles(WeightFiles&&) = default;
  WeightFiles& operator=(WeightFiles&&) = default;

 private:
  WeightFiles() = default;
  std::string source_;
  std::vector<std::unique_ptr<SafetensorsFile>> shards_;
  std::vector<Entry> entries_;
};

}  // namespace longenc::encoder

#endif  // LONGENC_MODEL_ENCODER_WEIGHT_FILES_H_
