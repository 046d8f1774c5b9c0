// libFuzzer target: SafetensorsFile::Parse on arbitrary bytes never crashes or reads out of
// bounds, and every file it accepts satisfies the format's rules (docs/ARCHITECTURE.md, "Model
// files: what the readers refuse"): tensors tile the data buffer exactly, in offset order, each
// holding prod(shape) * dtype size bytes. Seeds in corpus/ (a tiny valid file and
// near-misses), crashes found in regressions/.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "model/encoder/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using longenc::encoder::DTypeSize;
  using longenc::encoder::SafetensorsFile;
  auto file = SafetensorsFile::Parse(std::string(reinterpret_cast<const char*>(data), size), "fuzz");
  if (!file.ok()) {
    if (file.status().message().empty()) std::abort();  // errors must say what is wrong
    return 0;
  }
  const uint8_t* previous_end = nullptr;
  int64_t total = 0;
  for (const auto& t : file->tensors()) {
    if (t.nbytes != t.numel() * DTypeSize(t.dtype)) std::abort();
    if (previous_end != nullptr && t.data != previous_end) std::abort();  // no gap, no overlap
    previous_end = t.data + t.nbytes;
    total += t.nbytes;
    // Touch every byte so that ASan checks the view really lies inside the owned buffer.
    unsigned sum = 0;
    for (int64_t i = 0; i < t.nbytes; ++i) sum += t.data[i];
    if (file->Find(t.name) != &t) std::abort();  // names are unique
    (void)sum;
  }
  if (total > static_cast<int64_t>(size)) std::abort();
  return 0;
}
