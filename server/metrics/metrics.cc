#include "server/metrics/metrics.h"

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <sstream>
#include <stdexcept>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "common/process_memory.h"
#include "server/metrics/http_listener.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "prometheus/collectable.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "prometheus/text_serializer.h"

namespace longenc::metrics {
namespace {

using prometheus::Counter;
using prometheus::Family;
using prometheus::Gauge;
using prometheus::Histogram;

// Debian's Abseil has its own string_view (ABSL_OPTION_USE_STD_STRING_VIEW 0): the public
// API takes std::string_view and converts here.
absl::string_view Absl(std::string_view s) { return absl::string_view(s.data(), s.size()); }

enum class Type { kCounter, kGauge, kHistogram };

// The single list of what the service exports. Dashboards, alerts and their tests take the
// names from the rendered output of this table, never from a copy.
enum FamilyId {
  kRequestDuration,
  kQueueDuration,
  kTokenizationDuration,
  kInferenceDuration,
  kBatchTokens,
  kBatchDocuments,
  kDocumentTokens,
  kBatchPeakMemory,
  kBatchLongestStep,
  kPreemptedBatchesTotal,
  kDocumentsTotal,
  kTokensTotal,
  kTruncatedDocumentsTotal,
  kChunksTotal,
  kRejectedRequestsTotal,
  kQueueDocuments,
  kInflightRequests,
  kProcessResidentMemory,
  kProcessPeakResidentMemory,
  kDeviceMemoryAllocated,
  kDeviceMemoryReserved,
  kDeviceMemoryPeak,
  kDeviceMemoryTotal,
  kModelInfo,
  kNumFamilies,
};

struct FamilySpec {
  const char* name;
  Type type;
  const char* help;  // no backslash, no newline: prometheus-cpp writes HELP unescaped
};

constexpr std::array<FamilySpec, kNumFamilies> kFamilies = {{
    {"longenc_request_duration_seconds", Type::kHistogram,
     "Time from receiving an RPC to sending its final status, by method and gRPC code."},
    {"longenc_queue_duration_seconds", Type::kHistogram,
     "Time a request's documents waited in the batch queue before their batch started."},
    {"longenc_tokenization_duration_seconds", Type::kHistogram,
     "Time to tokenize the texts of one request."},
    {"longenc_inference_duration_seconds", Type::kHistogram,
     "Wall time of one batch forward pass, by attention variant."},
    {"longenc_batch_tokens", Type::kHistogram,
     "Tokens computed per batch, padding included (what --max_batch_tokens bounds)."},
    {"longenc_batch_documents", Type::kHistogram, "Documents per batch."},
    {"longenc_document_tokens", Type::kHistogram,
     "Tokens per admitted document after truncation, special tokens included."},
    {"longenc_batch_peak_memory_bytes", Type::kHistogram,
     "Memory high-water mark while a batch ran (device allocator on GPU, process RSS on CPU)."},
    {"longenc_batch_longest_step_seconds", Type::kHistogram,
     "Longest time between two checkpoints of one batch: how long a short request may wait."},
    {"longenc_preempted_batches_total", Type::kCounter,
     "Batches run from a checkpoint of a longer batch that paused for them."},
    {"longenc_documents_total", Type::kCounter,
     "Documents embedded, by attention variant and long-document position mode."},
    {"longenc_tokens_total", Type::kCounter,
     "Tokens embedded (real tokens, padding excluded)."},
    {"longenc_truncated_documents_total", Type::kCounter,
     "Documents truncated to the token limit at the caller's request."},
    {"longenc_chunks_total", Type::kCounter,
     "Late chunks (EmbedRequest.chunking) of admitted requests."},
    {"longenc_rejected_requests_total", Type::kCounter,
     "Requests turned away before compute, by reason."},
    {"longenc_queue_documents", Type::kGauge, "Documents waiting in the batch queue."},
    {"longenc_inflight_requests", Type::kGauge, "RPCs received and not yet finished."},
    {"longenc_process_resident_memory_bytes", Type::kGauge,
     "Resident set size of the server process (VmRSS)."},
    {"longenc_process_peak_resident_memory_bytes", Type::kGauge,
     "Peak resident set size of the server process since start."},
    {"longenc_device_memory_allocated_bytes", Type::kGauge,
     "Bytes held by live tensors on the device (on CPU the process RSS)."},
    {"longenc_device_memory_reserved_bytes", Type::kGauge,
     "Bytes held by the device caching allocator (on CPU the process RSS)."},
    {"longenc_device_memory_peak_bytes", Type::kGauge,
     "High-water mark of allocated device bytes since start (on CPU the process peak RSS)."},
    {"longenc_device_memory_total_bytes", Type::kGauge,
     "Memory of the device (CUDA only; absent on CPU)."},
    {"longenc_model_info", Type::kGauge,
     "Always 1; labels identify the loaded model and its defaults."},
}};

std::vector<double> Geometric(double first, double factor, int count) {
  std::vector<double> bounds;
  bounds.reserve(count);
  double bound = first;
  for (int i = 0; i < count; ++i, bound *= factor) bounds.push_back(bound);
  return bounds;
}

template <typename T>
struct BuilderOf;
template <>
struct BuilderOf<Counter> {
  static auto Make() { return prometheus::BuildCounter(); }
};
template <>
struct BuilderOf<Gauge> {
  static auto Make() { return prometheus::BuildGauge(); }
};
template <>
struct BuilderOf<Histogram> {
  static auto Make() { return prometheus::BuildHistogram(); }
};

template <typename T>
Family<T>& Register(prometheus::Registry& registry, FamilyId id) {
  return BuilderOf<T>::Make().Name(kFamilies[id].name).Help(kFamilies[id].help).Register(
      registry);
}

}  // namespace

std::vector<double> SecondsBuckets() {
  std::vector<double> bounds = Geometric(0.001, 2.0, 17);  // 0.001 .. 65.536
  bounds.push_back(120.0);
  return bounds;
}
std::vector<double> TokenBuckets() { return Geometric(1.0, 2.0, 18); }      // 1 .. 131072
std::vector<double> DocumentBuckets() { return Geometric(1.0, 2.0, 13); }   // 1 .. 4096
std::vector<double> ByteBuckets() { return Geometric(1 << 20, 2.0, 17); }   // 1 MiB .. 64 GiB

std::string_view RejectReasonName(RejectReason reason) {
  switch (reason) {
    case RejectReason::kQueueFull:
      return "queue_full";
    case RejectReason::kTooManyDocuments:
      return "too_many_documents";
    case RejectReason::kDocumentTooLong:
      return "document_too_long";
    case RejectReason::kMessageTooLarge:
      return "message_too_large";
    case RejectReason::kInvalidArgument:
      return "invalid_argument";
    case RejectReason::kShuttingDown:
      return "shutting_down";
    case RejectReason::kDeadlineExceeded:
      return "deadline_exceeded";
    case RejectReason::kCancelled:
      return "cancelled";
  }
  return "unknown";
}

const std::vector<RejectReason>& AllRejectReasons() {
  static const auto* const kAll = new std::vector<RejectReason>{
      RejectReason::kQueueFull,        RejectReason::kTooManyDocuments,
      RejectReason::kDocumentTooLong,  RejectReason::kMessageTooLarge,
      RejectReason::kInvalidArgument,  RejectReason::kShuttingDown,
      RejectReason::kDeadlineExceeded, RejectReason::kCancelled,
  };
  return *kAll;
}

const std::vector<std::string>& RpcMethods() {
  static const auto* const kMethods =
      new std::vector<std::string>{"Embed", "EmbedStream", "Tokenize", "GetInfo"};
  return *kMethods;
}

struct Metrics::Impl {
  struct DeviceGauges {
    Gauge* allocated;
    Gauge* reserved;
    Gauge* peak;
  };

