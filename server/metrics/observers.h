// Adapters from the service's and the batcher's observer hooks to the Metrics set, so the
// wiring is two lines: construct them on the Metrics and pass them to EncoderService and
// Batcher. Neither hook interface knows about Prometheus; this is the only place that maps
// their events onto metric names.
//
// Every event is counted at exactly one source:
//   - requests, tokenization, documents, queue time and *all* rejections come from the
//     ServiceObserver (the service sees every refusal, including the batcher's queue-full,
//     deadline and cancel outcomes, and reports each with its Rejection reason);
//   - batches (inference time, batch sizes, peak memory, documents/tokens totals) and the
//     queue depth come from the BatchObserver; its OnReject/OnDrop only move the queue gauge.
//
// Ownership: both hold a Metrics& that must outlive them. Thread-safety: as Metrics
// (every method may run concurrently on any thread).
#ifndef LONGENC_SERVER_METRICS_OBSERVERS_H_
#define LONGENC_SERVER_METRICS_OBSERVERS_H_

#include <string>

#include "server/batching/observer.h"
#include "server/metrics/metrics.h"
#include "server/service_observer.h"

namespace longenc::metrics {

// The `reason` label for the service's rejection reasons.
RejectReason ToRejectReason(server::Rejection rejection);

class MetricsServiceObserver : public server::ServiceObserver {
 public:
  explicit MetricsServiceObserver(Metrics& metrics) : metrics_(metrics) {}
  void OnRequestStart(std::string_view method) override;
  void OnRequestEnd(std::string_view method, absl::StatusCode code,
                    absl::Duration elapsed) override;
  void OnTokenization(absl::Duration elapsed) override;
  void OnDocument(int64_t tokens, bool truncated) override;
  void OnChunks(int64_t chunks) override;
  void OnQueueTime(absl::Duration elapsed) override;
  void OnReject(server::Rejection reason) override;

 private:
  Metrics& metrics_;
};

// Where MetricsBatchObserver reads a device's memory after every batch: the CUDA caching
// allocator's counters in the server (cuda_memory_source.h), a fake in tests. Read on the
// inference thread only.
class DeviceMemorySource {
 public:
  virtual ~DeviceMemorySource() = default;
  // The `device` label of the series ("cuda:0").
  virtual std::string device() const = 0;
  // The figures now. peak_bytes may cover only the batch that just ran (the backend starts a new
  // peak per batch); the observer reports the maximum since start.
  virtual DeviceMemory Read() = 0;
};

class MetricsBatchObserver : public batching::BatchObserver {
 public:
  // `default_attention` / `default_position_mode` replace empty settings ("backend default")
  // so that labels always name the variant that ran (ModelInfo::default_attention, ...).
  // With `device_memory` (not owned, outlives the observer), every batch also sets
  // longenc_device_memory_*{device=...}; without it (CPU) those series carry process memory
  // (Metrics::ReportProcessMemoryAsDevice) or are absent.
  MetricsBatchObserver(Metrics& metrics, std::string default_attention,
                       std::string default_position_mode,
                       DeviceMemorySource* device_memory = nullptr)
      : metrics_(metrics),
        default_attention_(std::move(default_attention)),
        default_position_mode_(std::move(default_position_mode)),
        device_memory_(device_memory) {}
  void OnEnqueue(int64_t documents, int64_t tokens, int64_t queue_documents) override;
  void OnReject(absl::StatusCode code, int64_t documents) override {}
  void OnDrop(absl::StatusCode code, int64_t documents, int64_t queue_documents) override;
  void OnBatch(const batching::BatchStats& stats, int64_t queue_documents) override;

 private:
  Metrics& metrics_;
  const std::string default_attention_;
  const std::string default_position_mode_;
  DeviceMemorySource* const device_memory_;
  int64_t device_peak_bytes_ = 0;  // OnBatch runs on the inference thread only
};

}  // namespace longenc::metrics

#endif  // LONGENC_SERVER_METRICS_OBSERVERS_H_
