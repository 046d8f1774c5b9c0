#include "server/metrics/metrics.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/metrics/exposition.h"

namespace longenc::metrics {
namespace {

using ::testing::HasSubstr;
using testing::Exposition;
using testing::ParseExposition;
using testing::Sample;

Exposition Scrape(const Metrics& metrics) {
  std::string error;
  Exposition parsed = ParseExposition(RenderText(metrics), &error);
  EXPECT_EQ(error, "");
  return parsed;
}

double ValueOr0(const Exposition& e, const std::string& name,
                const std::map<std::string, std::string>& labels = {}) {
  return e.Value(name, labels).value_or(0.0);
}

ModelInfoLabels TestModel() {
  return {"all-MiniLM-L6-v2", "full", "chunk", "cpu", "float32", "0.1.0"};
}

TEST(Buckets, CoverTheRangesOfALongDocumentService) {
  const std::vector<double> seconds = SecondsBuckets();
  EXPECT_DOUBLE_EQ(seconds.front(), 0.001);
  EXPECT_DOUBLE_EQ(seconds.back(), 120.0);
  const std::vector<double> tokens = TokenBuckets();
  EXPECT_DOUBLE_EQ(tokens.front(), 1.0);
  EXPECT_DOUBLE_EQ(tokens.back(), 131072.0);
  const std::vector<double> bytes = ByteBuckets();
  EXPECT_GE(bytes.back(), 32e9);  // tens of GB
  for (const auto& bounds : {seconds, tokens, bytes, DocumentBuckets()}) {
    EXPECT_TRUE(std::is_sorted(bounds.begin(), bounds.end()));
    EXPECT_EQ(std::adjacent_find(bounds.begin(), bounds.end()), bounds.end());
  }
}

TEST(Metrics, ExportsEveryFamilyWithItsTypeAndHelp) {
  Metrics metrics;
  metrics.SetModelInfo(TestModel());
  metrics.ReportProcessMemoryAsDevice("cpu");
  metrics.SetDeviceMemory("cuda:0", {1, 2, 3, /*total_bytes=*/4});  // total: CUDA only
  const Exposition e = Scrape(metrics);
  const std::map<std::string, std::string> expected_types = {
      {"longenc_request_duration_seconds", "histogram"},
      {"longenc_queue_duration_seconds", "histogram"},
      {"longenc_tokenization_duration_seconds", "histogram"},
      {"longenc_inference_duration_seconds", "histogram"},
      {"longenc_batch_tokens", "histogram"},
      {"longenc_batch_documents", "histogram"},
      {"longenc_document_tokens", "histogram"},
      {"longenc_batch_peak_memory_bytes", "histogram"},
      {"longenc_batch_longest_step_seconds", "histogram"},
      {"longenc_preempted_batches_total", "counter"},
      {"longenc_documents_total", "counter"},
      {"longenc_tokens_total", "counter"},
      {"longenc_truncated_documents_total", "counter"},
      {"longenc_chunks_total", "counter"},
      {"longenc_rejected_requests_total", "counter"},
      {"longenc_queue_documents", "gauge"},
      {"longenc_inflight_requests", "gauge"},
      {"longenc_process_resident_memory_bytes", "gauge"},
      {"longenc_process_peak_resident_memory_bytes", "gauge"},
      {"longenc_device_memory_allocated_bytes", "gauge"},
      {"longenc_device_memory_reserved_bytes", "gauge"},
      {"longenc_device_memory_peak_bytes", "gauge"},
      {"longenc_device_memory_total_bytes", "gauge"},
      {"longenc_model_info", "gauge"},
  };
  EXPECT_EQ(e.types, expected_types);
  std::vector<std::string> names = Metrics::FamilyNames();
  std::sort(names.begin(), names.end());
  std::vector<std::string> expected_names;
  for (const auto& [name, type] : expected_types) expected_names.push_back(name);
  EXPECT_EQ(names, expected_names);
  for (const auto& [name, help] : e.help) {
    EXPECT_FALSE(help.empty()) << name;
    EXPECT_EQ(help.find('\\'), std::string::npos) << name;
  }
}

TEST(Metrics, KnownObservationsMoveEachSeriesByExactlyThatMuch) {
  Metrics metrics;
  metrics.SetModelInfo(TestModel());
  const Exposition before = Scrape(metrics);

  metrics.ObserveRequest("Embed", absl::StatusCode::kOk, 0.020);
  metrics.ObserveRequest("Embed", absl::StatusCode::kOk, 0.300);
  metrics.ObserveRequest("Embed", absl::StatusCode::kResourceExhausted, 0.0001);
  metrics.ObserveRequest("Tokenize", absl::StatusCode::kOk, 0.002);
  metrics.ObserveQueue(0.004);
  metrics.ObserveQueue(0.5);
  metrics.ObserveTokenization(0.003);
  metrics.ObserveDocument(100, false);
  metrics.ObserveDocument(512, true);
  metrics.ObserveDocument(70000, false);
  metrics.ObserveChunks(391);
  metrics.ObserveChunks(2);
  metrics.ObserveBatch({"full", "chunk", 2, 612, 1024, 3 << 20, 0.25});
  metrics.ObserveBatch({"yoso", "chunk", 1, 70000, 0, 900 << 20, 4.0});
  metrics.Reject(RejectReason::kQueueFull);
  metrics.Reject(RejectReason::kQueueFull);
  metrics.Reject(RejectReason::kDocumentTooLong);
  metrics.SetQueueDepth(7);

  const Exposition after = Scrape(metrics);
  auto delta = [&](const std::string& name, const std::map<std::string, std::string>& labels) {
    return ValueOr0(after, name, labels) - ValueOr0(before, name, labels);
  };
  const std::map<std::string, std::string> ok_embed = {{"method", "Embed"}, {"code", "OK"}};
  EXPECT_EQ(delta("longenc_request_duration_seconds_count", ok_embed), 2);
  EXPECT_NEAR(delta("longenc_request_duration_seconds_sum", ok_embed), 0.32, 1e-12);
  EXPECT_EQ(delta("longenc_request_duration_seconds_count",
                  {{"method", "Embed"}, {"code", "RESOURCE_EXHAUSTED"}}),
            1);
  EXPECT_EQ(delta("longenc_request_duration_seconds_count",
                  {{"method", "Tokenize"}, {"code", "OK"}}),
            1);
  // 0.020 falls in (0.016, 0.032], 0.300 in (0.256, 0.512].
  auto le = [&](std::string bound) {
    auto labels = ok_embed;
    labels["le"] = bound;
    return delta("longenc_request_duration_seconds_bucket", labels);
  };
  EXPECT_EQ(le("0.016"), 0);
  EXPECT_EQ(le("0.032"), 1);
  EXPECT_EQ(le("0.256"), 1);
  EXPECT_EQ(le("0.512"), 2);
  EXPECT_EQ(le("+Inf"), 2);

  EXPECT_EQ(delta("longenc_queue_duration_seconds_count", {}), 2);
  EXPECT_EQ(delta("longenc_tokenization_duration_seconds_count", {}), 1);
  EXPECT_EQ(delta("longenc_document_tokens_count", {}), 3);
  EXPECT_EQ(delta("longenc_document_tokens_sum", {}), 100 + 512 + 70000);
  EXPECT_EQ(delta("longenc_document_tokens_bucket", {{"le", "65536"}}), 2);
  EXPECT_EQ(delta("longenc_document_tokens_bucket", {{"le", "131072"}}), 3);
  EXPECT_EQ(delta("longenc_truncated_documents_total", {}), 1);
  EXPECT_EQ(delta("longenc_chunks_total", {}), 393);

  EXPECT_EQ(delta("longenc_inference_duration_seconds_count", {{"attention", "full"}}), 1);
  EXPECT_EQ(delta("longenc_inference_duration_seconds_count", {{"attention", "yoso"}}), 1);
  EXPECT_EQ(delta("longenc_inference_duration_seconds_sum", {{"attention", "yoso"}}), 4.0);
  EXPECT_EQ(delta("longenc_batch_documents_count", {}), 2);
  EXPECT_EQ(delta("longenc_batch_documents_sum", {}), 3);
  // batch_tokens observes padded tokens, falling back to real tokens for packed batches.
  EXPECT_EQ(delta("longenc_batch_tokens_sum", {}), 1024 + 70000);
  EXPECT_EQ(delta("longenc_batch_peak_memory_bytes_count", {}), 2);
  EXPECT_EQ(delta("longenc_batch_peak_memory_bytes_bucket", {{"le", "4194304"}}), 1);
  EXPECT_EQ(delta("longenc_batch_peak_memory_bytes_bucket", {{"le", "1073741824"}}), 2);
  EXPECT_EQ(delta("longenc_documents_total", {{"attention", "full"}, {"position_mode", "chunk"}}),
            2);
  EXPECT_EQ(delta("longenc_documents_total", {{"attention", "yoso"}, {"position_mode", "chunk"}}),
            1);
  EXPECT_EQ(delta("longenc_tokens_total", {}), 612 + 70000);

  EXPECT_EQ(delta("longenc_rejected_requests_total", {{"reason", "queue_full"}}), 2);
  EXPECT_EQ(delta("longenc_rejected_requests_total", {{"reason", "document_too_long"}}), 1);
  EXPECT_EQ(delta("longenc_rejected_requests_total", {{"reason", "cancelled"}}), 0);
  EXPECT_EQ(ValueOr0(after, "longenc_queue_documents"), 7);
}

TEST(Metrics, BatchWithoutPeakMemoryDoesNotObserveIt) {
  Metrics metrics;
  metrics.ObserveBatch({"full", "chunk", 1, 10, 0, /*peak_memory_bytes=*/0, 0.01});
  const Exposition e = Scrape(metrics);
  EXPECT_EQ(ValueOr0(e, "longenc_batch_peak_memory_bytes_count"), 0);
  EXPECT_EQ(ValueOr0(e, "longenc_batch_documents_count"), 1);
}

TEST(Metrics, HistogramBucketsAreCumulativeAndInfEqualsCount) {
  Metrics metrics;
  metrics.SetModelInfo(TestModel());
  const double samples[] = {0.0005, 0.001, 0.0011, 0.7, 3, 64, 65.536, 119, 120, 121, 5000};
  for (double s : samples) {
    metrics.ObserveRequest("Embed", absl::StatusCode::kOk, s);
    metrics.ObserveQueue(s);
    metrics.ObserveBatch({"full", "chunk", static_cast<int64_t>(s) + 1,
                          static_cast<int64_t>(s * 100) + 1, 0,
                          static_cast<int64_t>(s * 1e9), s, s});
    metrics.ObserveDocument(static_cast<int64_t>(s * 1000), false);
  }
  const Exposition e = Scrape(metrics);
  std::set<std::string> histograms_checked;
  for (const auto& [family, type] : e.types) {
    if (type != "histogram") continue;
    // Group the family's buckets by their labels without `le`.
    std::map<std::map<std::string, std::string>, std::vector<std::pair<double, double>>> series;
    for (const Sample& s : e.All(family + "_bucket")) {
      auto labels = s.labels;
      const std::string bound = labels.at("le");
      labels.erase("le");
      series[labels].push_back({bound == "+Inf" ? INFINITY : std::stod(bound), s.value});
    }
    for (auto& [labels, buckets] : series) {
      ASSERT_FALSE(buckets.empty());
      EXPECT_TRUE(std::isinf(buckets.back().first)) << family << ": last bucket is not +Inf";
      for (size_t i = 1; i < buckets.size(); ++i) {
        EXPECT_LT(buckets[i - 1].first, buckets[i].first) << family;
        EXPECT_LE(buckets[i - 1].second, buckets[i].second) << family << " not cumulative";
      }
      const std::optional<double> count = e.Value(family + "_count", labels);
      ASSERT_TRUE(count.has_value()) << family;
      EXPECT_EQ(buckets.back().second, *count) << family << ": +Inf != _count";
      histograms_checked.insert(family);
    }
  }
  EXPECT_EQ(histograms_checked.size(), 9u);  // every histogram family has series here
  // Values above the last bound land only in +Inf.
  EXPECT_EQ(ValueOr0(e, "longenc_queue_duration_seconds_bucket", {{"le", "120"}}), 9);
  EXPECT_EQ(ValueOr0(e, "longenc_queue_duration_seconds_bucket", {{"le", "+Inf"}}), 11);
}

TEST(Metrics, RejectReasonsExistAtZeroFromStartUp) {
  Metrics metrics;
  const Exposition e = Scrape(metrics);
  for (RejectReason reason : AllRejectReasons()) {
    const std::string name(RejectReasonName(reason));
    EXPECT_EQ(e.Value("longenc_rejected_requests_total", {{"reason", name}}), 0.0) << name;
  }
  EXPECT_EQ(e.All("longenc_rejected_requests_total").size(), AllRejectReasons().size());
}

TEST(Metrics, ModelInfoIsOneAndReplacedNotDuplicated) {
  Metrics metrics;
  metrics.SetModelInfo(TestModel());
  ModelInfoLabels other = TestModel();
  other.attention = "iclustered";
  metrics.SetModelInfo(other);
  const Exposition e = Scrape(metrics);
  const std::vector<Sample> info = e.All("longenc_model_info");
  ASSERT_EQ(info.size(), 1u);
  EXPECT_EQ(info[0].value, 1);
  EXPECT_EQ(info[0].labels.at("attention"), "iclustered");
  EXPECT_EQ(info[0].labels.at("model"), "all-MiniLM-L6-v2");
  EXPECT_EQ(info[0].labels.at("version"), "0.1.0");
  // The default variant's series exist before the first batch, at zero.
  EXPECT_EQ(e.Value("longenc_inference_duration_seconds_count", {{"attention", "iclustered"}}),
            0.0);
  EXPECT_EQ(e.Value("longenc_documents_total",
                    {{"attention", "iclustered"}, {"position_mode", "chunk"}}),
            0.0);
}

TEST(Metrics, InflightGuardCountsWhileAlive) {
  Metrics metrics;
  {
    Metrics::InflightGuard a = metrics.TrackInflight();
    Metrics::InflightGuard b(metrics);
    EXPECT_EQ(ValueOr0(Scrape(metrics), "longenc_inflight_requests"), 2);
    Metrics::InflightGuard moved = std::move(a);  // a move must not count twice
    EXPECT_EQ(ValueOr0(Scrape(metrics), "longenc_inflight_requests"), 2);
  }
  EXPECT_EQ(ValueOr0(Scrape(metrics), "longenc_inflight_requests"), 0);
}

TEST(Metrics, DeviceMemoryIsPushedPerDevice) {
  Metrics metrics;
  metrics.SetDeviceMemory("cuda:0", {100, 200, 300});
  metrics.SetDeviceMemory("cuda:0", {110, 210, 310});
  metrics.SetDeviceMemory("cuda:1", {1, 2, 3, /*total_bytes=*/1000});
  const Exposition e = Scrape(metrics);
  EXPECT_EQ(e.Value("longenc_device_memory_total_bytes", {{"device", "cuda:1"}}), 1000);
  EXPECT_FALSE(e.Value("longenc_device_memory_total_bytes", {{"device", "cuda:0"}}).has_value());
  EXPECT_EQ(e.Value("longenc_device_memory_allocated_bytes", {{"device", "cuda:0"}}), 110);
  EXPECT_EQ(e.Value("longenc_device_memory_reserved_bytes", {{"device", "cuda:0"}}), 210);
  EXPECT_EQ(e.Value("longenc_device_memory_peak_bytes", {{"device", "cuda:0"}}), 310);
  EXPECT_EQ(e.Value("longenc_device_memory_peak_bytes", {{"device", "cuda:1"}}), 3);
}

TEST(Metrics, ProcessMemoryIsReadAtScrape) {
  Metrics metrics;
  metrics.ReportProcessMemoryAsDevice("cpu");
  const Exposition e = Scrape(metrics);
  const double rss = ValueOr0(e, "longenc_process_resident_memory_bytes");
  const double hwm = ValueOr0(e, "longenc_process_peak_resident_memory_bytes");
  EXPECT_GT(rss, 1 << 20);  // a gtest binary is more than 1 MiB resident
  EXPECT_GE(hwm, rss);
  EXPECT_GT(ValueOr0(e, "longenc_device_memory_allocated_bytes", {{"device", "cpu"}}), 0);
  EXPECT_GE(ValueOr0(e, "longenc_device_memory_peak_bytes", {{"device", "cpu"}}),
            ValueOr0(e, "longenc_device_memory_allocated_bytes", {{"device", "cpu"}}));
}

TEST(Metrics, ConcurrentObservationsAreAllCounted) {
  Metrics metrics;
  constexpr int kThreads = 4;
  constexpr int kPerThread = 2000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&metrics, t] {
      const std::string attention = t % 2 == 0 ? "full" : "yoso";
      for (int i = 0; i < kPerThread; ++i) {
        auto guard = metrics.TrackInflight();
        metrics.ObserveRequest("Embed", absl::StatusCode::kOk, 0.001 * (i % 50));
        metrics.ObserveBatch({attention, "chunk", 1, 3, 0, 0, 0.001});
        metrics.Reject(RejectReason::kQueueFull);
        if (i % 100 == 0) RenderText(metrics);  // scrapes race with observations
      }
    });
  }
  for (std::thread& t : threads) t.join();
  const Exposition e = Scrape(metrics);
  EXPECT_EQ(ValueOr0(e, "longenc_request_duration_seconds_count",
                     {{"method", "Embed"}, {"code", "OK"}}),
            kThreads * kPerThread);
  EXPECT_EQ(ValueOr0(e, "longenc_documents_total", {{"attention", "full"}, {"position_mode", "chunk"}}) +
                ValueOr0(e, "longenc_documents_total",
                         {{"attention", "yoso"}, {"position_mode", "chunk"}}),
            kThreads * kPerThread);
  EXPECT_EQ(ValueOr0(e, "longenc_tokens_total"), 3.0 * kThreads * kPerThread);
  EXPECT_EQ(ValueOr0(e, "longenc_rejected_requests_total", {{"reason", "queue_full"}}),
            kThreads * kPerThread);
  EXPECT_EQ(ValueOr0(e, "longenc_inflight_requests"), 0);
}

