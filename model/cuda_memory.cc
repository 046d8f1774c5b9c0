// ReadCudaMemory / ResetCudaPeakMemory from c10's CUDA caching allocator (LONGENC_CUDA=ON).
#include "model/cuda_memory.h"

#include <map>
#include <mutex>

#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_runtime_api.h>

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
  // Fixed per device: asked once (cudaMemGetInfo; not a synchronisation).
  static std::mutex mu;
  static std::map<int, int64_t> totals;
  const std::lock_guard<std::mutex> lock(mu);
  auto [it, added] = totals.try_emplace(index, 0);
  if (added) {
    size_t free_bytes = 0, total_bytes = 0;
    c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(index));
    if (cudaMemGetInfo(&free_bytes, &total_bytes) == cudaSuccess) {
      it->second = static_cast<int64_t>(total_bytes);
    }
  }
  memory.total_bytes = it->second;
  return memory;
}

}  // namespace longenc::model
