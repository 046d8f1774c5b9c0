// The LONGENC_CUDA=OFF build links no CUDA library: libtorch_cpu reports no CUDA device, so
// --device=cuda is refused at load and these are never reached with a CUDA device.
#include "model/cuda_memory.h"

namespace longenc::model {

void ResetCudaPeakMemory(int /*index*/) {}

CudaMemory ReadCudaMemory(int /*index*/) { return CudaMemory{}; }

}  // namespace longenc::model
