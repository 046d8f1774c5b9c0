#include "server/metrics/observers.h"

#include "gtest/gtest.h"
#include "tests/unit/metrics/exposition.h"

namespace longenc::metrics {
namespace {

using testing::Exposition;
using testing::ParseExposition;

double Value(const Metrics& metrics, const std::string& name,
             const std::map<std::string, std::string>& labels = {}) {
  return ParseExposition(RenderText(metrics)).Value(name, labels).value_or(-1);
}

TEST(MetricsServiceObserver, RecordsARequestLifecycle) {
  Metrics metrics;
  MetricsServiceObserver observer(metrics);
  observer.OnRequestStart("Embed");
  EXPECT_EQ(Value(metrics, "longenc_inflight_requests"), 1);
  observer.OnTokenization(absl::Milliseconds(3));
  observer.OnDocument(300, false);
  observer.OnDocument(512, true);
  observer.OnQueueTime(absl::Milliseconds(40));
  observer.OnRequestEnd("Embed", absl::StatusCode::kOk, absl::Milliseconds(250));
  EXPECT_EQ(Value(metrics, "longenc_inflight_requests"), 0);
  EXPECT_EQ(Value(metrics, "longenc_request_duration_seconds_count",
                  {{"method", "Embed"}, {"code", "OK"}}),
            1);
  EXPECT_DOUBLE_EQ(Value(metrics, "longenc_request_duration_seconds_sum",
                         {{"method", "Embed"}, {"code", "OK"}}),
                   0.25);
  EXPECT_EQ(Value(metrics, "longenc_tokenization_duration_seconds_count"), 1);
  EXPECT_EQ(Value(metrics, "longenc_document_tokens_count"), 2);
  EXPECT_EQ(Value(metrics, "longenc_truncated_documents_total"), 1);
  EXPECT_DOUBLE_EQ(Value(metrics, "longenc_queue_duration_seconds_sum"), 0.04);
}

TEST(MetricsServiceObserver, MapsEveryRejectionToItsReasonLabel) {
  const std::pair<server::Rejection, std::string> cases[] = {
      {server::Rejection::kQueueFull, "queue_full"},
      {server::Rejection::kTooManyDocuments, "too_many_documents"},
      {server::Rejection::kDocumentTooLong, "document_too_long"},
      {server::Rejection::kInvalidArgument, "invalid_argument"},
      {server::Rejection::kShuttingDown, "shutting_down"},
      {server::Rejection::kDeadlineExceeded, "deadline_exceeded"},
      {server::Rejection::kCancelled, "cancelled"},
  };
  for (const auto& [rejection, label] : cases) {
    Metrics metrics;
    MetricsServiceObserver observer(metrics);
    observer.OnReject(rejection);
    const Exposition e = ParseExposition(RenderText(metrics));
    double total = 0;
    for (const auto& sample : e.All("longenc_rejected_requests_total")) total += sample.value;
    EXPECT_EQ(total, 1) << label;
    EXPECT_EQ(e.Value("longenc_rejected_requests_total", {{"reason", label}}), 1.0) << label;
  }
}

TEST(MetricsBatchObserver, RecordsABatchUnderTheVariantThatRan) {
  Metrics metrics;
  MetricsBatchObserver observer(metrics, "full", "chunk");
  batching::BatchStats stats;
  stats.settings.attention = "";  // backend default
  stats.documents = 3;
  stats.tokens = 700;
  stats.padded_tokens = 900;
  stats.inference_time = absl::Milliseconds(120);
  stats.peak_memory_bytes = 50 << 20;
  observer.OnBatch(stats, /*queue_documents=*/4);
  stats.settings.attention = "yoso";
  observer.OnBatch(stats, /*queue_documents=*/0);

  EXPECT_EQ(Value(metrics, "longenc_documents_total",
                  {{"attention", "full"}, {"position_mode", "chunk"}}),
            3);
  EXPECT_EQ(Value(metrics, "longenc_documents_total",
                  {{"attention", "yoso"}, {"position_mode", "chunk"}}),
            3);
  EXPECT_EQ(Value(metrics, "longenc_tokens_total"), 1400);
  EXPECT_EQ(Value(metrics, "longenc_batch_tokens_sum"), 1800);
  EXPECT_EQ(Value(metrics, "longenc_batch_peak_memory_bytes_count"), 2);
  EXPECT_DOUBLE_EQ(
      Value(metrics, "longenc_inference_duration_seconds_sum", {{"attention", "yoso"}}), 0.12);
  EXPECT_EQ(Value(metrics, "longenc_queue_documents"), 0);
}

TEST(MetricsBatchObserver, FailedBatchesAndRefusalsCountNoDocumentsAndNoRejections) {
  Metrics metrics;
  MetricsBatchObserver observer(metrics, "full", "chunk");
  observer.OnEnqueue(5, 500, /*queue_documents=*/5);
  EXPECT_EQ(Value(metrics, "longenc_queue_documents"), 5);
  observer.OnReject(absl::StatusCode::kResourceExhausted, 2);
  observer.OnDrop(absl::StatusCode::kCancelled, 1, /*queue_documents=*/4);
  EXPECT_EQ(Value(metrics, "longenc_queue_documents"), 4);
  batching::BatchStats failed;
  failed.documents = 4;
  failed.tokens = 400;
  failed.code = absl::StatusCode::kInternal;
  observer.OnBatch(failed, 0);
  const Exposition e = ParseExposition(RenderText(metrics));
  for (const auto& sample : e.All("longenc_rejected_requests_total")) {
    EXPECT_EQ(sample.value, 0) << sample.labels.at("reason");  // the service counts those
  }
  EXPECT_EQ(e.Value("longenc_tokens_total"), 0.0);
  EXPECT_EQ(e.Value("longenc_batch_documents_count"), 0.0);
}

// A device whose allocator figures the test sets, counting how often it is read.
class FakeDeviceMemory : public DeviceMemorySource {
 public:
  std::string device() const override { return "cuda:1"; }
  DeviceMemory Read() override {
    ++reads;
    return next;
  }
  DeviceMemory next;
  int reads = 0;
};

TEST(MetricsBatchObserver, PublishesTheDeviceMemoryAfterEveryBatch) {
  Metrics metrics;
  FakeDeviceMemory device;
  MetricsBatchObserver observer(metrics, "full", "chunk", &device);
  const std::map<std::string, std::string> cuda1 = {{"device", "cuda:1"}};
  batching::BatchStats ok;
  ok.documents = 1;
  ok.tokens = 100;
  device.next = {/*allocated_bytes=*/300, /*reserved_bytes=*/1000, /*peak_bytes=*/700,
                 /*total_bytes=*/8000};
  observer.OnBatch(ok, 0);
  EXPECT_EQ(device.reads, 1);
  EXPECT_EQ(Value(metrics, "longenc_device_memory_total_bytes", cuda1), 8000);
  EXPECT_EQ(Value(metrics, "longenc_device_memory_allocated_bytes", cuda1), 300);
  EXPECT_EQ(Value(metrics, "longenc_device_memory_reserved_bytes", cuda1), 1000);
  EXPECT_EQ(Value(metrics, "longenc_device_memory_peak_bytes", cuda1), 700);
  // The backend starts a new peak per batch: the gauge keeps the maximum since start.
  device.next = {200, 1200, 400};
  observer.OnBatch(ok, 0);
  EXPECT_EQ(Value(metrics, "longenc_device_memory_allocated_bytes", cuda1), 200);
  EXPECT_EQ(Value(metrics, "longenc_device_memory_reserved_bytes", cuda1), 1200);
  EXPECT_EQ(Value(metrics, "longenc_device_memory_peak_bytes", cuda1), 700);
  // A failed batch (out of memory, say) is read too.
  batching::BatchStats failed = ok;
  failed.code = absl::StatusCode::kInternal;
  device.next = {250, 4000, 3900};
  observer.OnBatch(failed, 0);
  EXPECT_EQ(device.reads, 3);
  EXPECT_EQ(Value(metrics, "longenc_device_memory_reserved_bytes", cuda1), 4000);
  EXPECT_EQ(Value(metrics, "longenc_device_memory_peak_bytes", cuda1), 3900);
}

TEST(MetricsBatchObserver, WithoutADeviceSourceNoDeviceSeriesAppear) {  // CPU without process memory
  Metrics metrics;
  MetricsBatchObserver observer(metrics, "full", "chunk");
  batching::BatchStats ok;
  ok.documents = 1;
  observer.OnBatch(ok, 0);
  EXPECT_TRUE(ParseExposition(RenderText(metrics)).All("longenc_device_memory_reserved_bytes").empty());
}

}  // namespace
}  // namespace longenc::metrics