  Impl()
      : registry(std::make_shared<prometheus::Registry>()),
        request_duration(Register<Histogram>(*registry, kRequestDuration)),
        queue_duration(Register<Histogram>(*registry, kQueueDuration).Add({}, SecondsBuckets())),
        tokenization_duration(
            Register<Histogram>(*registry, kTokenizationDuration).Add({}, SecondsBuckets())),
        inference_duration(Register<Histogram>(*registry, kInferenceDuration)),
        batch_tokens(Register<Histogram>(*registry, kBatchTokens).Add({}, TokenBuckets())),
        batch_documents(
            Register<Histogram>(*registry, kBatchDocuments).Add({}, DocumentBuckets())),
        document_tokens(Register<Histogram>(*registry, kDocumentTokens).Add({}, TokenBuckets())),
        batch_peak_memory(
            Register<Histogram>(*registry, kBatchPeakMemory).Add({}, ByteBuckets())),
        batch_longest_step(
            Register<Histogram>(*registry, kBatchLongestStep).Add({}, SecondsBuckets())),
        preempted_batches_total(Register<Counter>(*registry, kPreemptedBatchesTotal).Add({})),
        documents_total(Register<Counter>(*registry, kDocumentsTotal)),
        tokens_total(Register<Counter>(*registry, kTokensTotal).Add({})),
        truncated_documents_total(Register<Counter>(*registry, kTruncatedDocumentsTotal).Add({})),
        chunks_total(Register<Counter>(*registry, kChunksTotal).Add({})),
        rejected_requests_total(Register<Counter>(*registry, kRejectedRequestsTotal)),
        queue_documents(Register<Gauge>(*registry, kQueueDocuments).Add({})),
        inflight_requests(Register<Gauge>(*registry, kInflightRequests).Add({})),
        process_resident(Register<Gauge>(*registry, kProcessResidentMemory).Add({})),
        process_peak_resident(Register<Gauge>(*registry, kProcessPeakResidentMemory).Add({})),
        device_allocated(Register<Gauge>(*registry, kDeviceMemoryAllocated)),
        device_reserved(Register<Gauge>(*registry, kDeviceMemoryReserved)),
        device_peak(Register<Gauge>(*registry, kDeviceMemoryPeak)),
        device_total(Register<Gauge>(*registry, kDeviceMemoryTotal)),
        model_info(Register<Gauge>(*registry, kModelInfo)) {
    for (RejectReason reason : AllRejectReasons()) {
      rejected.push_back(
          &rejected_requests_total.Add({{"reason", std::string(RejectReasonName(reason))}}));
    }
    for (const std::string& method : RpcMethods()) RequestHistogram(method, absl::StatusCode::kOk);
  }

