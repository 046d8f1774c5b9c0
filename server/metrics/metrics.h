// The service's metric set on one prometheus-cpp registry, and the /metrics exposer.
//
// Names, types and labels are fixed because dashboards and alerts depend on them;
// docs/METRICS.md says what each one means. Every call site goes through a typed method of
// `Metrics` (no gRPC, no torch types), so a wrong label set cannot be written anywhere else.
//
// Ownership: `Metrics` owns the registry (shared with the scrape collectable, so a scrape in
// flight keeps it alive). `MetricsExposer` owns the HTTP server and holds the collectable
// weakly; destroy the exposer before the Metrics it serves, or let it see an expired pointer.
//
// Thread-safety: every method of `Metrics` may be called from any thread at any time,
// including during a scrape. prometheus-cpp counters, gauges and histograms are thread-safe
// (atomics; a mutex per histogram); the label-to-series caches here are guarded by a mutex.
// Process memory is read from /proc/self/status when a scrape (or RenderText) collects.
#ifndef LONGENC_SERVER_METRICS_METRICS_H_
#define LONGENC_SERVER_METRICS_METRICS_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace prometheus {
class Collectable;
class Registry;
}  // namespace prometheus

namespace longenc::metrics {

class HttpListener;

// Bucket boundaries (upper bounds, ascending; +Inf is implicit).
// Seconds: 1 ms doubling to 65.5 s, then 120 s (the longest request the service allows).
std::vector<double> SecondsBuckets();
// Tokens: powers of two from 1 to 131072 (the longest document the service accepts).
std::vector<double> TokenBuckets();
// Documents per batch: powers of two from 1 to 4096.
std::vector<double> DocumentBuckets();
// Bytes: powers of two from 1 MiB to 64 GiB.
std::vector<double> ByteBuckets();

// Why a request was turned away before its documents were computed: the `reason` label of
// longenc_rejected_requests_total. A closed set so that the label's cardinality is bounded.
enum class RejectReason {
  kQueueFull,          // bounded queue full: RESOURCE_EXHAUSTED at once
  kTooManyDocuments,   // over --max_documents_per_request
  kDocumentTooLong,    // over --max_tokens_per_document with truncation off
  kMessageTooLarge,    // over --max_message_bytes
  kInvalidArgument,    // any other validation failure (empty document, bad options, ...)
  kShuttingDown,       // draining after SIGTERM: UNAVAILABLE
  kDeadlineExceeded,   // deadline passed while queued: dropped before compute
  kCancelled,          // caller cancelled while queued: dropped before compute
};
// The label value, e.g. "queue_full".
std::string_view RejectReasonName(RejectReason reason);
// Every reason, in enum order (series for all of them exist from start-up, at 0).
const std::vector<RejectReason>& AllRejectReasons();

// The RPC methods of longenc.v1.Encoder. Their code="OK" request series exist from start-up
// (at 0), so dashboards and rate() have series before the first request.
const std::vector<std::string>& RpcMethods();

// The longenc_model_info labels (its value is always 1).
struct ModelInfoLabels {
  std::string model;          // e.g. "all-MiniLM-L6-v2"
  std::string attention;      // default attention variant
  std::string position_mode;  // default long-document mode
  std::string device;         // "cpu", "cuda:0"
  std::string dtype;          // "float32"
  std::string version;        // longenc version
};

// One forward pass of the batcher.
struct BatchObservation {
  std::string attention;      // variant the batch ran with (label of inference/documents)
  std::string position_mode;  // long-document mode the batch ran with
  int64_t documents = 0;      // documents in the batch
  int64_t tokens = 0;         // real tokens (special tokens included, padding excluded)
  int64_t padded_tokens = 0;  // tokens computed incl. padding (what --max_batch_tokens bounds);
                              // 0 = same as `tokens` (packed batches)
  int64_t peak_memory_bytes = 0;  // memory high-water mark during the batch; 0 = unknown
  double seconds = 0;             // wall time of the forward pass
  double longest_step_seconds = 0;  // longest time between two checkpoints; 0 = not stepped
  int64_t preemptions = 0;          // batches run from this one's checkpoints
};

// Memory figures of one device, pushed in by the model side (torch-free).
struct DeviceMemory {
  int64_t allocated_bytes = 0;  // bytes held by live tensors
  int64_t reserved_bytes = 0;   // bytes held by the caching allocator (>= allocated)
  int64_t peak_bytes = 0;       // high-water mark of allocated since start
  int64_t total_bytes = 0;      // the device's memory; 0 = unknown (no total series)
};

class Metrics {
 public:
  Metrics();
  ~Metrics();
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // A finished RPC, whatever its outcome (rejected ones included): `method` is the RPC name
  // ("Embed", "EmbedStream", "Tokenize", "GetInfo"), `code` its final status. absl and gRPC
  // status codes have the same numbers: pass static_cast<absl::StatusCode>(grpc_code). The
  // `code` label is the canonical name ("OK", "RESOURCE_EXHAUSTED", ...).
  void ObserveRequest(std::string_view method, absl::StatusCode code, double seconds);
  // Time one request's documents waited in the batch queue (admission to batch start).
  void ObserveQueue(double seconds);
  // Time to tokenize one request's texts.
  void ObserveTokenization(double seconds);
  // One admitted document: its token count (after truncation) and whether it was truncated.
  void ObserveDocument(int64_t tokens, bool truncated);
  // The late chunks of one admitted request.
  void ObserveChunks(int64_t chunks);
  // One forward pass: inference time{attention}, batch tokens/documents/peak memory, and the
  // documents_total{attention,position_mode} / tokens_total counters.
  void ObserveBatch(const BatchObservation& batch);
  // A request turned away (also call ObserveRequest with its final code).
  void Reject(RejectReason reason);

