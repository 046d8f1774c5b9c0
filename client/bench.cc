#include "client/bench.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <random>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "nlohmann/json.hpp"

namespace longenc::client {
namespace {

using longenc::v1::EmbedRequest;
using longenc::v1::EmbedResponse;

// Issues calls and records outcomes; shared by the closed and the open loop.
class Runner {
 public:
  Runner(Client& client, const BenchOptions& o, std::vector<EmbedRequest> requests)
      : client_(client), options_(o), requests_(std::move(requests)) {}

  // Starts one call unless the count or time limit is reached; false if it did not.
  bool Launch() {
    int64_t index;
    {
      absl::MutexLock lock(&mu_);
      if (!MayStartLocked()) return false;
      index = started_++;
      ++outstanding_;
    }
    auto* call = new Call;
    call->ctx = client_.NewContext();
    call->request = &requests_[index % requests_.size()];
    call->start = absl::Now();
    client_.stub()->async()->Embed(call->ctx.get(), call->request, &call->response,
                                   [this, call](grpc::Status s) { Done(call, s); });
    return true;
  }

  void Begin() {
    absl::MutexLock lock(&mu_);
    begin_ = absl::Now();
  }

  bool MayStart() {
    absl::MutexLock lock(&mu_);
    return MayStartLocked();
  }

  // Waits for every started call, then returns the result.
  BenchResult Finish() {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](int64_t* outstanding) { return *outstanding == 0; }, &outstanding_));
    result_.elapsed = last_end_ - begin_;
    std::sort(result_.latencies_ms.begin(), result_.latencies_ms.end());
    return result_;
  }

 private:
  struct Call {
    std::unique_ptr<grpc::ClientContext> ctx;
    const EmbedRequest* request = nullptr;
    EmbedResponse response;
    absl::Time start;
  };

  bool MayStartLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (options_.requests > 0 && started_ >= options_.requests) return false;
    if (options_.duration > absl::ZeroDuration() && absl::Now() - begin_ >= options_.duration) {
      return false;
    }
    return true;
  }

  void Done(Call* call, const grpc::Status& status) {
    const absl::Time end = absl::Now();
    bool relaunch;
    {
      absl::MutexLock lock(&mu_);
      ++result_.requests;
      if (status.ok()) {
        ++result_.ok;
        result_.documents += call->response.usage().documents();
        result_.tokens += call->response.usage().tokens();
        result_.latencies_ms.push_back(absl::ToDoubleMilliseconds(end - call->start));
      } else {
        ++result_.errors[absl::StatusCodeToString(
            static_cast<absl::StatusCode>(status.error_code()))];
      }
      last_end_ = std::max(last_end_, end);
      relaunch = options_.rate <= 0;  // closed loop: keep `concurrency` calls in flight
    }
    delete call;
    if (relaunch) Launch();
    absl::MutexLock lock(&mu_);
    --outstanding_;
  }

  Client& client_;
  const BenchOptions& options_;
  const std::vector<EmbedRequest> requests_;
  absl::Mutex mu_;
  int64_t started_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t outstanding_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time begin_ ABSL_GUARDED_BY(mu_) = absl::Now();
  absl::Time last_end_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  BenchResult result_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

double BenchResult::Percentile(double p) const {
  if (latencies_ms.empty()) return 0;
  const size_t i = static_cast<size_t>(
      std::min<double>(latencies_ms.size() - 1, std::ceil(p / 100.0 * latencies_ms.size()) - 1));
  return latencies_ms[i];
}

std::vector<std::vector<int32_t>> GeneratedDocuments(int64_t count, int64_t length,
                                                     uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> id(1000, 29999);
  std::vector<std::vector<int32_t>> docs(count);
  for (auto& d : docs) {
    d.resize(std::max<int64_t>(length, 2));
    for (auto& t : d) t = id(rng);
    d.front() = 101;  // [CLS] of the BERT uncased vocabulary
    d.back() = 102;   // [SEP]
  }
  return docs;
}

