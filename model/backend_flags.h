// The flags that choose and configure the model, defined once for longenc-server and
// longenc-encode so their names, defaults and help agree: --model_dir, --device, --threads,
// --attention, --attention_options, --position_mode, --attention_preset, --max_exact_tokens,
// --request_option_limits. Torch-free.
#ifndef LONGENC_MODEL_BACKEND_FLAGS_H_
#define LONGENC_MODEL_BACKEND_FLAGS_H_

#include "model/backend.h"

namespace longenc::model {

// Where these flags are defined, for InstallUsage().
inline constexpr char kBackendFlagsFile[] = "model/backend_flags.cc";

// The flags as BackendOptions; an empty --model_dir becomes DefaultModelDir(). Values are
// checked where they are used (CreateTorchBackend, the server's ValidateOptions).
BackendOptions BackendOptionsFromFlags();

}  // namespace longenc::model

#endif  // LONGENC_MODEL_BACKEND_FLAGS_H_
