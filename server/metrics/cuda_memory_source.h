// The server's DeviceMemorySource on a CUDA device: the caching allocator's counters
// (model/cuda_memory.h), read after each batch and published as longenc_device_memory_*.
// Header-only, included by server/main.cc alone: it calls into the model library, which only the
// server's wiring links, so the metrics libraries stay free of LibTorch and CUDA.
//
// Thread-safety: as DeviceMemorySource (the inference thread reads it).
#ifndef LONGENC_SERVER_METRICS_CUDA_MEMORY_SOURCE_H_
#define LONGENC_SERVER_METRICS_CUDA_MEMORY_SOURCE_H_

#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "model/cuda_memory.h"
#include "server/metrics/observers.h"

namespace longenc::metrics {

class CudaMemorySource final : public DeviceMemorySource {
 public:
  CudaMemorySource(std::string device, int index) : device_(std::move(device)), index_(index) {}
  std::string device() const override { return device_; }
  DeviceMemory Read() override {
    const model::CudaMemory memory = model::ReadCudaMemory(index_);
    return {memory.allocated_bytes, memory.reserved_bytes, memory.peak_allocated_bytes,
            memory.total_bytes};
  }

 private:
  const std::string device_;
  const int index_;
};

// The source for ModelInfo::device: "cuda:N" gets one; anything else (CPU, which reports process
// memory instead, docs/METRICS.md) gets null.
inline std::unique_ptr<DeviceMemorySource> DeviceMemorySourceFor(const std::string& device) {
  int index = 0;
  if (!absl::StartsWith(device, "cuda:") || !absl::SimpleAtoi(device.substr(5), &index)) {
    return nullptr;
  }
  return std::make_unique<CudaMemorySource>(device, index);
}

}  // namespace longenc::metrics

#endif  // LONGENC_SERVER_METRICS_CUDA_MEMORY_SOURCE_H_
