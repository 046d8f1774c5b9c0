#include "server/flags.h"

#include <sys/stat.h>

#include <limits>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "common/usage.h"
#include "model/backend_flags.h"

ABSL_FLAG(std::string, host, "0.0.0.0",
          "Address to listen on for gRPC (0.0.0.0 = every interface, 127.0.0.1 = local only).");
ABSL_FLAG(int, port, 50051,
          "gRPC port; 0 picks a free port. The bound address is printed to stderr as "
          "'listening on HOST:PORT'.");
ABSL_FLAG(std::string, port_file, "",
          "If set, the bound port is written to this file once the server listens (for "
          "scripts and tests using --port=0).");
ABSL_FLAG(int64_t, max_batch_tokens, 16384,
          "Token budget of one batch, counted with padding (longest document x documents). "
          "A document longer than this runs alone.");
ABSL_FLAG(absl::Duration, max_batch_delay, absl::Milliseconds(2),
          "Longest time the oldest queued document waits for batch-mates before its batch "
          "starts (a full batch starts at once). 0 = never wait.");
ABSL_FLAG(int64_t, max_queue, 1024,
          "Documents that may wait in the queue; a request that does not fit is refused at "
          "once with RESOURCE_EXHAUSTED. Must be >= --max_documents_per_request.");
ABSL_FLAG(int64_t, max_documents_per_request, 256,
          "Most documents in one Embed request (INVALID_ARGUMENT above it).");
ABSL_FLAG(int64_t, max_tokens_per_document, 131072,
          "Most tokens of one document, [CLS] and [SEP] included. Longer documents are "
          "refused (INVALID_ARGUMENT) unless the request asks for truncation. Must not exceed "
          "what the model supports.");
ABSL_FLAG(int64_t, max_message_bytes, 64ll << 20,
          "Largest gRPC message received or sent, in bytes (a 131k-token document as text is "
          "larger than gRPC's 4 MiB default).");
ABSL_FLAG(int64_t, stream_window, 16,
          "EmbedStream backpressure: requests of one stream read ahead of the responses "
          "written; the server stops reading until the client consumes responses.");
ABSL_FLAG(absl::Duration, shutdown_timeout, absl::Seconds(30),
          "On SIGTERM/SIGINT, how long admitted work may take to finish; after it the running "
          "document stops at its next step and what is left fails with UNAVAILABLE.");
ABSL_FLAG(double, preempt_share, 0.2,
          "While a long batch runs, shorter requests run between its steps (a head group, a "
          "block of rows, a layer) as long as they take at most this share of its own compute "
          "time: short calls wait a step, not a whole document, and a long one is slowed by at "
          "most this share. 0 turns preemption off.");
ABSL_FLAG(int, prepare_threads, 4,
          "Threads that decode, validate and tokenize requests, so gRPC's own threads (health, "
          "small calls) never wait behind a large message.");
ABSL_FLAG(std::string, metrics_address, "0.0.0.0:9464",
          "Prometheus /metrics listener, HOST:PORT; port 0 disables metrics.");

ABSL_FLAG(std::string, tls_cert, "",
          "TLS on the gRPC port: the server's certificate chain (PEM, its own certificate "
          "first). Needs --tls_key. Empty = plain text. See docs/SECURITY.md.");
ABSL_FLAG(std::string, tls_key, "", "The private key (PEM, unencrypted) of --tls_cert.");
ABSL_FLAG(std::string, tls_client_ca, "",
          "Mutual TLS: CA certificate(s) (PEM) that client certificates must chain to; "
          "clients without such a certificate fail the handshake. Needs --tls_cert.");
ABSL_FLAG(std::string, api_keys_file, "",
          "Bearer-token authentication: a file with one API key per line ('NAME KEY' or 'KEY'; "
          "'#' comments). Every longenc.v1.Encoder call then needs metadata 'authorization: "
          "Bearer KEY' (else UNAUTHENTICATED); health and reflection stay open. Read at "
          "start-up.");

namespace longenc::server {
namespace {

absl::Status FlagError(absl::string_view flag, const std::string& value,
                       absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat("--", flag, "=", value, ": ", problem));
}

}  // namespace

