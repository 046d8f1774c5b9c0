#include "server/batching/batcher.h"

#include <algorithm>
#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/checkpoint.h"

namespace longenc::batching {
namespace {

using ::testing::ElementsAre;
using ::testing::UnorderedElementsAre;

class FakeClock : public Clock {
 public:
  absl::Time Now() const override {
    absl::MutexLock lock(&mu_);
    return now_;
  }
  void Advance(absl::Duration d) {
    absl::MutexLock lock(&mu_);
    now_ += d;
  }

 private:
  mutable absl::Mutex mu_;
  absl::Time now_ = absl::FromUnixSeconds(1000);
};

// Row i = {length, first id, pooling, normalize}; chunk row c = {begin, end, its sequence's
// first id, 0}; records every batch; each call takes `compute` of fake time.
class FakeBackend : public model::Backend {
 public:
  explicit FakeBackend(FakeClock* clock) : clock_(clock) {}
  const model::ModelInfo& info() const override { return info_; }
  absl::Status ValidateSettings(const model::EncodeSettings&) const override {
    return absl::OkStatus();
  }
  absl::StatusOr<model::BatchResult> Embed(const model::Batch& batch) override {
    absl::MutexLock lock(&mu_);
    if (clock_ != nullptr) clock_->Advance(compute);
    std::vector<int64_t> lengths;
    for (int64_t i = 0; i < batch.size(); ++i) lengths.push_back(batch.length(i));
    batches.push_back(lengths);
    settings.push_back(batch.settings);
    if (!fail.ok()) return fail;
    model::BatchResult r;
    r.dim = 4;
    for (int64_t i = 0; i < batch.size(); ++i) {
      r.embeddings.push_back(static_cast<float>(batch.length(i)));
      r.embeddings.push_back(static_cast<float>(batch.token_ids[batch.offsets[i]]));
      r.embeddings.push_back(batch.pooling[i] == model::Pooling::kCls ? 1.f : 0.f);
      r.embeddings.push_back(static_cast<float>(batch.normalize[i]));
      for (int64_t c = batch.chunk_offsets[i]; c < batch.chunk_offsets[i + 1]; ++c) {
        r.chunk_embeddings.insert(r.chunk_embeddings.end(),
                                  {static_cast<float>(batch.chunks[c].begin),
                                   static_cast<float>(batch.chunks[c].end),
                                   static_cast<float>(batch.token_ids[batch.offsets[i]]), 0.f});
      }
    }
    return r;
  }

  absl::Mutex mu_;
  std::vector<std::vector<int64_t>> batches;
  std::vector<model::EncodeSettings> settings;
  absl::Status fail;
  absl::Duration compute = absl::ZeroDuration();

