// ReadCudaMemory / ResetCudaPeakMemory from c10's CUDA caching allocator (LONGENC_CUDA=ON).
#include "model/cuda_memory.h"

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
  return memory;
}

}  // namespace longenc::model