absl::Status ValidateOptions(const ServerOptions& o, bool check_model_dir) {
  if (o.host.empty()) return FlagError("host", o.host, "must not be empty");
  if (o.port < 0 || o.port > 65535) {
    return FlagError("port", std::to_string(o.port), "must be in [0, 65535]");
  }
  if (o.device != "cpu" && o.device != "cuda" && !absl::StartsWith(o.device, "cuda:")) {
    return FlagError("device", o.device, "must be cpu, cuda or cuda:N");
  }
  if (absl::StartsWith(o.device, "cuda:")) {
    int index = 0;
    if (!absl::SimpleAtoi(o.device.substr(5), &index) || index < 0) {
      return FlagError("device", o.device, "the device index after 'cuda:' must be >= 0");
    }
  }
  if (o.threads < 0) return FlagError("threads", std::to_string(o.threads), "must be >= 0");
  if (o.max_tokens_per_document < 3) {
    return FlagError("max_tokens_per_document", std::to_string(o.max_tokens_per_document),
                     "must be >= 3 ([CLS], one token, [SEP])");
  }
  if (o.max_batch_tokens < 1) {
    return FlagError("max_batch_tokens", std::to_string(o.max_batch_tokens), "must be >= 1");
  }
  if (o.max_batch_delay < absl::ZeroDuration() || o.max_batch_delay > absl::Seconds(10)) {
    return FlagError("max_batch_delay", absl::FormatDuration(o.max_batch_delay),
                     "must be in [0, 10s]");
  }
  if (o.max_documents_per_request < 1) {
    return FlagError("max_documents_per_request", std::to_string(o.max_documents_per_request),
                     "must be >= 1");
  }
  if (o.max_queue < o.max_documents_per_request) {
    return FlagError("max_queue", std::to_string(o.max_queue),
                     absl::StrCat("must be >= --max_documents_per_request (",
                                  o.max_documents_per_request,
                                  "), or a full-size request could never be admitted"));
  }
  if (o.max_message_bytes < (64 << 10) ||
      o.max_message_bytes > std::numeric_limits<int32_t>::max()) {
    return FlagError("max_message_bytes", std::to_string(o.max_message_bytes),
                     "must be in [65536, 2147483647] (gRPC takes an int)");
  }
  if (o.attention.empty()) return FlagError("attention", o.attention, "must not be empty");
  if (o.stream_window < 1) {
    return FlagError("stream_window", std::to_string(o.stream_window), "must be >= 1");
  }
  if (!(o.preempt_share >= 0 && o.preempt_share <= 10)) {
    return FlagError("preempt_share", std::to_string(o.preempt_share), "must be in [0, 10]");
  }
  if (o.prepare_threads < 1 || o.prepare_threads > 256) {
    return FlagError("prepare_threads", std::to_string(o.prepare_threads),
                     "must be in [1, 256]");
  }
  if (o.max_exact_tokens < 3) {
    return FlagError("max_exact_tokens", std::to_string(o.max_exact_tokens), "must be >= 3");
  }
  if (o.shutdown_timeout < absl::ZeroDuration()) {
    return FlagError("shutdown_timeout", absl::FormatDuration(o.shutdown_timeout),
                     "must be >= 0");
  }
  {
    const size_t colon = o.metrics_address.rfind(':');
    int mport = -1;
    if (colon == std::string::npos || colon == 0 ||
        !absl::SimpleAtoi(o.metrics_address.substr(colon + 1), &mport) || mport < 0 ||
        mport > 65535) {
      return FlagError("metrics_address", o.metrics_address,
                       "must be HOST:PORT with PORT in [0, 65535] (0 disables metrics)");
    }
  }
  if (check_model_dir) {
    // stat(), not std::filesystem: libtorch.so exports its own, incompatible copy of the
    // std::filesystem symbols and longenc-server links it.
    struct stat st;
    if (stat(o.model_dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      return FlagError("model_dir", o.model_dir,
                       "is not a directory (set --model_dir or $LONGENC_MODEL_DIR to a "
                       "directory with config.json, model.safetensors and tokenizer.json or "
                       "vocab.txt)");
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateAgainstModel(const ServerOptions& o, const model::ModelInfo& info) {
  if (info.max_tokens_per_document > 0 &&
      o.max_tokens_per_document > info.max_tokens_per_document) {
    return FlagError("max_tokens_per_document", std::to_string(o.max_tokens_per_document),
                     absl::StrCat("exceeds what the model accepts (",
                                  info.max_tokens_per_document, " tokens)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<ServerOptions> OptionsFromFlags() {
  ServerOptions o;
  o.host = absl::GetFlag(FLAGS_host);
  o.port = absl::GetFlag(FLAGS_port);
  o.port_file = absl::GetFlag(FLAGS_port_file);
  const model::BackendOptions backend = model::BackendOptionsFromFlags();
  o.model_dir = backend.model_dir;
  o.device = backend.device;
  o.threads = backend.threads;
  o.dtype = backend.dtype;
  o.max_batch_tokens = absl::GetFlag(FLAGS_max_batch_tokens);
  o.max_batch_delay = absl::GetFlag(FLAGS_max_batch_delay);
  o.max_queue = absl::GetFlag(FLAGS_max_queue);
  o.max_documents_per_request = absl::GetFlag(FLAGS_max_documents_per_request);
  o.max_tokens_per_document = absl::GetFlag(FLAGS_max_tokens_per_document);
  o.max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  o.attention = backend.attention;
  o.attention_options = backend.attention_options;
  o.position_mode = backend.position_mode;
  o.attention_preset = backend.attention_presets;
  o.max_exact_tokens = backend.max_exact_tokens;
  o.request_option_limits = backend.request_option_limits;
  o.preempt_share = absl::GetFlag(FLAGS_preempt_share);
  o.prepare_threads = absl::GetFlag(FLAGS_prepare_threads);
  o.rope_scaling = backend.rope_scaling;
  o.stream_window = absl::GetFlag(FLAGS_stream_window);
  o.shutdown_timeout = absl::GetFlag(FLAGS_shutdown_timeout);
  o.metrics_address = absl::GetFlag(FLAGS_metrics_address);
  o.security.tls_cert = absl::GetFlag(FLAGS_tls_cert);
  o.security.tls_key = absl::GetFlag(FLAGS_tls_key);
  o.security.tls_client_ca = absl::GetFlag(FLAGS_tls_client_ca);
  o.security.api_keys_file = absl::GetFlag(FLAGS_api_keys_file);
  absl::Status s = ValidateOptions(o);
  if (!s.ok()) return s;
  return o;
}

void InstallServerUsage(const char* argv0) {
  InstallUsage("longenc-server",
               absl::StrCat(
                   "longenc-server: gRPC service (longenc.v1.Encoder) that embeds long documents.\n"
                   "Usage: ", argv0, " [--flag=value ...]\n"
                   "SIGTERM/SIGINT drain: health NOT_SERVING, new calls UNAVAILABLE, queued work "
                   "finishes, exit 0."),
               {"server/flags.cc", model::kBackendFlagsFile});
}

model::BackendOptions ToBackendOptions(const ServerOptions& o) {
  model::BackendOptions b;
  b.model_dir = o.model_dir;
  b.device = o.device;
  b.threads = o.threads;
  b.dtype = o.dtype;
  b.attention = o.attention;
  b.attention_options = o.attention_options;
  b.position_mode = o.position_mode;
  b.rope_scaling = o.rope_scaling;
  b.max_tokens_per_document = o.max_tokens_per_document;
  b.attention_presets = o.attention_preset;
  b.max_exact_tokens = o.max_exact_tokens;
  b.request_option_limits = o.request_option_limits;
  return b;
}

batching::BatcherOptions ToBatcherOptions(const ServerOptions& o) {
  batching::BatcherOptions b;
  b.max_batch_tokens = o.max_batch_tokens;
  b.max_batch_delay = o.max_batch_delay;
  b.max_queue_documents = o.max_queue;
  b.preempt_share = o.preempt_share;
  return b;
}

}  // namespace longenc::server
