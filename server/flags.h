// Every command-line flag of longenc-server turned into a typed, validated ServerOptions.
// Validation messages name the flag to change. The server's own flags are defined in flags.cc;
// the model flags (--model_dir, --device, --threads, --attention, --attention_options,
// --position_mode) in model/backend_flags.cc, shared with longenc-encode so both programs
// describe them alike. `--help` lists exactly these two files' flags.
//
// Thread-safety: OptionsFromFlags() reads global flags; call it once from main() after
// absl::ParseCommandLine. ValidateOptions() is a pure function.
#ifndef LONGENC_SERVER_FLAGS_H_
#define LONGENC_SERVER_FLAGS_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "model/backend.h"
#include "server/batching/batcher.h"
#include "server/security.h"

namespace longenc::server {

struct ServerOptions {
  std::string host = "0.0.0.0";
  int port = 50051;
  std::string port_file;                    // written with the bound port once listening
  std::string model_dir;                    // resolved: flag, else $LONGENC_MODEL_DIR, else default
  std::string device = "cpu";
  int threads = 0;
  std::string dtype = "float32";            // --dtype (checked by CreateTorchBackend)
  int64_t max_batch_tokens = 16384;
  absl::Duration max_batch_delay = absl::Milliseconds(2);
  int64_t max_queue = 1024;                 // documents
  int64_t max_documents_per_request = 256;
  int64_t max_tokens_per_document = 131072;
  int64_t max_message_bytes = 64ll << 20;
  std::string attention = "full";
  std::string attention_options;
  std::string position_mode;
  std::string attention_preset;             // "NAME=variant:options;..." (operator-trusted)
  int64_t max_exact_tokens = 16384;         // document limit of attention "full"
  std::string request_option_limits;        // overrides of model/request_policy.h
  double preempt_share = 0.2;               // see BatcherOptions::preempt_share
  int prepare_threads = 4;                  // decode + tokenize requests off gRPC's threads
  std::string rope_scaling;                 // RoPE scaling past the trained length (backend.h)
  int64_t stream_window = 16;               // EmbedStream requests read ahead per stream
  absl::Duration shutdown_timeout = absl::Seconds(30);
  std::string metrics_address = "0.0.0.0:9464";
  SecurityFiles security;                   // --tls_cert, --tls_key, --tls_client_ca,
                                            // --api_keys_file (loaded by LoadServerSecurity)
};

// Checks every field; the error names the flag (e.g. "--max_queue=0: must be >= 1").
// `check_model_dir` also requires the model directory to exist.
absl::Status ValidateOptions(const ServerOptions& options, bool check_model_dir = true);

// The limits the loaded model imposes on the flags (e.g. --max_tokens_per_document must not
// exceed ModelInfo.max_tokens_per_document).
absl::Status ValidateAgainstModel(const ServerOptions& options, const model::ModelInfo& info);

// Reads the flags into options and validates them.
absl::StatusOr<ServerOptions> OptionsFromFlags();

// Sets the program usage text and makes `--help` list the server's flags.
void InstallServerUsage(const char* argv0);

model::BackendOptions ToBackendOptions(const ServerOptions& options);
batching::BatcherOptions ToBatcherOptions(const ServerOptions& options);

}  // namespace longenc::server

#endif  // LONGENC_SERVER_FLAGS_H_