 private:
  FakeClock* clock_;
  model::ModelInfo info_;
};

// A document of `len` tokens whose first id is `tag`.
std::vector<int32_t> Doc(int len, int32_t tag) { return std::vector<int32_t>(len, tag); }

// Holds the outcome of one job.
struct Outcome {
  std::optional<absl::StatusOr<JobResult>> result;
  int calls = 0;
};

Job MakeJob(std::vector<std::vector<int32_t>> docs, Outcome* out) {
  Job job;
  job.documents = std::move(docs);
  job.done = [out](absl::StatusOr<JobResult> r) {
    out->result = std::move(r);
    ++out->calls;
  };
  return job;
}

BatcherOptions Options(int64_t budget, absl::Duration delay, int64_t queue = 1000) {
  BatcherOptions o;
  o.max_batch_tokens = budget;
  o.max_batch_delay = delay;
  o.max_queue_documents = queue;
  return o;
}

struct Fixture {
  explicit Fixture(const BatcherOptions& o, BatchObserver* observer = nullptr)
      : backend(&clock), batcher(&backend, o, &clock, observer) {}
  FakeClock clock;
  FakeBackend backend;
  Batcher batcher;
};

TEST(Batcher, WaitsForTheDelayThenRunsAPartialBatch) {
  Fixture f(Options(1000, absl::Milliseconds(5)));
  Outcome out;
  ASSERT_TRUE(f.batcher.Submit(MakeJob({Doc(10, 7)}, &out)).ok());
  const absl::Time t0 = f.clock.Now();
  Batcher::StepResult r = f.batcher.Step();
  EXPECT_FALSE(r.ran);
  EXPECT_EQ(r.wake_at, t0 + absl::Milliseconds(5));
  EXPECT_EQ(out.calls, 0);
  f.clock.Advance(absl::Milliseconds(5));
  r = f.batcher.Step();
  EXPECT_TRUE(r.ran);
  ASSERT_EQ(out.calls, 1);
  ASSERT_TRUE(out.result->ok());
  EXPECT_EQ((*out.result)->dim, 4);
  EXPECT_THAT((*out.result)->embeddings, ElementsAre(10, 7, 0, 1));
  EXPECT_EQ((*out.result)->queue_time, absl::Milliseconds(5));
}

// Late chunks ride with their document through batches of any composition and come back in
// job order.
TEST(Batcher, CarriesEachDocumentsChunksToTheBackendAndBack) {
  Fixture f(Options(64, absl::ZeroDuration()));
  Outcome out;
  Job job = MakeJob({Doc(40, 1), Doc(10, 2), Doc(30, 3)}, &out);  // doc 0 runs alone
  job.chunks = {{{1, 20}, {15, 39}}, {}, {{1, 29}}};
  ASSERT_TRUE(f.batcher.Submit(std::move(job)).ok());
  while (out.calls == 0) f.batcher.Step();
  ASSERT_TRUE(out.result->ok()) << out.result->status();
  EXPECT_GE(f.backend.batches.size(), 2u);
  const std::vector<std::vector<float>>& chunks = (*out.result)->chunk_embeddings;
  ASSERT_EQ(chunks.size(), 3u);
  EXPECT_THAT(chunks[0], ElementsAre(1, 20, 1, 0, 15, 39, 1, 0));
  EXPECT_TRUE(chunks[1].empty());
  EXPECT_THAT(chunks[2], ElementsAre(1, 29, 3, 0));

  Outcome bad;
  Job mismatched = MakeJob({Doc(4, 1), Doc(4, 2)}, &bad);
  mismatched.chunks = {{{1, 3}}};
  EXPECT_EQ(f.batcher.Submit(std::move(mismatched)).code(), absl::StatusCode::kInvalidArgument);
}

TEST(Batcher, FullBatchRunsWithoutWaiting) {
  Fixture f(Options(20, absl::Seconds(10)));
  Outcome a, b;
  ASSERT_TRUE(f.batcher.Submit(MakeJob({Doc(10, 1)}, &a)).ok());
  ASSERT_TRUE(f.batcher.Submit(MakeJob({Doc(10, 2)}, &b)).ok());
  EXPECT_TRUE(f.batcher.Step().ran);
  EXPECT_EQ(a.calls, 1);
  EXPECT_EQ(b.calls, 1);
  EXPECT_THAT(f.backend.batches, ElementsAre(ElementsAre(10, 10)));
}

TEST(Batcher, QueueFullIsRefusedAtOnceWithoutCallback) {
  Fixture f(Options(1000, absl::Seconds(1), /*queue=*/3));
  Outcome a, b, c;
  ASSERT_TRUE(f.batcher.Submit(MakeJob({Doc(5, 1), Doc(5, 2)}, &a)).ok());
  const absl::Status s = f.batcher.Submit(MakeJob({Doc(5, 3), Doc(5, 4)}, &b));
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(s.message()), ::testing::HasSubstr("--max_queue"));
  EXPECT_EQ(f.batcher.queued_documents(), 2);
  ASSERT_TRUE(f.batcher.Submit(MakeJob({Doc(5, 5)}, &c)).ok());
  f.clock.Advance(absl::Seconds(1));
  while (f.batcher.Step().ran) {
  }
  EXPECT_EQ(a.calls, 1);
  EXPECT_EQ(b.calls, 0);
  EXPECT_EQ(c.calls, 1);
}

TEST(Batcher, PaddingAwareBudgetKeepsALongDocumentOut) {
  // 3 x 10 = 30 fits 100; adding the 60-token document would cost 60 x 4 = 240.
  Fixture f(Options(100, absl::ZeroDuration()));
  Outcome a;
  ASSERT_TRUE(f.batcher.Submit(MakeJob({Doc(10, 1), Doc(10, 2), Doc(10, 3), Doc(60, 4)}, &a)).ok());
  EXPECT_TRUE(f.batcher.Step().ran);
  EXPECT_TRUE(f.batcher.Step().ran);
  EXPECT_FALSE(f.batcher.Step().ran);
  EXPECT_THAT(f.backend.batches, ElementsAre(ElementsAre(10, 10, 10), ElementsAre(60)));
  ASSERT_TRUE(a.result->ok());
  EXPECT_EQ((*a.result)->batches, 2);
  // Rows come back in job order whatever the batches were.
  const std::vector<float>& e = (*a.result)->embeddings;
  EXPECT_EQ(e[1], 1);
  EXPECT_EQ(e[5], 2);
  EXPECT_EQ(e[9], 3);
  EXPECT_EQ(e[12], 60);
  EXPECT_EQ(e[13], 4);
}

TEST(Batcher, GroupsSimilarLengthsSoShortDocumentsDoNotPadToLongOnes) {
  Fixture f(Options(160, absl::ZeroDuration()));
  Outcome a;
  ASSERT_TRUE(
      f.batcher.Submit(MakeJob({Doc(50, 1), Doc(10, 2), Doc(48, 3), Doc(12, 4), Doc(52, 5)}, &a))
          .ok());
  while (f.batcher.Step().ran) {
  }
  // The head (50) takes its nearest lengths 48 and 52 (3 x 52 = 156); 10 and 12 go together.
  ASSERT_EQ(f.backend.batches.size(), 2u);
  EXPECT_THAT(f.backend.batches[0], UnorderedElementsAre(50, 48, 52));
  EXPECT_THAT(f.backend.batches[1], UnorderedElementsAre(10, 12));
  ASSERT_TRUE(a.result->ok());
  const std::vector<float>& e = (*a.result)->embeddings;
  for (int i = 0; i < 5; ++i) EXPECT_EQ(e[i * 4 + 1], i + 1) << i;
}

TEST(Batcher, DocumentOverTheBudgetRunsAlone) {
  Fixture f(Options(16, absl::Seconds(1)));
  Outcome a, b;
  ASSERT_TRUE(f.batcher.Submit(MakeJob({Doc(40, 1)}, &a)).ok());
  ASSERT_TRUE(f.batcher.Submit(MakeJob({Doc(4, 2)}, &b)).ok());
  EXPECT_TRUE(f.batcher.Step().ran);  // no delay: it can never share a batch
  EXPECT_THAT(f.backend.batches, ElementsAre(ElementsAre(40)));
  EXPECT_EQ(a.calls, 1);
  EXPECT_EQ(b.calls, 0);
}

TEST(Batcher, BatchesOnlyDocumentsWithEqualSettings) {
  Fixture f(Options(1000, absl::ZeroDuration()));
  Outcome a, b, c;
  Job ja = MakeJob({Doc(5, 1)}, &a);
  Job jb = MakeJob({Doc(5, 2)}, &b);
  jb.settings.attention = "yoso";
  Job jc = MakeJob({Doc(5, 3)}, &c);
  ASSERT_TRUE(f.batcher.Submit(std::move(ja)).ok());
  ASSERT_TRUE(f.batcher.Submit(std::move(jb)).ok());
  ASSERT_TRUE(f.batcher.Submit(std::move(jc)).ok());
  while (f.batcher.Step().ran) {
  }
  ASSERT_EQ(f.backend.batches.size(), 2u);
  EXPECT_THAT(f.backend.batches[0], ElementsAre(5, 5));
  EXPECT_EQ(f.backend.settings[0].attention, "");
  EXPECT_EQ(f.backend.settings[1].attention, "yoso");
  EXPECT_EQ(b.calls, 1);
}

TEST(Batcher, PoolingAndNormalizeTravelPerDocument) {
  Fixture f(Options(1000, absl::ZeroDuration()));
  Outcome a, b;
  Job ja = MakeJob({Doc(5, 1)}, &a);
  ja.pooling = model::Pooling::kCls;
  ja.normalize = false;
  ASSERT_TRUE(f.batcher.Submit(std::move(ja)).ok());
  ASSERT_TRUE(f.batcher.Submit(MakeJob({Doc(5, 2)}, &b)).ok());
  EXPECT_TRUE(f.batcher.Step().ran);
  ASSERT_EQ(f.backend.batches.size(), 1u);
  EXPECT_THAT((*a.result)->embeddings, ElementsAre(5, 1, 1, 0));
  EXPECT_THAT((*b.result)->embeddings, ElementsAre(5, 2, 0, 1));
}

TEST(Batcher, CancelledJobIsDroppedBeforeCompute) {
  Fixture f(Options(1000, absl::ZeroDuration()));
  Outcome a, b;
  Job ja = MakeJob({Doc(5, 1), Doc(6, 1)}, &a);
  ja.cancelled = std::make_shared<std::atomic<bool>>(false);
  auto flag = ja.cancelled;
  ASSERT_TRUE(f.batcher.Submit(std::move(ja)).ok());
  ASSERT_TRUE(f.batcher.Submit(MakeJob({Doc(5, 2)}, &b)).ok());
  flag->store(true);
  while (f.batcher.Step().ran) {
  }
  ASSERT_EQ(a.calls, 1);
  EXPECT_EQ(a.result->status().code(), absl::StatusCode::kCancelled);
  EXPECT_THAT(f.backend.batches, ElementsAre(ElementsAre(5)));
  EXPECT_EQ(b.calls, 1);
  EXPECT_EQ(f.batcher.queued_documents(), 0);
}

TEST(Batcher, ExpiredJobIsDroppedBeforeCompute) {
  Fixture f(Options(1000, absl::Milliseconds(5)));
  Outcome a;
  Job ja = MakeJob({Doc(5, 1)}, &a);
  ja.deadline = f.clock.Now() + absl::Milliseconds(2);
  ASSERT_TRUE(f.batcher.Submit(std::move(ja)).ok());
  f.clock.Advance(absl::Milliseconds(3));
  EXPECT_TRUE(f.batcher.Step().ran);
  ASSERT_EQ(a.calls, 1);
  EXPECT_EQ(a.result->status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_TRUE(f.backend.batches.empty());
}

TEST(Batcher, AlreadyExpiredJobIsRefused) {
  Fixture f(Options(1000, absl::ZeroDuration()));
  Outcome a;
  Job ja = MakeJob({Doc(5, 1)}, &a);
  ja.deadline = f.clock.Now();
  EXPECT_EQ(f.batcher.Submit(std::move(ja)).code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(a.calls, 0);
}

TEST(Batcher, BackendErrorFailsEveryJobOfTheBatchOnce) {
  Fixture f(Options(1000, absl::ZeroDuration()));
  f.backend.fail = absl::InternalError("boom");
  Outcome a, b;
  ASSERT_TRUE(f.batcher.Submit(MakeJob({Doc(5, 1), Doc(5, 1)}, &a)).ok());
  ASSERT_TRUE(f.batcher.Submit(MakeJob({Doc(5, 2)}, &b)).ok());
  while (f.batcher.Step().ran) {
  }
  EXPECT_EQ(a.calls, 1);
  EXPECT_EQ(b.calls, 1);
  EXPECT_EQ(a.result->status().code(), absl::StatusCode::kInternal);
  EXPECT_EQ(b.result->status().code(), absl::StatusCode::kInternal);
}

TEST(Batcher, FailedJobLosesItsOtherQueuedDocuments) {
  Fixture f(Options(10, absl::ZeroDuration()));
  f.backend.fail = absl::InternalError("boom");
  Outcome a;
  ASSERT_TRUE(f.batcher.Submit(MakeJob({Doc(8, 1), Doc(8, 2)}, &a)).ok());
  EXPECT_TRUE(f.batcher.Step().ran);
  EXPECT_FALSE(f.batcher.Step().ran);
  EXPECT_EQ(f.backend.batches.size(), 1u);
  EXPECT_EQ(a.calls, 1);
  EXPECT_EQ(f.batcher.queued_documents(), 0);
}

TEST(Batcher, TimingComesFromTheClock) {
  Fixture f(Options(1000, absl::Milliseconds(4)));
  f.backend.compute = absl::Milliseconds(7);
  Outcome a;
  ASSERT_TRUE(f.batcher.Submit(MakeJob({Doc(5, 1)}, &a)).ok());
  f.clock.Advance(absl::Milliseconds(4));
  EXPECT_TRUE(f.batcher.Step().ran);
  ASSERT_TRUE(a.result->ok());
  EXPECT_EQ((*a.result)->queue_time, absl::Milliseconds(4));
  EXPECT_EQ((*a.result)->inference_time, absl::Milliseconds(7));
}

TEST(Batcher, DrainRefusesNewJobsAndFlushesWithoutDelay) {
  Fixture f(Options(1000, absl::Seconds(60)));
  Outcome a, b;
  ASSERT_TRUE(f.batcher.Submit(MakeJob({Doc(5, 1)}, &a)).ok());
  f.batcher.Drain();
  EXPECT_EQ(f.batcher.Submit(MakeJob({Doc(5, 2)}, &b)).code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(f.batcher.Step().ran);
  EXPECT_EQ(a.calls, 1);
  EXPECT_EQ(b.calls, 0);
}

class RecordingObserver : public BatchObserver {
 public:
  void OnEnqueue(int64_t documents, int64_t tokens, int64_t depth) override {
    enqueued_docs += documents;
    enqueued_tokens += tokens;
    last_depth = depth;
  }
  void OnReject(absl::StatusCode code, int64_t) override { rejects.push_back(code); }
  void OnDrop(absl::StatusCode code, int64_t documents, int64_t depth) override {
    drops.push_back(code);
    dropped_docs += documents;
    last_depth = depth;
  }
  void OnBatch(const BatchStats& s, int64_t depth) override {
    stats.push_back(s);
    last_depth = depth;
  }
  int64_t enqueued_docs = 0, enqueued_tokens = 0, dropped_docs = 0, last_depth = -1;
  std::vector<absl::StatusCode> rejects, drops;
  std::vector<BatchStats> stats;
};

TEST(Batcher, ObserverSeesEveryStage) {
  RecordingObserver obs;
  Fixture f(Options(100, absl::ZeroDuration(), /*queue=*/4), &obs);
  f.backend.compute = absl::Milliseconds(3);
  Outcome a, b, c;
  Job ja = MakeJob({Doc(10, 1), Doc(30, 1)}, &a);
  ASSERT_TRUE(f.batcher.Submit(std::move(ja)).ok());
  Job jb = MakeJob({Doc(5, 2)}, &b);
  jb.cancelled = std::make_shared<std::atomic<bool>>(true);
  ASSERT_TRUE(f.batcher.Submit(std::move(jb)).ok());
  EXPECT_FALSE(f.batcher.Submit(MakeJob({Doc(1, 3), Doc(1, 3)}, &c)).ok());
  EXPECT_EQ(obs.enqueued_docs, 3);
  EXPECT_EQ(obs.enqueued_tokens, 45);
  EXPECT_EQ(obs.last_depth, 3);
  EXPECT_THAT(obs.rejects, ElementsAre(absl::StatusCode::kResourceExhausted));
  EXPECT_TRUE(f.batcher.Step().ran);
  EXPECT_THAT(obs.drops, ElementsAre(absl::StatusCode::kCancelled));
  EXPECT_EQ(obs.dropped_docs, 1);
  ASSERT_EQ(obs.stats.size(), 1u);
  EXPECT_EQ(obs.stats[0].documents, 2);
  EXPECT_EQ(obs.stats[0].tokens, 40);
  EXPECT_EQ(obs.stats[0].padded_tokens, 60);
  EXPECT_EQ(obs.stats[0].inference_time, absl::Milliseconds(3));
  EXPECT_EQ(obs.stats[0].queue_times.size(), 2u);
  EXPECT_EQ(obs.stats[0].code, absl::StatusCode::kOk);
  EXPECT_EQ(obs.last_depth, 0);
}

// Runs one 100-token document alone in `compute` of fake time, so the batcher measures
// 100 tokens / compute.
void RunTimedBatch(Fixture* f, absl::Duration compute) {
  Outcome out;
  f->backend.compute = compute;
  ASSERT_TRUE(f->batcher.Submit(MakeJob({Doc(100, 9)}, &out)).ok());
  Batcher::StepResult r = f->batcher.Step();
  if (!r.ran) {  // wait out max_batch_delay
    f->clock.Advance(r.wake_at - f->clock.Now());
    r = f->batcher.Step();
  }
  ASSERT_TRUE(r.ran);
  ASSERT_EQ(out.calls, 1);
  ASSERT_TRUE(out.result->ok());
}

Job JobWithDeadline(std::vector<std::vector<int32_t>> docs, Outcome* out, absl::Time deadline) {
  Job job = MakeJob(std::move(docs), out);
  job.deadline = deadline;
  return job;
}

TEST(Batcher, ThroughputEstimateTracksBatchTimes) {
  Fixture f(Options(1000, absl::ZeroDuration()));
  EXPECT_EQ(f.batcher.cost_per_second(), 0);
  RunTimedBatch(&f, absl::Seconds(1));
  EXPECT_DOUBLE_EQ(f.batcher.cost_per_second(), 100);
  RunTimedBatch(&f, absl::Milliseconds(500));  // 200 tokens/s
  const double a = Batcher::kThroughputAlpha;
  EXPECT_DOUBLE_EQ(f.batcher.cost_per_second(), a * 200 + (1 - a) * 100);
  // A failed batch is not a measurement.
  f.backend.fail = absl::InternalError("boom");
  const double before = f.batcher.cost_per_second();
  Outcome out;
  f.backend.compute = absl::Seconds(50);
  ASSERT_TRUE(f.batcher.Submit(MakeJob({Doc(100, 9)}, &out)).ok());
  ASSERT_TRUE(f.batcher.Step().ran);
  EXPECT_DOUBLE_EQ(f.batcher.cost_per_second(), before);
}

TEST(Batcher, RefusesWhenExpectedWaitExceedsTheDeadline) {
  RecordingObserver obs;
  Fixture f(Options(1000, absl::Seconds(10)), &obs);
  RunTimedBatch(&f, absl::Seconds(1));  // 100 tokens/s
  Outcome ahead, late;
  ASSERT_TRUE(f.batcher.Submit(MakeJob({Doc(100, 1), Doc(100, 2), Doc(100, 4)}, &ahead)).ok());
  // (300 queued + 100 own) / 100 tokens/s = 4 s > 2 s.
  const absl::Status s =
      f.batcher.Submit(JobWithDeadline({Doc(100, 3)}, &late, f.clock.Now() + absl::Seconds(2)));
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(s.message()),
              ::testing::HasSubstr("expected wait 4.0 s exceeds the call's remaining "
                                   "deadline 2.0 s"));
  EXPECT_THAT(std::string(s.message()), ::testing::HasSubstr("retry later or elsewhere"));
  EXPECT_EQ(late.calls, 0);
  EXPECT_EQ(f.batcher.queued_documents(), 3);
  EXPECT_THAT(obs.rejects, ElementsAre(absl::StatusCode::kResourceExhausted));
}

TEST(Batcher, CostlierDocumentsQueuedAheadDoNotCountAgainstTheDeadline) {
  // They run after it, or it runs from their checkpoints: only cheaper work is ahead.
  Fixture f(Options(1000, absl::Seconds(10)));
  RunTimedBatch(&f, absl::Seconds(1));  // 100 tokens/s
  Outcome ahead, quick;
  ASSERT_TRUE(f.batcher.Submit(MakeJob({Doc(500, 1), Doc(500, 2)}, &ahead)).ok());
  EXPECT_TRUE(
      f.batcher.Submit(JobWithDeadline({Doc(100, 3)}, &quick, f.clock.Now() + absl::Seconds(2)))
          .ok());
}

TEST(Batcher, AdmitsWhenExpectedWaitFitsTheDeadline) {
  Fixture f(Options(1000, absl::Seconds(10)));
  RunTimedBatch(&f, absl::Seconds(1));  // 100 tokens/s
  Outcome ahead, fits;
  ASSERT_TRUE(f.batcher.Submit(MakeJob({Doc(150, 1), Doc(150, 2)}, &ahead)).ok());
  // Exactly 4 s of expected wait for 4 s left: admitted.
  EXPECT_TRUE(
      f.batcher.Submit(JobWithDeadline({Doc(100, 3)}, &fits, f.clock.Now() + absl::Seconds(4)))
          .ok());
  EXPECT_EQ(f.batcher.queued_documents(), 3);
}

TEST(Batcher, NoRefusalForWaitBeforeTheFirstEstimate) {
  Fixture f(Options(1000, absl::Seconds(10)));
  Outcome ahead, tight;
  ASSERT_TRUE(f.batcher.Submit(MakeJob({Doc(500, 1), Doc(500, 2)}, &ahead)).ok());
  EXPECT_TRUE(f.batcher
                  .Submit(JobWithDeadline({Doc(100, 3)}, &tight,
                                          f.clock.Now() + absl::Milliseconds(1)))
                  .ok());
}

TEST(Batcher, JobsWithoutDeadlineAreNotRefusedForWait) {
  Fixture f(Options(1000, absl::Seconds(10)));
  RunTimedBatch(&f, absl::Seconds(1));  // 100 tokens/s: 10 s of work below
  Outcome a, b;
  ASSERT_TRUE(f.batcher.Submit(MakeJob({Doc(500, 1), Doc(500, 2)}, &a)).ok());
  EXPECT_TRUE(f.batcher.Submit(MakeJob({Doc(500, 3)}, &b)).ok());
}

TEST(Batcher, DeadlineNoServerCouldMeetIsDeadlineExceeded) {
  // Its own 100 tokens need 1 s and it has 0.5 s: not an overload (retrying elsewhere would
  // not help), so DEADLINE_EXCEEDED, even on an idle server.
  RecordingObserver obs;
  Fixture f(Options(1000, absl::ZeroDuration()), &obs);
  RunTimedBatch(&f, absl::Seconds(1));  // 100 tokens/s
  Outcome a, b;
  const absl::Status s = f.batcher.Submit(
      JobWithDeadline({Doc(100, 1)}, &a, f.clock.Now() + absl::Milliseconds(500)));
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(std::string(s.message()), ::testing::HasSubstr("even on an idle server"));
  EXPECT_THAT(obs.rejects, ElementsAre(absl::StatusCode::kDeadlineExceeded));
  // One that fits is admitted and runs.
  f.backend.compute = absl::Milliseconds(100);
  ASSERT_TRUE(
      f.batcher.Submit(JobWithDeadline({Doc(100, 2)}, &b, f.clock.Now() + absl::Seconds(2))).ok());
  EXPECT_TRUE(f.batcher.Step().ran);
  ASSERT_EQ(b.calls, 1);
  EXPECT_TRUE(b.result->ok());
}

TEST(Batcher, JobThatWouldFinishAfterItsDeadlineIsDroppedBeforeCompute) {
  RecordingObserver obs;
  Fixture f(Options(1000, absl::ZeroDuration()), &obs);
  RunTimedBatch(&f, absl::Seconds(1));  // 100 tokens/s
  Outcome doomed, other;
  // Admitted (nothing ahead, 1 s of its own work for 1.5 s), but the batch with `other` would
  // take 200 / 100 = 2 s.
  ASSERT_TRUE(f.batcher
                  .Submit(JobWithDeadline({Doc(100, 1)}, &doomed,
                                          f.clock.Now() + absl::Milliseconds(1500)))
                  .ok());
  ASSERT_TRUE(f.batcher.Submit(MakeJob({Doc(100, 2)}, &other)).ok());
  EXPECT_TRUE(f.batcher.Step().ran);
  ASSERT_EQ(doomed.calls, 1);
  EXPECT_EQ(doomed.result->status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(std::string(doomed.result->status().message()),
              ::testing::HasSubstr("deadline would pass during compute"));
  ASSERT_EQ(other.calls, 1);
  EXPECT_TRUE(other.result->ok());
  // The first batch was the estimate's; then `other` alone.
  EXPECT_THAT(f.backend.batches, ElementsAre(ElementsAre(100), ElementsAre(100)));
  EXPECT_THAT(obs.drops, ElementsAre(absl::StatusCode::kDeadlineExceeded));
  EXPECT_EQ(f.batcher.queued_documents(), 0);
}

TEST(Batcher, JobThatFitsItsBatchIsComputed) {
  Fixture f(Options(1000, absl::ZeroDuration()));
  RunTimedBatch(&f, absl::Seconds(1));  // 100 tokens/s
  Outcome a, b;
  ASSERT_TRUE(
      f.batcher.Submit(JobWithDeadline({Doc(100, 1)}, &a, f.clock.Now() + absl::Seconds(3)))
          .ok());
  ASSERT_TRUE(f.batcher.Submit(MakeJob({Doc(100, 2)}, &b)).ok());
  EXPECT_TRUE(f.batcher.Step().ran);
  ASSERT_EQ(a.calls, 1);
  EXPECT_TRUE(a.result->ok());
  EXPECT_EQ(f.backend.batches.back().size(), 2u);
}

TEST(Batcher, InferenceThreadServesConcurrentSubmitters) {
  FakeBackend backend(nullptr);
  Batcher batcher(&backend, Options(64, absl::ZeroDuration()), Clock::Real(), nullptr);
  batcher.Start();
  constexpr int kJobs = 20;
  std::vector<absl::Notification> done(kJobs);
  std::vector<std::vector<float>> rows(kJobs);
  for (int i = 0; i < kJobs; ++i) {
    Job job;
    job.documents = {Doc(1 + i % 7, i), Doc(3, i)};
    job.done = [&, i](absl::StatusOr<JobResult> r) {
      if (r.ok()) rows[i] = r->embeddings;
      done[i].Notify();
    };
    ASSERT_TRUE(batcher.Submit(std::move(job)).ok());
  }
  for (auto& n : done) n.WaitForNotification();
  for (int i = 0; i < kJobs; ++i) {
    EXPECT_THAT(rows[i], ElementsAre(1 + i % 7, i, 0, 1, 3, i, 0, 1)) << i;
  }
  batcher.Drain();
  EXPECT_EQ(batcher.queued_documents(), 0);
}

// Documents of at least 1000 tokens run in `long_steps` steps of `step` fake time with a
// checkpoint before each (as the model does between head groups and layers); shorter ones in
// one step of `short_step`. Records the longest document of each batch when it ends.
class SteppedBackend : public model::Backend {
 public:
  explicit SteppedBackend(FakeClock* clock) : clock_(clock) {}
  const model::ModelInfo& info() const override { return info_; }
  absl::Status ValidateSettings(const model::EncodeSettings&) const override {
    return absl::OkStatus();
  }
  absl::StatusOr<model::BatchResult> Embed(const model::Batch& batch) override {
    int64_t longest = 0;
    for (int64_t i = 0; i < batch.size(); ++i) longest = std::max(longest, batch.length(i));
    try {
      if (longest >= 1000) {
        for (int i = 0; i < long_steps; ++i) {
          if (on_step) on_step(i);
          model::AtCheckpoint();
          clock_->Advance(step);
          ++long_steps_run;
        }
      } else {
        model::AtCheckpoint();  // none is installed in a nested batch: a no-op
        clock_->Advance(short_step);
      }
    } catch (const model::StepStopped& stopped) {
      return stopped.status();
    }
    finished.push_back(longest);
    model::BatchResult r;
    r.dim = 1;
    for (int64_t i = 0; i < batch.size(); ++i) r.embeddings.push_back(batch.length(i));
    return r;
  }

  int long_steps = 10;
  absl::Duration step = absl::Milliseconds(100);
  absl::Duration short_step = absl::Milliseconds(10);
  std::function<void(int)> on_step;
  int long_steps_run = 0;
  std::vector<int64_t> finished;

 private:
  FakeClock* clock_;
  model::ModelInfo info_;
};

struct SteppedFixture {
  explicit SteppedFixture(double share = 0.2) : backend(&clock), batcher(&backend, Make(share), &clock, nullptr) {}
  static BatcherOptions Make(double share) {
    BatcherOptions o = Options(100000, absl::ZeroDuration());
    o.preempt_share = share;
    return o;
  }
  FakeClock clock;
  SteppedBackend backend;
  Batcher batcher;
};

// A job of one document in settings of its own (so no two of them batch together).
Job Single(int len, int tag, Outcome* out) {
  Job job = MakeJob({Doc(len, tag)}, out);
  job.settings.attention_options = absl::StrCat("tag=", tag);
  return job;
}

TEST(BatcherPreemption, ShortJobRunsFromALongBatchsCheckpoint) {
  SteppedFixture f;
  Outcome long_out, short_out;
  ASSERT_TRUE(f.batcher.Submit(Single(1000, 1, &long_out)).ok());
  f.backend.on_step = [&](int i) {
    if (i == 2) ASSERT_TRUE(f.batcher.Submit(Single(10, 2, &short_out)).ok());
  };
  const absl::Time start = f.clock.Now();
  EXPECT_TRUE(f.batcher.Step().ran);
  EXPECT_THAT(f.backend.finished, ElementsAre(10, 1000));  // the short one ended first
  ASSERT_EQ(short_out.calls, 1);
  ASSERT_TRUE(short_out.result->ok());
  EXPECT_EQ((*short_out.result)->queue_time, absl::ZeroDuration());  // ran at the next step
  ASSERT_EQ(long_out.calls, 1);
  ASSERT_TRUE(long_out.result->ok());
  // Its inference time is its own, not the short one's.
  EXPECT_EQ((*long_out.result)->inference_time, absl::Seconds(1));
  EXPECT_EQ(f.clock.Now() - start, absl::Milliseconds(1010));
}

TEST(BatcherPreemption, ShortJobsTakeAtMostTheShareOfALongBatch) {
  SteppedFixture f(0.2);
  Outcome long_out;
  std::vector<Outcome> shorts(60);
  ASSERT_TRUE(f.batcher.Submit(Single(1000, 0, &long_out)).ok());
  f.backend.on_step = [&](int i) {
    if (i != 0) return;
    for (int j = 0; j < 60; ++j) ASSERT_TRUE(f.batcher.Submit(Single(10, 1 + j, &shorts[j])).ok());
  };
  const absl::Time start = f.clock.Now();
  EXPECT_TRUE(f.batcher.Step().ran);
  ASSERT_EQ(long_out.calls, 1);
  // 1 s of its own compute: at most 0.2 s of short batches (plus one that started in time).
  const absl::Duration took = f.clock.Now() - start;
  EXPECT_LE(took, absl::Milliseconds(1210));
  EXPECT_GE(took, absl::Milliseconds(1150));  // and the share was used
  int ran = 0;
  for (const Outcome& o : shorts) ran += o.calls;
  EXPECT_EQ(ran, 60 - f.batcher.queued_documents());
  // The rest runs after it, in order.
  while (f.batcher.queued_documents() > 0) f.batcher.Step();
  for (const Outcome& o : shorts) EXPECT_EQ(o.calls, 1);
}

TEST(BatcherPreemption, BatchStatsReportTheLongestStepAndThePreemptions) {
  class Steps : public BatchObserver {
   public:
    void OnBatch(const BatchStats& stats, int64_t) override { batches.push_back(stats); }
    std::vector<BatchStats> batches;
  } obs;
  FakeClock clock;
  SteppedBackend backend(&clock);
  Batcher batcher(&backend, SteppedFixture::Make(0.2), &clock, &obs);
  Outcome long_out, short_out;
  ASSERT_TRUE(batcher.Submit(Single(1000, 1, &long_out)).ok());
  backend.on_step = [&](int i) {
    if (i == 2) ASSERT_TRUE(batcher.Submit(Single(10, 2, &short_out)).ok());
  };
  batcher.Step();
  ASSERT_EQ(obs.batches.size(), 2u);  // the nested one first
  EXPECT_EQ(obs.batches[0].longest_step, absl::ZeroDuration());  // not pausable: not stepped
  EXPECT_EQ(obs.batches[1].longest_step, absl::Milliseconds(100));  // nested time excluded
  EXPECT_EQ(obs.batches[1].preemptions, 1);
  EXPECT_EQ(obs.batches[1].paused_time, absl::Milliseconds(10));
  EXPECT_EQ(obs.batches[1].inference_time, absl::Seconds(1));
}

TEST(BatcherPreemption, NoPreemptionWithShareZero) {
  SteppedFixture f(0);
  Outcome long_out, short_out;
  ASSERT_TRUE(f.batcher.Submit(Single(1000, 1, &long_out)).ok());
  f.backend.on_step = [&](int i) {
    if (i == 0) ASSERT_TRUE(f.batcher.Submit(Single(10, 2, &short_out)).ok());
  };
  f.batcher.Step();
  EXPECT_THAT(f.backend.finished, ElementsAre(1000));
  EXPECT_EQ(short_out.calls, 0);
}

TEST(BatcherPreemption, OnlyMuchCheaperDocumentsRunFromACheckpoint) {
  SteppedFixture f;
  Outcome long_out, medium_out;
  ASSERT_TRUE(f.batcher.Submit(Single(1000, 1, &long_out)).ok());
  f.backend.on_step = [&](int i) {
    // 400 tokens cost more than 1/kPreemptCostRatio of the running 1000.
    if (i == 0) ASSERT_TRUE(f.batcher.Submit(Single(400, 2, &medium_out)).ok());
  };
  f.batcher.Step();
  EXPECT_THAT(f.backend.finished, ElementsAre(1000));
  EXPECT_EQ(medium_out.calls, 0);
  f.batcher.Step();
  EXPECT_EQ(medium_out.calls, 1);
}

TEST(BatcherPreemption, CancelledLongBatchStopsAtItsNextCheckpoint) {
  SteppedFixture f;
  Outcome out;
  Job job = Single(1000, 1, &out);
  job.cancelled = std::make_shared<std::atomic<bool>>(false);
  auto cancelled = job.cancelled;
  ASSERT_TRUE(f.batcher.Submit(std::move(job)).ok());
  f.backend.on_step = [&](int i) {
    if (i == 3) cancelled->store(true);
  };
  f.batcher.Step();
  EXPECT_EQ(f.backend.long_steps_run, 3);  // steps 0-2 ran; it stopped before step 3
  ASSERT_EQ(out.calls, 1);
  EXPECT_EQ(out.result->status().code(), absl::StatusCode::kCancelled);
}

TEST(BatcherPreemption, LongBatchPastItsDeadlineStops) {
  SteppedFixture f;
  Outcome out;
  Job job = Single(1000, 1, &out);
  job.deadline = f.clock.Now() + absl::Milliseconds(350);
  ASSERT_TRUE(f.batcher.Submit(std::move(job)).ok());
  f.batcher.Step();
  EXPECT_EQ(f.backend.long_steps_run, 4);
  ASSERT_EQ(out.calls, 1);
  EXPECT_EQ(out.result->status().code(), absl::StatusCode::kDeadlineExceeded);
}

TEST(BatcherPreemption, BatchGoesOnWhileOneOfItsJobsStillWaits) {
  SteppedFixture f;
  Outcome gone, waiting;
  Job a = MakeJob({Doc(1000, 1)}, &gone);
  a.cancelled = std::make_shared<std::atomic<bool>>(false);
  auto cancelled = a.cancelled;
  ASSERT_TRUE(f.batcher.Submit(std::move(a)).ok());
  ASSERT_TRUE(f.batcher.Submit(MakeJob({Doc(1000, 2)}, &waiting)).ok());
  f.backend.on_step = [&](int i) {
    if (i == 1) cancelled->store(true);
  };
  f.batcher.Step();  // one batch of both documents
  EXPECT_EQ(f.backend.long_steps_run, 10);
  ASSERT_EQ(waiting.calls, 1);
  EXPECT_TRUE(waiting.result->ok());
}

}  // namespace
}  // namespace longenc::batching