absl::StatusOr<BenchResult> RunBench(Client& client, const BenchOptions& o) {
  if (o.documents.empty()) return absl::InvalidArgumentError("bench: no documents");
  if (o.concurrency < 1) return absl::InvalidArgumentError("--concurrency must be >= 1");
  if (o.docs_per_request < 1) return absl::InvalidArgumentError("--docs_per_request must be >= 1");
  if (o.requests <= 0 && o.duration <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("bench needs --requests > 0 or --duration > 0");
  }
  // Distinct requests, cycled through (building them is not part of the measurement).
  std::vector<EmbedRequest> requests;
  const size_t n_requests =
      std::max<size_t>(1, std::min<size_t>(64, o.documents.size() / o.docs_per_request));
  size_t next_doc = 0;
  for (size_t r = 0; r < n_requests; ++r) {
    EmbedRequest req = o.options;
    req.clear_documents();
    for (int k = 0; k < o.docs_per_request; ++k) {
      const auto& ids = o.documents[next_doc++ % o.documents.size()];
      req.add_documents()->mutable_tokens()->mutable_ids()->Add(ids.begin(), ids.end());
    }
    requests.push_back(std::move(req));
  }
  // Warm-up: sequential calls, not measured.
  for (int64_t i = 0; i < o.warmup; ++i) {
    absl::StatusOr<EmbedResponse> r = client.Embed(requests[i % requests.size()]);
    if (!r.ok()) return r.status();
  }
  Runner runner(client, o, std::move(requests));
  runner.Begin();
  if (o.rate > 0) {
    const absl::Time t0 = absl::Now();
    for (int64_t i = 0;; ++i) {
      const absl::Time at = t0 + absl::Seconds(static_cast<double>(i) / o.rate);
      const absl::Duration wait = at - absl::Now();
      if (wait > absl::ZeroDuration()) absl::SleepFor(wait);
      if (!runner.Launch()) break;
    }
  } else {
    for (int i = 0; i < o.concurrency; ++i) {
      if (!runner.Launch()) break;
    }
  }
  return runner.Finish();
}

std::string BenchReport(const BenchOptions& o, const BenchResult& r) {
  const double secs = std::max(1e-9, absl::ToDoubleSeconds(r.elapsed));
  std::string mode = o.rate > 0 ? absl::StrFormat("open loop, %.1f req/s", o.rate)
                                : absl::StrFormat("closed loop, concurrency %d", o.concurrency);
  std::string out = absl::StrFormat(
      "mode: %s, %d docs/request\n"
      "requests: %d (ok %d) in %.3f s\n"
      "throughput: %.2f docs/s, %.0f tokens/s, %.2f req/s\n"
      "latency ms: p50 %.2f  p95 %.2f  p99 %.2f  max %.2f\n",
      mode, o.docs_per_request, r.requests, r.ok, secs, r.documents / secs, r.tokens / secs,
      r.ok / secs, r.Percentile(50), r.Percentile(95), r.Percentile(99),
      r.latencies_ms.empty() ? 0.0 : r.latencies_ms.back());
  for (const auto& [code, n] : r.errors) absl::StrAppend(&out, "errors ", code, ": ", n, "\n");
  return out;
}

std::string BenchReportJson(const BenchOptions& o, const BenchResult& r) {
  const double secs = std::max(1e-9, absl::ToDoubleSeconds(r.elapsed));
  nlohmann::json j;
  j["mode"] = o.rate > 0 ? "open" : "closed";
  j["concurrency"] = o.concurrency;
  j["rate"] = o.rate;
  j["docs_per_request"] = o.docs_per_request;
  j["requests"] = r.requests;
  j["ok"] = r.ok;
  j["errors"] = r.errors;
  j["documents"] = r.documents;
  j["tokens"] = r.tokens;
  j["seconds"] = secs;
  j["docs_per_s"] = r.documents / secs;
  j["tokens_per_s"] = r.tokens / secs;
  j["latency_ms"] = {{"p50", r.Percentile(50)},
                     {"p95", r.Percentile(95)},
                     {"p99", r.Percentile(99)},
                     {"max", r.latencies_ms.empty() ? 0.0 : r.latencies_ms.back()}};
  return j.dump();
}

}  // namespace longenc::client
