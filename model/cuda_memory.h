// The CUDA caching allocator's per-device counters, behind a torch-free header so that
// torch_backend.cc carries no CUDA include and a LONGENC_CUDA=OFF build compiles without CUDA
// headers. cuda_memory.cc reads the allocator; cuda_memory_none.cc (LONGENC_CUDA=OFF, where
// --device=cuda is refused at load) reports zeros.
// Thread-safety: the allocator's counters are thread-safe; call from the batch thread.
#ifndef LONGENC_MODEL_CUDA_MEMORY_H_
#define LONGENC_MODEL_CUDA_MEMORY_H_

#include <cstdint>

namespace longenc::model {

struct CudaMemory {
  int64_t peak_allocated_bytes = 0;  // since the last ResetCudaPeakMemory
  int64_t allocated_bytes = 0;
  int64_t reserved_bytes = 0;
  int64_t total_bytes = 0;  // the device's memory
};

// Starts a new peak for device `index`.
void ResetCudaPeakMemory(int index);

// The allocator's counters of device `index`, over all pool types.
CudaMemory ReadCudaMemory(int index);

}  // namespace longenc::model

#endif  // LONGENC_MODEL_CUDA_MEMORY_H_