  // Documents waiting in the batch queue now.
  void SetQueueDepth(int64_t documents);
  // Publishes the model's identity as longenc_model_info{...} 1, replacing an earlier one,
  // and creates the zero-valued series of the default variant so dashboards are not empty
  // before the first request.
  void SetModelInfo(const ModelInfoLabels& info);
  // The model side's latest allocator figures for `device` ("cuda:0").
  void SetDeviceMemory(std::string_view device, const DeviceMemory& memory);
  // On a device without allocator statistics (CPU), report process-level figures under
  // device=`device` at every scrape: allocated = reserved = VmRSS, peak = VmHWM.
  void ReportProcessMemoryAsDevice(std::string_view device);

  // longenc_inflight_requests += delta (+1 when an RPC starts, -1 when it ends); prefer
  // InflightGuard where one scope spans the RPC.
  void AddInflight(int64_t delta);

  // Counts a request in flight for as long as it lives (longenc_inflight_requests).
  class InflightGuard {
   public:
    explicit InflightGuard(Metrics& metrics);
    InflightGuard(InflightGuard&& other) noexcept;
    InflightGuard& operator=(InflightGuard&&) = delete;
    InflightGuard(const InflightGuard&) = delete;
    InflightGuard& operator=(const InflightGuard&) = delete;
    ~InflightGuard();

   private:
    Metrics* metrics_;
  };
  InflightGuard TrackInflight() { return InflightGuard(*this); }

  // What a scrape serves: refreshes process memory, then collects the registry.
  std::shared_ptr<prometheus::Collectable> collectable() const;
  // The registry itself (to add collectables of other components, e.g. in tests).
  prometheus::Registry& registry();

  // Every metric family name this class exports, in exposition order.
  static const std::vector<std::string>& FamilyNames();

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
  std::shared_ptr<prometheus::Collectable> collectable_;
};

// The text exposition format (version 0.0.4), exactly what GET /metrics returns.
std::string RenderText(const prometheus::Collectable& collectable);
inline std::string RenderText(const Metrics& metrics) {
  return RenderText(*metrics.collectable());
}

// Serves a Metrics at http://<address>/metrics.
class MetricsExposer {
 public:
  // `address` is "host:port" (the --metrics_address flag). Port 0 disables the endpoint:
  // the result is OK with enabled() == false. Errors (InvalidArgument for a malformed
  // address, Unavailable when the port cannot be bound) name --metrics_address.
  static absl::StatusOr<std::unique_ptr<MetricsExposer>> Start(std::string_view address,
                                                               const Metrics& metrics);
  ~MetricsExposer();
  MetricsExposer(const MetricsExposer&) = delete;
  MetricsExposer& operator=(const MetricsExposer&) = delete;

  bool enabled() const { return listener_ != nullptr; }
  // The bound port; 0 when disabled.
  int port() const { return port_; }

 private:
  MetricsExposer() = default;
  std::unique_ptr<HttpListener> listener_;
  int port_ = 0;
};

}  // namespace longenc::metrics

#endif  // LONGENC_SERVER_METRICS_METRICS_H_