  // Cached series: Family::Add builds a throw-away metric (a bucket vector for histograms)
  // on every call, so hot paths look labels up here first.
  Histogram& RequestHistogram(std::string_view method, absl::StatusCode code) {
    std::string key = absl::StrCat(Absl(method), "/", static_cast<int>(code));
    absl::MutexLock lock(&mu);
    Histogram*& series = request_by_key[key];
    if (series == nullptr) {
      series = &request_duration.Add(
          {{"method", std::string(method)}, {"code", absl::StatusCodeToString(code)}},
          SecondsBuckets());
    }
    return *series;
  }
  Histogram& InferenceHistogram(std::string_view attention) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    Histogram*& series = inference_by_attention[Absl(attention)];
    if (series == nullptr) {
      series = &inference_duration.Add({{"attention", std::string(attention)}}, SecondsBuckets());
    }
    return *series;
  }
  Counter& DocumentsCounter(std::string_view attention, std::string_view position_mode)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    Counter*& series = documents_by_key[absl::StrCat(Absl(attention), "/", Absl(position_mode))];
    if (series == nullptr) {
      series = &documents_total.Add(
          {{"attention", std::string(attention)}, {"position_mode", std::string(position_mode)}});
    }
    return *series;
  }
  DeviceGauges& Device(std::string_view device) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    auto it = device_by_name.find(Absl(device));
    if (it == device_by_name.end()) {
      prometheus::Labels labels = {{"device", std::string(device)}};
      it = device_by_name
               .emplace(std::string(device),
                        DeviceGauges{&device_allocated.Add(labels), &device_reserved.Add(labels),
                                     &device_peak.Add(labels)})
               .first;
    }
    return it->second;
  }

  // Called at every scrape: /proc/self/status is a few microseconds to read.
  void RefreshProcessMemory() {
    absl::StatusOr<ProcessMemory> memory = ReadProcessMemory();
    if (!memory.ok()) return;  // not Linux: the gauges stay at 0, as documented
    process_resident.Set(static_cast<double>(memory->resident_bytes));
    absl::MutexLock lock(&mu);
    // On CPU the backend resets VmHWM before each batch to measure that batch's peak, so the
    // process peak is the largest of VmHWM now and every batch peak seen.
    process_peak_seen = std::max(process_peak_seen, memory->peak_resident_bytes);
    memory->peak_resident_bytes = process_peak_seen;
    process_peak_resident.Set(static_cast<double>(process_peak_seen));
    if (!process_device.empty()) {
      DeviceGauges& device = Device(process_device);
      device.allocated->Set(static_cast<double>(memory->resident_bytes));
      device.reserved->Set(static_cast<double>(memory->resident_bytes));
      device.peak->Set(static_cast<double>(memory->peak_resident_bytes));
    }
  }

  const std::shared_ptr<prometheus::Registry> registry;
  Family<Histogram>& request_duration;
  Histogram& queue_duration;
  Histogram& tokenization_duration;
  Family<Histogram>& inference_duration;
  Histogram& batch_tokens;
  Histogram& batch_documents;
  Histogram& document_tokens;
  Histogram& batch_peak_memory;
  Histogram& batch_longest_step;
  Counter& preempted_batches_total;
  Family<Counter>& documents_total;
  Counter& tokens_total;
  Counter& truncated_documents_total;
  Counter& chunks_total;
  Family<Counter>& rejected_requests_total;
  std::vector<Counter*> rejected;  // indexed by RejectReason
  Gauge& queue_documents;
  Gauge& inflight_requests;
  Gauge& process_resident;
  Gauge& process_peak_resident;
  Family<Gauge>& device_allocated;
  Family<Gauge>& device_reserved;
  Family<Gauge>& device_peak;
  Family<Gauge>& device_total;
  Family<Gauge>& model_info;

  absl::Mutex mu;
  absl::flat_hash_map<std::string, Histogram*> request_by_key ABSL_GUARDED_BY(mu);
  absl::flat_hash_map<std::string, Histogram*> inference_by_attention ABSL_GUARDED_BY(mu);
  absl::flat_hash_map<std::string, Counter*> documents_by_key ABSL_GUARDED_BY(mu);
  absl::flat_hash_map<std::string, DeviceGauges> device_by_name ABSL_GUARDED_BY(mu);
  absl::flat_hash_map<std::string, Gauge*> device_total_by_name ABSL_GUARDED_BY(mu);
  std::string process_device ABSL_GUARDED_BY(mu);
  int64_t process_peak_seen ABSL_GUARDED_BY(mu) = 0;
  Gauge* current_model_info ABSL_GUARDED_BY(mu) = nullptr;

  // What the exposer serves. It shares the Impl, so a scrape that raced with ~Metrics still
  // reads live objects.
  class Scrape : public prometheus::Collectable {
   public:
    explicit Scrape(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
    std::vector<prometheus::MetricFamily> Collect() const override {
      impl_->RefreshProcessMemory();
      return impl_->registry->Collect();
    }

   private:
    std::shared_ptr<Impl> impl_;
  };
};