// A port nobody listens on right now (the kernel picks it; we release it at once).
int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

// Plain HTTP/1.0 GET on loopback; returns the whole response (headers and body).
std::string HttpGet(int port, const std::string& path) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return "";
  }
  const std::string request = "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
  EXPECT_EQ(send(fd, request.data(), request.size(), 0), static_cast<ssize_t>(request.size()));
  std::string response;
  char buffer[4096];
  ssize_t n;
  while ((n = recv(fd, buffer, sizeof(buffer), 0)) > 0) response.append(buffer, n);
  close(fd);
  return response;
}

TEST(MetricsExposer, PortZeroDisables) {
  Metrics metrics;
  absl::StatusOr<std::unique_ptr<MetricsExposer>> exposer =
      MetricsExposer::Start("0.0.0.0:0", metrics);
  ASSERT_TRUE(exposer.ok()) << exposer.status();
  EXPECT_FALSE((*exposer)->enabled());
  EXPECT_EQ((*exposer)->port(), 0);
}

TEST(MetricsExposer, MalformedAddressNamesTheFlag) {
  Metrics metrics;
  for (const char* address : {"9464", "0.0.0.0:", ":9464", "0.0.0.0:http", "0.0.0.0:70000",
                              "0.0.0.0:-1"}) {
    absl::StatusOr<std::unique_ptr<MetricsExposer>> exposer =
        MetricsExposer::Start(address, metrics);
    EXPECT_EQ(exposer.status().code(), absl::StatusCode::kInvalidArgument) << address;
    EXPECT_THAT(exposer.status().message(), HasSubstr("--metrics_address")) << address;
  }
}

