// longenc-server: flags -> listen (health NOT_SERVING) -> load the model -> SERVING -> wait for
// SIGTERM/SIGINT -> drain -> exit 0. The only server file that links LibTorch (through
// CreateTorchBackend); it includes no gRPC or protobuf header (see grpc_server.h).
#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>

#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "model/tokenizer/tokenizer.h"
#include "model/torch_backend.h"
#include "server/batching/batcher.h"
#include "server/flags.h"
#include "server/grpc_server.h"
#include "server/metrics/cuda_memory_source.h"
#include "server/metrics/metrics.h"
#include "server/metrics/observers.h"
#include "server/security.h"

namespace longenc::server {
namespace {

int Fail(const std::string& what, const absl::Status& status) {
  std::fprintf(stderr, "longenc-server: %s: %s\n", what.c_str(), status.ToString().c_str());
  return 1;
}

int Run(int argc, char** argv) {
  InstallServerUsage(argv[0]);
  absl::ParseCommandLine(argc, argv);
  absl::StatusOr<ServerOptions> options = OptionsFromFlags();
  if (!options.ok()) {
    std::fprintf(stderr, "longenc-server: %s\n", std::string(options.status().message()).c_str());
    return 2;
  }
  // TLS files and API keys are read and checked before anything listens: a bad file refuses
  // start-up (exit 2) with a message naming the flag and the file.
  absl::StatusOr<ServerSecurity> security = LoadServerSecurity(options->security);
  if (!security.ok()) {
    std::fprintf(stderr, "longenc-server: %s\n", std::string(security.status().message()).c_str());
    return 2;
  }

  // Block the stop signals in every thread (threads inherit the mask); main waits for them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  // Metrics: one registry, its /metrics exposer (--metrics_address; port 0 disables) and the
  // adapters behind the service's and the batcher's observer hooks.
  metrics::Metrics metrics;
  absl::StatusOr<std::unique_ptr<metrics::MetricsExposer>> exposer =
      metrics::MetricsExposer::Start(options->metrics_address, metrics);
  if (!exposer.ok()) return Fail("metrics", exposer.status());
  if ((*exposer)->enabled()) {
    std::fprintf(stderr, "longenc-server: metrics on %s/metrics (port %d)\n",
                 options->metrics_address.c_str(), (*exposer)->port());
  }
  metrics::MetricsServiceObserver service_observer_impl(metrics);
  ServiceObserver* service_observer = &service_observer_impl;

  EncoderServer::Options server_options;
  server_options.host = options->host;
  server_options.port = options->port;
  server_options.limits.max_documents_per_request = options->max_documents_per_request;
  server_options.limits.max_tokens_per_document = options->max_tokens_per_document;
  server_options.limits.max_message_bytes = options->max_message_bytes;
  server_options.limits.max_batch_tokens = options->max_batch_tokens;
  server_options.limits.max_queue_documents = options->max_queue;
  server_options.limits.max_batch_delay = options->max_batch_delay;
  server_options.limits.stream_window = options->stream_window;
  server_options.limits.prepare_threads = options->prepare_threads;
  server_options.security = *security;
  absl::StatusOr<std::unique_ptr<EncoderServer>> server =
      EncoderServer::Start(server_options, service_observer);
  if (!server.ok()) return Fail("listen", server.status());
  std::fprintf(stderr, "longenc-server: listening on %s, %s (loading model from %s)\n",
               (*server)->address().c_str(), security->Describe().c_str(),
               options->model_dir.c_str());
  for (const std::string& warning : security->warnings) {
    std::fprintf(stderr, "longenc-server: warning: %s\n", warning.c_str());
  }
  if (!options->port_file.empty()) {
    std::ofstream(options->port_file) << (*server)->port() << "\n";
  }

  absl::StatusOr<std::unique_ptr<model::Backend>> backend =
      model::CreateTorchBackend(ToBackendOptions(*options));
  if (!backend.ok()) return Fail("loading the model", backend.status());
  const model::ModelInfo& info = (*backend)->info();
  if (absl::Status s = ValidateAgainstModel(*options, info); !s.ok()) return Fail("flags", s);
  absl::StatusOr<std::unique_ptr<tokenizer::Tokenizer>> tokenizer =
      tokenizer::LoadTokenizer(options->model_dir);
  if (!tokenizer.ok()) return Fail("loading the tokenizer", tokenizer.status());

  metrics.SetModelInfo({info.model_name, info.default_attention, info.default_position_mode,
                        info.device, info.dtype, LONGENC_VERSION});
  if (info.device == "cpu") metrics.ReportProcessMemoryAsDevice(info.device);
  // On CUDA the allocator's counters after every batch (longenc_device_memory_*).
  const std::unique_ptr<metrics::DeviceMemorySource> device_memory =
      metrics::DeviceMemorySourceFor(info.device);
  metrics::MetricsBatchObserver batch_observer(metrics, info.default_attention,
                                               info.default_position_mode, device_memory.get());
  batching::Batcher batcher(backend->get(), ToBatcherOptions(*options),
                            batching::Clock::Real(), &batch_observer);
  batcher.Start();
  (*server)->Attach(Runtime{backend->get(), tokenizer->get(), &batcher});
  std::fprintf(stderr,
               "longenc-server: SERVING %s (dim %lld) on %s, attention %s; listening on %s\n",
               info.model_name.c_str(), static_cast<long long>(info.embedding_dim),
               info.device.c_str(), info.default_attention.c_str(),
               (*server)->address().c_str());

  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  std::fprintf(stderr, "longenc-server: %s: draining (NOT_SERVING, finishing queued work)\n",
               signal_number == SIGTERM ? "SIGTERM" : "SIGINT");
  (*server)->Drain(options->shutdown_timeout);
  std::fprintf(stderr, "longenc-server: drained, exiting\n");
  return 0;
}

}  // namespace
}  // namespace longenc::server

int main(int argc, char** argv) {
  // malloc is tcmalloc (linked in, see LONGENC_TCMALLOC in CMakeLists.txt): RSS flat under a
  // 10-minute mixed soak and no page-zeroing cost on big attention buffers (docs/RELIABILITY.md).
  return longenc::server::Run(argc, argv);
}
