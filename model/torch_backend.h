// The only way to obtain the LibTorch implementation of model::Backend. Torch-free header:
// the server's wiring includes it without seeing torch.
#ifndef LONGENC_MODEL_TORCH_BACKEND_H_
#define LONGENC_MODEL_TORCH_BACKEND_H_

#include <memory>

#include "absl/status/statusor.h"
#include "model/backend.h"

namespace longenc::model {

// Loads config.json, model.safetensors and vocab.txt from options.model_dir, moves the
// model to options.device and warms it up. Errors name the file and the problem
// (NotFound, InvalidArgument, FailedPrecondition for "CUDA requested but not available").
absl::StatusOr<std::unique_ptr<Backend>> CreateTorchBackend(const BackendOptions& options);

}  // namespace longenc::model

#endif  // LONGENC_MODEL_TORCH_BACKEND_H_