Metrics::Metrics()
    : impl_(std::make_shared<Impl>()),
      collectable_(std::make_shared<Impl::Scrape>(impl_)) {}

Metrics::~Metrics() = default;

void Metrics::ObserveRequest(std::string_view method, absl::StatusCode code, double seconds) {
  impl_->RequestHistogram(method, code).Observe(seconds);
}

void Metrics::ObserveQueue(double seconds) { impl_->queue_duration.Observe(seconds); }

void Metrics::ObserveTokenization(double seconds) {
  impl_->tokenization_duration.Observe(seconds);
}

void Metrics::ObserveDocument(int64_t tokens, bool truncated) {
  impl_->document_tokens.Observe(static_cast<double>(tokens));
  if (truncated) impl_->truncated_documents_total.Increment();
}

void Metrics::ObserveChunks(int64_t chunks) {
  impl_->chunks_total.Increment(static_cast<double>(chunks));
}

void Metrics::ObserveBatch(const BatchObservation& batch) {
  const int64_t padded = batch.padded_tokens > 0 ? batch.padded_tokens : batch.tokens;
  impl_->batch_tokens.Observe(static_cast<double>(padded));
  impl_->batch_documents.Observe(static_cast<double>(batch.documents));
  if (batch.peak_memory_bytes > 0) {
    impl_->batch_peak_memory.Observe(static_cast<double>(batch.peak_memory_bytes));
  }
  impl_->tokens_total.Increment(static_cast<double>(batch.tokens));
  if (batch.longest_step_seconds > 0) impl_->batch_longest_step.Observe(batch.longest_step_seconds);
  impl_->preempted_batches_total.Increment(static_cast<double>(batch.preemptions));
  absl::MutexLock lock(&impl_->mu);
  if (!impl_->process_device.empty()) {  // CPU: batch peaks are process RSS peaks
    impl_->process_peak_seen = std::max(impl_->process_peak_seen, batch.peak_memory_bytes);
  }
  impl_->InferenceHistogram(batch.attention).Observe(batch.seconds);
  impl_->DocumentsCounter(batch.attention, batch.position_mode)
      .Increment(static_cast<double>(batch.documents));
}

