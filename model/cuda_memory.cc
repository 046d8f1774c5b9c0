// ReadCudaMemory / ResetCudaPeakMemory from c10's CUDA caching allocator (LONGENC_CUDA=ON).
#include "model/cuda_memory.h"

#include <map>
#include <mutex>

#include <ATen/cuda/CUDAContextLight.h>
#include <c10/cuda/CUDACachingAllocator.h>

namespace longenc::model {

void ResetCudaPeakMemory(int index) {
  c10::cuda::CUDACachingAllocator::resetPeakStats(static_cast<c10::DeviceIndex>(index));
}

CudaMemory ReadCudaMemory(int index) {
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(static_cast<c10::DeviceIndex>(index));
  // Index 0 of each stat array is the aggregate over pool types.
  CudaMemory memory;
  memory.peak_allocated_bytes = stats.allocated_bytes[0].peak;
  memory.allocated_bytes = stats.allocated_bytes[0].current;
  memory.reserved_bytes = stats.reserved_bytes[0].current;
  // Fixed per device: asked once, through LibTorch (a direct CUDA runtime call would link the
  // toolkit's libcudart beside the wheel's, which the image's staging refuses).
  static std::mutex mu;
  static std::map<int, int64_t> totals;
  const std::lock_guard<std::mutex> lock(mu);
  auto [it, added] = totals.try_emplace(index, 0);
  if (added) {
    it->second = static_cast<int64_t>(
        at::cuda::getDeviceProperties(static_cast<c10::DeviceIndex>(index))->totalGlobalMem);
  }
  memory.total_bytes = it->second;
  return memory;
}

}  // namespace longenc::model
