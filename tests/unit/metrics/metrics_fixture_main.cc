// longenc_metrics_fixture: a stand-in for the server's metrics side, for tests and pictures.
//
// It records a known, deterministic set of observations on a real longenc::metrics::Metrics
// (what the service exports, nothing hand-written) and then either prints the exposition
// (--render) or serves it on --metrics_address until stdin closes or SIGTERM/SIGINT arrives.
// With --traffic_seconds it also keeps producing synthetic traffic, so rate() queries over a
// Prometheus that scrapes it have something to show. Single-threaded apart from the exposer.
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <random>
#include <string>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "server/metrics/metrics.h"

ABSL_FLAG(std::string, metrics_address, "127.0.0.1:9464",
          "host:port to serve /metrics on (port 0 disables)");
ABSL_FLAG(int, requests, 5, "successful Embed requests to record before serving");
ABSL_FLAG(int, rejected, 2, "Embed requests rejected with queue_full to record");
ABSL_FLAG(bool, render, false, "print the exposition text and exit instead of serving");
ABSL_FLAG(double, traffic_seconds, 0,
          "after the fixed observations, generate synthetic traffic for this long (method "
          "label 'EmbedStream', so counts of 'Embed' stay exact)");

namespace {

using longenc::metrics::BatchObservation;
using longenc::metrics::Metrics;
using longenc::metrics::RejectReason;

volatile sig_atomic_t g_stop = 0;
void OnSignal(int) { g_stop = 1; }

// The fixed script: every number here is what the Python tests expect to read back.
void RecordFixed(Metrics& metrics, int requests, int rejected) {
  metrics.SetModelInfo({"all-MiniLM-L6-v2", "full", "chunk", "cpu", "float32", "0.1.0"});
  metrics.ReportProcessMemoryAsDevice("cpu");
  // A GPU's allocator figures as the server's DeviceMemorySource sets them after a batch, so the
  // device-memory panel and the device alert's expression have a cuda series to read.
  metrics.SetDeviceMemory("cuda:0", {int64_t{2} << 30, int64_t{3} << 30, int64_t{5} << 29,
                                     int64_t{24} << 30});
  for (int i = 0; i < requests; ++i) {
    const int64_t tokens = 64 << (i % 6);  // 64 .. 2048
    metrics.ObserveTokenization(0.0002 * (i % 6 + 1));
    metrics.ObserveDocument(tokens, /*truncated=*/i % 5 == 4);
    if (i % 3 == 0) metrics.ObserveChunks(tokens / 256 + 1);  // every third asks for chunks
    metrics.ObserveQueue(0.001 * (i % 7));
    metrics.ObserveBatch({"full", "chunk", 1, tokens, tokens, tokens * 4096, 0.002 * tokens / 64});
    metrics.ObserveRequest("Embed", absl::StatusCode::kOk, 0.003 * tokens / 64 + 0.001);
  }
  for (int i = 0; i < rejected; ++i) {
    metrics.Reject(RejectReason::kQueueFull);
    metrics.ObserveRequest("Embed", absl::StatusCode::kResourceExhausted, 0.0001);
  }
  metrics.ObserveRequest("GetInfo", absl::StatusCode::kOk, 0.0003);
}

// Synthetic load shaped like the service's: lengths from 32 to 8192 tokens, batches that
// fill a token budget, inference time and memory growing with batch tokens, two variants.
void SyntheticStep(Metrics& metrics, std::mt19937& rng, double t) {
  std::lognormal_distribution<double> length(std::log(600.0), 1.0);
  const char* attention = (static_cast<int>(t) / 20) % 2 == 0 ? "full" : "yoso";
  const double speed = attention[0] == 'f' ? 1.0 : 0.45;  // yoso: linear, cheaper on long docs
  int64_t batch_tokens = 0;
  int64_t docs = 0;
  int64_t longest = 0;
  while (batch_tokens < 8192) {
    const int64_t tokens = std::clamp<int64_t>(static_cast<int64_t>(length(rng)), 32, 8192);
    metrics.ObserveDocument(tokens, tokens == 8192);
    if (docs % 2 == 0) metrics.ObserveChunks(tokens / 256 + 1);
    metrics.ObserveTokenization(tokens * 2e-6);
    batch_tokens += tokens;
    longest = std::max(longest, tokens);
    ++docs;
  }
  const double seconds = speed * (batch_tokens * 6e-5 + longest * longest * 4e-9);
  metrics.ObserveBatch({attention, "chunk", docs, batch_tokens, docs * longest,
                        static_cast<int64_t>(64e6 + docs * longest * 24e3), seconds});
  std::uniform_real_distribution<double> wait(0, 0.08);
  for (int64_t i = 0; i < docs; ++i) {
    const double queued = wait(rng);
    metrics.ObserveQueue(queued);
    metrics.ObserveRequest("EmbedStream", absl::StatusCode::kOk, queued + seconds + 0.002);
  }
  if (rng() % 13 == 0) {
    metrics.Reject(RejectReason::kQueueFull);
    metrics.ObserveRequest("EmbedStream", absl::StatusCode::kResourceExhausted, 0.0002);
  }
  if (rng() % 29 == 0) {
    metrics.Reject(RejectReason::kDeadlineExceeded);
    metrics.ObserveRequest("EmbedStream", absl::StatusCode::kDeadlineExceeded, 1.0);
  }
  metrics.SetQueueDepth(static_cast<int64_t>(wait(rng) * 200));
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("Serves a longenc Metrics with known observations (tests).");
  absl::ParseCommandLine(argc, argv);
  Metrics metrics;
  RecordFixed(metrics, absl::GetFlag(FLAGS_requests), absl::GetFlag(FLAGS_rejected));
  if (absl::GetFlag(FLAGS_render)) {
    std::cout << longenc::metrics::RenderText(metrics);
    return 0;
  }
  auto exposer =
      longenc::metrics::MetricsExposer::Start(absl::GetFlag(FLAGS_metrics_address), metrics);
  if (!exposer.ok()) {
    std::cerr << exposer.status().message() << "\n";
    return 2;
  }
  std::cout << "metrics on http://127.0.0.1:" << (*exposer)->port() << "/metrics" << std::endl;
  signal(SIGTERM, OnSignal);
  signal(SIGINT, OnSignal);
  std::mt19937 rng(42);
  const auto start = std::chrono::steady_clock::now();
  const double traffic = absl::GetFlag(FLAGS_traffic_seconds);
  while (!g_stop) {
    pollfd in{STDIN_FILENO, POLLIN, 0};
    // stdin closed (the test process went away): stop.
    if (poll(&in, 1, 100) > 0) {
      char c;
      if (read(STDIN_FILENO, &c, 1) <= 0) break;
    }
    const double t =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (t < traffic) SyntheticStep(metrics, rng, t);
  }
  return 0;
}
