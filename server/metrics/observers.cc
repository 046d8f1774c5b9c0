#include "server/metrics/observers.h"

#include <algorithm>

namespace longenc::metrics {

RejectReason ToRejectReason(server::Rejection rejection) {
  switch (rejection) {
    case server::Rejection::kQueueFull:
      return RejectReason::kQueueFull;
    case server::Rejection::kTooManyDocuments:
      return RejectReason::kTooManyDocuments;
    case server::Rejection::kDocumentTooLong:
      return RejectReason::kDocumentTooLong;
    case server::Rejection::kInvalidArgument:
      return RejectReason::kInvalidArgument;
    case server::Rejection::kShuttingDown:
      return RejectReason::kShuttingDown;
    case server::Rejection::kDeadlineExceeded:
      return RejectReason::kDeadlineExceeded;
    case server::Rejection::kCancelled:
      return RejectReason::kCancelled;
  }
  return RejectReason::kInvalidArgument;
}

void MetricsServiceObserver::OnRequestStart(std::string_view method) { metrics_.AddInflight(1); }

void MetricsServiceObserver::OnRequestEnd(std::string_view method, absl::StatusCode code,
                                          absl::Duration elapsed) {
  metrics_.AddInflight(-1);
  metrics_.ObserveRequest(method, code, absl::ToDoubleSeconds(elapsed));
}

void MetricsServiceObserver::OnTokenization(absl::Duration elapsed) {
  metrics_.ObserveTokenization(absl::ToDoubleSeconds(elapsed));
}

void MetricsServiceObserver::OnDocument(int64_t tokens, bool truncated) {
  metrics_.ObserveDocument(tokens, truncated);
}

void MetricsServiceObserver::OnChunks(int64_t chunks) { metrics_.ObserveChunks(chunks); }

void MetricsServiceObserver::OnQueueTime(absl::Duration elapsed) {
  metrics_.ObserveQueue(absl::ToDoubleSeconds(elapsed));
}

void MetricsServiceObserver::OnReject(server::Rejection reason) {
  metrics_.Reject(ToRejectReason(reason));
}

void MetricsBatchObserver::OnEnqueue(int64_t documents, int64_t tokens,
                                     int64_t queue_documents) {
  metrics_.SetQueueDepth(queue_documents);
}

void MetricsBatchObserver::OnDrop(absl::StatusCode code, int64_t documents,
                                  int64_t queue_documents) {
  metrics_.SetQueueDepth(queue_documents);
}

void MetricsBatchObserver::OnBatch(const batching::BatchStats& stats, int64_t queue_documents) {
  metrics_.SetQueueDepth(queue_documents);
  // The allocator after every batch, failed ones included (an out-of-memory batch is the one
  // worth seeing).
  if (device_memory_ != nullptr) {
    DeviceMemory memory = device_memory_->Read();
    device_peak_bytes_ = std::max(device_peak_bytes_, memory.peak_bytes);
    memory.peak_bytes = device_peak_bytes_;
    metrics_.SetDeviceMemory(device_memory_->device(), memory);
  }
  // A failed backend call embedded nothing; its requests show up in
  // longenc_request_duration_seconds with their error code instead.
  if (stats.code != absl::StatusCode::kOk) return;
  BatchObservation batch;
  batch.attention =
      stats.settings.attention.empty() ? default_attention_ : stats.settings.attention;
  batch.position_mode = stats.settings.position_mode.empty() ? default_position_mode_
                                                             : stats.settings.position_mode;
  batch.documents = stats.documents;
  batch.tokens = stats.tokens;
  batch.padded_tokens = stats.padded_tokens;
  batch.peak_memory_bytes = stats.peak_memory_bytes;
  batch.seconds = absl::ToDoubleSeconds(stats.inference_time);
  batch.longest_step_seconds = absl::ToDoubleSeconds(stats.longest_step);
  batch.preemptions = stats.preemptions;
  metrics_.ObserveBatch(batch);
}

}  // namespace longenc::metrics
