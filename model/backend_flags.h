// The flags that choose and configure the model, defined once for longenc-server and
// longenc-encode so their names, defaults and help agree: --model_dir, --device, --threads, --dtype,
// --attention, --attention_options, --position_mode, --attention_preset, --max_exact_tokens,
// --request_option_limits. Torch-free.
#ifndef LONGENC_MODEL_BACKEND_FLAGS_H_
#define LONGENC_MODEL_BACKEND_FLAGS_H_

#include <string>

#include "absl/status/statusor.h"
#include "model/backend.h"

namespace longenc::model {

// Where these flags are defined, for InstallUsage().
inline constexpr char kBackendFlagsFile[] = "model/backend_flags.cc";

// --dtype's help, shared with longenc-calibrate (which defines its own model flags).
inline constexpr char kDTypeHelp[] =
    "Precision of the model's weights and activations: float32, bfloat16 (faster on CPUs with "
    "AVX512-BF16 or AMX and on GPUs; docs/BENCHMARKS.md, docs/QUALITY.md) or float16 (CUDA "
    "only). Norms, softmax and pooling accumulate in float32; attention variants compute in "
    "float32.";

// The flags as BackendOptions; an empty --model_dir becomes DefaultModelDir(). Values are
// checked where they are used (CreateTorchBackend, the server's ValidateOptions).
BackendOptions BackendOptionsFromFlags();

// The offline tools' --pooling (model, mean, cls, last) and --normalize (model, true, false):
// "model" is the directory's choice, `info`'s default. Errors name the flag and its values.
absl::StatusOr<Pooling> PoolingFromFlag(const std::string& value, const ModelInfo& info);
absl::StatusOr<bool> NormalizeFromFlag(const std::string& value, const ModelInfo& info);

}  // namespace longenc::model

#endif  // LONGENC_MODEL_BACKEND_FLAGS_H_
