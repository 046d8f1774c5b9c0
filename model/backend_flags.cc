#include "model/backend_flags.h"

#include <cstdint>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"

ABSL_FLAG(std::string, model_dir, "",
          "Hugging Face model directory of a supported family (config.json, model.safetensors "
          "or its shards, tokenizer.json or vocab.txt). Empty: $LONGENC_MODEL_DIR, else the "
          "model exported at build time (all-MiniLM-L6-v2).");
ABSL_FLAG(std::string, device, "cpu", "Where the model runs: cpu, cuda or cuda:N.");
ABSL_FLAG(int, threads, 0, "Intra-op CPU threads of the model; 0 = one per core.");
ABSL_FLAG(std::string, dtype, "float32", longenc::model::kDTypeHelp);
ABSL_FLAG(std::string, attention, "full",
          "Attention variant: full (exact), clustered, iclustered, cast, yoso (the server's "
          "GetInfo lists them; requests may override the server's default).");
ABSL_FLAG(std::string, attention_options, "",
          "Options of --attention, as key=value,key=value (README: attention variants).");
ABSL_FLAG(std::string, position_mode, "",
          "How documents beyond the model's trained positions are encoded: chunk, recurrent, "
          "grouped, interpolate (learned position tables) or native (RoPE models: their own "
          "positions; learned tables: refuse longer documents), each but chunk optionally with "
          ",logscale; empty = the model's default (grouped,logscale for learned positions, "
          "native for RoPE).");
ABSL_FLAG(std::string, rope_scaling, "",
          "RoPE models only: how positions past the trained length are scaled, overriding "
          "config.json: none, linear:F, dynamic:F (NTK) or yarn:F with a factor F >= 1; empty "
          "= as config.json says.");
ABSL_FLAG(std::string, attention_preset, "",
          "Named attention settings offered to requests: NAME=variant:options, several "
          "separated by ';' (e.g. \"calibrated=cast:surrogates=/models/s.safetensors\"). A "
          "request sets attention=NAME. Presets may name files (read once at start-up); "
          "requests may not.");
ABSL_FLAG(int64_t, max_exact_tokens, 16384,
          "Longest document attention \"full\" encodes in one pass (its cost grows with the "
          "square of the length); the linear-cost variants take up to --max_tokens_per_document.");
ABSL_FLAG(std::string, request_option_limits, "",
          "Changes to what requests may set in attention_options: variant.key=min:max, "
          "variant.key=any or variant.key=none, comma-separated (docs/API.md lists the "
          "defaults). Options naming files are never allowed.");

namespace longenc::model {

BackendOptions BackendOptionsFromFlags() {
  BackendOptions options;
  options.model_dir = absl::GetFlag(FLAGS_model_dir);
  if (options.model_dir.empty()) options.model_dir = DefaultModelDir();
  options.device = absl::GetFlag(FLAGS_device);
  options.threads = absl::GetFlag(FLAGS_threads);
  options.dtype = absl::GetFlag(FLAGS_dtype);
  options.attention = absl::GetFlag(FLAGS_attention);
  options.attention_options = absl::GetFlag(FLAGS_attention_options);
  options.position_mode = absl::GetFlag(FLAGS_position_mode);
  options.attention_presets = absl::GetFlag(FLAGS_attention_preset);
  options.max_exact_tokens = absl::GetFlag(FLAGS_max_exact_tokens);
  options.request_option_limits = absl::GetFlag(FLAGS_request_option_limits);
  options.rope_scaling = absl::GetFlag(FLAGS_rope_scaling);
  return options;
}

absl::StatusOr<Pooling> PoolingFromFlag(const std::string& value, const ModelInfo& info) {
  if (value == "model") return info.default_pooling;
  if (value == "mean") return Pooling::kMean;
  if (value == "cls") return Pooling::kCls;
  if (value == "last") return Pooling::kLastToken;
  return absl::InvalidArgumentError(
      absl::StrCat("--pooling=", value, ": expected model, mean, cls or last"));
}

absl::StatusOr<bool> NormalizeFromFlag(const std::string& value, const ModelInfo& info) {
  if (value == "model") return info.default_normalize;
  if (value == "true" || value == "false") return value == "true";
  return absl::InvalidArgumentError(
      absl::StrCat("--normalize=", value, ": expected model, true or false"));
}

}  // namespace longenc::model
