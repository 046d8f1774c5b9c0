// `longenc bench`: a load generator for the Embed RPC. Closed loop (a fixed number of calls in
// flight) or open loop (calls started at a fixed rate, whether or not earlier ones returned,
// so queueing shows up in latency instead of being hidden by the client). Bounded by a count
// and/or a duration. Latency is measured per call from start to completion.
//
// Thread-safety: RunBench is self-contained; the Client must outlive it.
#ifndef LONGENC_CLIENT_BENCH_H_
#define LONGENC_CLIENT_BENCH_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/client.h"

namespace longenc::client {

struct BenchOptions {
  int concurrency = 1;                 // closed loop: calls in flight
  double rate = 0;                     // open loop: calls per second (> 0 selects open loop)
  int64_t requests = 100;              // stop after this many calls (0 = no limit)
  absl::Duration duration = absl::ZeroDuration();  // stop starting calls after this (0 = none)
  int64_t warmup = 0;                  // calls run before measuring
  int docs_per_request = 1;
  // The documents: token ids, cycled through.
  std::vector<std::vector<int32_t>> documents;
  longenc::v1::EmbedRequest options;   // pooling, attention, ... (documents ignored)
};

struct BenchResult {
  int64_t requests = 0;                // completed (ok + errors)
  int64_t ok = 0;
  std::map<std::string, int64_t> errors;  // by gRPC code name
  int64_t documents = 0;               // in ok calls
  int64_t tokens = 0;                  // in ok calls
  absl::Duration elapsed;
  std::vector<double> latencies_ms;    // ok calls, sorted
  double Percentile(double p) const;
};

// Generated documents: `count` token-id sequences of `length` tokens ([CLS] ... [SEP]) with ids
// drawn from [1000, 30000) by a seeded generator (reproducible runs).
std::vector<std::vector<int32_t>> GeneratedDocuments(int64_t count, int64_t length,
                                                     uint64_t seed);

absl::StatusOr<BenchResult> RunBench(Client& client, const BenchOptions& options);

// Text and JSON reports.
std::string BenchReport(const BenchOptions& options, const BenchResult& result);
std::string BenchReportJson(const BenchOptions& options, const BenchResult& result);

}  // namespace longenc::client

#endif  // LONGENC_CLIENT_BENCH_H_
