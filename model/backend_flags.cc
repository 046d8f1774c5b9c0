#include "model/backend_flags.h"

#include <string>

#include "absl/flags/flag.h"

ABSL_FLAG(std::string, model_dir, "",
          "Hugging Face BERT directory (config.json, model.safetensors, vocab.txt). Empty: "
          "$LONGENC_MODEL_DIR, else the model exported at build time (all-MiniLM-L6-v2).");
ABSL_FLAG(std::string, device, "cpu", "Where the model runs: cpu, cuda or cuda:N.");
ABSL_FLAG(int, threads, 0, "Intra-op CPU threads of the model; 0 = one per core.");
ABSL_FLAG(std::string, attention, "full",
          "Attention variant: full (exact), clustered, iclustered, cast, yoso (the server's "
          "GetInfo lists them; requests may override the server's default).");
ABSL_FLAG(std::string, attention_options, "",
          "Options of --attention, as key=value,key=value (README: attention variants).");
ABSL_FLAG(std::string, position_mode, "",
          "How documents beyond the 512-position table are encoded: chunk, recurrent, grouped "
          "or interpolate, each but chunk optionally with ,logscale; empty = the model's "
          "default (grouped,logscale).");

namespace longenc::model {

BackendOptions BackendOptionsFromFlags() {
  BackendOptions options;
  options.model_dir = absl::GetFlag(FLAGS_model_dir);
  if (options.model_dir.empty()) options.model_dir = DefaultModelDir();
  options.device = absl::GetFlag(FLAGS_device);
  options.threads = absl::GetFlag(FLAGS_threads);
  options.attention = absl::GetFlag(FLAGS_attention);
  options.attention_options = absl::GetFlag(FLAGS_attention_options);
  options.position_mode = absl::GetFlag(FLAGS_position_mode);
  return options;
}

}  // namespace longenc::model