void Metrics::Reject(RejectReason reason) {
  impl_->rejected[static_cast<size_t>(reason)]->Increment();
}

void Metrics::SetQueueDepth(int64_t documents) {
  impl_->queue_documents.Set(static_cast<double>(documents));
}

void Metrics::SetModelInfo(const ModelInfoLabels& info) {
  absl::MutexLock lock(&impl_->mu);
  if (impl_->current_model_info != nullptr) {
    impl_->model_info.Remove(impl_->current_model_info);
  }
  impl_->current_model_info = &impl_->model_info.Add({{"model", info.model},
                                                      {"attention", info.attention},
                                                      {"position_mode", info.position_mode},
                                                      {"device", info.device},
                                                      {"dtype", info.dtype},
                                                      {"version", info.version}});
  impl_->current_model_info->Set(1);
  impl_->InferenceHistogram(info.attention);
  impl_->DocumentsCounter(info.attention, info.position_mode);
}

void Metrics::SetDeviceMemory(std::string_view device, const DeviceMemory& memory) {
  absl::MutexLock lock(&impl_->mu);
  Impl::DeviceGauges& gauges = impl_->Device(device);
  gauges.allocated->Set(static_cast<double>(memory.allocated_bytes));
  gauges.reserved->Set(static_cast<double>(memory.reserved_bytes));
  gauges.peak->Set(static_cast<double>(memory.peak_bytes));
  if (memory.total_bytes > 0) {
    Gauge*& total = impl_->device_total_by_name[std::string(device)];
    if (total == nullptr) total = &impl_->device_total.Add({{"device", std::string(device)}});
    total->Set(static_cast<double>(memory.total_bytes));
  }
}

void Metrics::ReportProcessMemoryAsDevice(std::string_view device) {
  absl::MutexLock lock(&impl_->mu);
  impl_->process_device = std::string(device);
}

void Metrics::AddInflight(int64_t delta) {
  impl_->inflight_requests.Increment(static_cast<double>(delta));
}

Metrics::InflightGuard::InflightGuard(Metrics& metrics) : metrics_(&metrics) {
  metrics_->AddInflight(1);
}

Metrics::InflightGuard::InflightGuard(InflightGuard&& other) noexcept
    : metrics_(std::exchange(other.metrics_, nullptr)) {}

Metrics::InflightGuard::~InflightGuard() {
  if (metrics_ != nullptr) metrics_->AddInflight(-1);
}

std::shared_ptr<prometheus::Collectable> Metrics::collectable() const { return collectable_; }

prometheus::Registry& Metrics::registry() { return *impl_->registry; }

const std::vector<std::string>& Metrics::FamilyNames() {
  static const auto* const kNames = [] {
    auto* names = new std::vector<std::string>;
    for (const FamilySpec& spec : kFamilies) names->push_back(spec.name);
    return names;
  }();
  return *kNames;
}

std::string RenderText(const prometheus::Collectable& collectable) {
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, collectable.Collect());
  return out.str();
}

absl::StatusOr<std::unique_ptr<MetricsExposer>> MetricsExposer::Start(std::string_view address,
                                                                      const Metrics& metrics) {
  const size_t colon = address.rfind(':');
  absl::string_view host = colon == std::string_view::npos ? "" : Absl(address.substr(0, colon));
  absl::string_view port_text =
      colon == std::string_view::npos ? "" : Absl(address.substr(colon + 1));
  int port = -1;
  if (host.empty() || !absl::SimpleAtoi(port_text, &port) || port < 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("--metrics_address='", Absl(address),
                     "' is not host:port (e.g. 0.0.0.0:9464; port 0 disables)"));
  }
  auto exposer = std::unique_ptr<MetricsExposer>(new MetricsExposer());
  if (port == 0) return exposer;
  std::shared_ptr<prometheus::Collectable> collectable = metrics.collectable();
  auto listener = HttpListener::Start(std::string(host), port, "/metrics",
                                      [collectable] { return RenderText(*collectable); });
  if (!listener.ok()) {
    return absl::UnavailableError(absl::StrCat("--metrics_address=", Absl(address),
                                               ": cannot listen for /metrics: ",
                                               listener.status().message()));
  }
  exposer->listener_ = std::move(*listener);
  exposer->port_ = exposer->listener_->port();
  return exposer;
}

MetricsExposer::~MetricsExposer() = default;

}  // namespace longenc::metrics