TEST(MetricsExposer, ServesTheRenderedRegistryOverHttp) {
  Metrics metrics;
  metrics.SetModelInfo(TestModel());
  metrics.ObserveRequest("Embed", absl::StatusCode::kOk, 0.05);
  const int port = FreePort();
  absl::StatusOr<std::unique_ptr<MetricsExposer>> exposer =
      MetricsExposer::Start("127.0.0.1:" + std::to_string(port), metrics);
  ASSERT_TRUE(exposer.ok()) << exposer.status();
  EXPECT_TRUE((*exposer)->enabled());
  EXPECT_EQ((*exposer)->port(), port);

  const std::string response = HttpGet(port, "/metrics");
  ASSERT_THAT(response, HasSubstr("200 OK"));
  const std::string body = response.substr(response.find("\r\n\r\n") + 4);
  const Exposition e = ParseExposition(body);
  EXPECT_EQ(e.types, ParseExposition(RenderText(metrics)).types);  // served == rendered
  EXPECT_EQ(e.Value("longenc_request_duration_seconds_count", {{"method", "Embed"}, {"code", "OK"}}),
            1.0);
  EXPECT_GT(ValueOr0(e, "longenc_process_resident_memory_bytes"), 0);
}

TEST(MetricsExposer, BusyPortIsUnavailableAndNamesTheFlag) {
  // Hold a listening socket, then ask the exposer for the same port.
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(listen(fd, 1), 0);
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  const int port = ntohs(addr.sin_port);

  Metrics metrics;
  absl::StatusOr<std::unique_ptr<MetricsExposer>> exposer =
      MetricsExposer::Start("127.0.0.1:" + std::to_string(port), metrics);
  close(fd);
  EXPECT_EQ(exposer.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(exposer.status().message(), HasSubstr("--metrics_address=127.0.0.1:"));
}

}  // namespace
}  // namespace longenc::metrics
