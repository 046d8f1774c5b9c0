// The batcher: the one owner of the model. Request handlers Submit() jobs (the documents of
// one request, already tokenized and validated); a single inference thread cuts batches and
// calls Backend::Embed, then fans the rows out to each job's callback.
//
// Policy:
//  - Cost: every document has a cost, Backend::Cost (tokens through the linear layers, plus
//    the quadratic term of exact attention), so a 16k-token exact document weighs what it
//    really takes. The batcher keeps an EWMA of its compute rate in cost units per second.
//  - Admission: the queue holds at most max_queue_documents documents; a job that does not fit
//    is refused at once with RESOURCE_EXHAUSTED (never buffered). While draining, UNAVAILABLE.
//  - Deadline-aware admission: a job whose own compute (its cost / rate) exceeds the time left
//    to its deadline is refused with DEADLINE_EXCEEDED (no server could meet it: retrying
//    elsewhere does not help). A job whose expected wait (the cost queued ahead of it, i.e. of
//    documents no costlier than its own, which run first or preempt, plus its own, over the
//    rate) exceeds the time left is refused with RESOURCE_EXHAUSTED: a queue longer than
//    capacity x deadline would otherwise make every admitted job wait until its deadline is
//    gone. Before the first batch there is no estimate and only the queue limit applies. The
//    batch computing at the time is not counted (its remaining time is not known).
//  - A batch holds documents with equal EncodeSettings, always includes the oldest queued
//    document (no starvation) and adds the queued documents whose lengths are closest to it
//    while the padded cost (longest x count) stays within max_batch_tokens; a document longer
//    than the budget runs alone.
//  - The batch starts when it is full, or when the oldest document has waited max_batch_delay,
//    or at once while draining.
//  - Jobs cancelled or past their deadline are failed (CANCELLED / DEADLINE_EXCEEDED) and
//    their documents removed before any compute; so is a job whose time left is shorter than
//    the estimated compute time of the batch it would join (it would finish too late anyway);
//    the batch is then planned again without it; a batch of one job's documents always runs.
//    A failed batch fails every job in it.
//  - Preemption: a running batch pauses at the model's checkpoints (model/checkpoint.h: between
//    head groups, row blocks and layers, each a bounded step). At each, batches of documents
//    costing at most 1/kPreemptCostRatio of the running batch run to the end, nested, while
//    the time they took stays within preempt_share of the paused batch's own compute time: short
//    requests wait one step, not a whole long document, and the long one is slowed by at most
//    that share (aging: it always finishes). Nested batches do not pause.
//  - Stopping: at a checkpoint a running batch whose jobs are all cancelled or past their
//    deadline stops (its jobs fail CANCELLED / DEADLINE_EXCEEDED), so does every batch once a
//    drain's grace has passed (UNAVAILABLE, queued jobs too).
//
// Threading: Submit() is thread-safe. Start() runs Step() on an owned inference thread
// (real-time waits); unit tests instead call Step() themselves with a fake clock. Each job's
// callback runs exactly once, on the thread that runs Step() (or in Submit() never: refusals
// are returned, not called back), outside the batcher's lock.
#ifndef LONGENC_SERVER_BATCHING_BATCHER_H_
#define LONGENC_SERVER_BATCHING_BATCHER_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "model/backend.h"
#include "server/batching/clock.h"
#include "server/batching/observer.h"

namespace longenc::batching {

struct BatcherOptions {
  int64_t max_batch_tokens = 16384;      // padded tokens per batch
  absl::Duration max_batch_delay = absl::Milliseconds(2);
  int64_t max_queue_documents = 1024;
  // Share of a paused batch's own compute time that batches run from its checkpoints may take;
  // 0 turns preemption off.
  double preempt_share = 0.2;
};

struct JobResult {
  int64_t dim = 0;
  std::vector<float> embeddings;         // documents x dim, in job order
  // Per document, its Job::chunks' vectors (chunks x dim), in job order.
  std::vector<std::vector<float>> chunk_embeddings;
  absl::Duration queue_time;             // admission -> start of the last batch that held a doc
  absl::Duration inference_time;         // sum over the distinct batches that held its docs
  int64_t batches = 0;
};

// The documents of one request. Every document is non-empty, within the backend's limits and
// already carries its special tokens.
struct Job {
  model::EncodeSettings settings;
  model::Pooling pooling = model::Pooling::kMean;
  bool normalize = true;
  std::vector<std::vector<int32_t>> documents;
  // Optional late chunks per document (empty, or one list per document; model/chunking.h).
  std::vector<std::vector<model::TokenRange>> chunks;
  absl::Time deadline = absl::InfiniteFuture();
  // Optional; the caller sets it when its RPC is cancelled.
  std::shared_ptr<std::atomic<bool>> cancelled;
  // Called once with the embeddings or the first error.
  std::function<void(absl::StatusOr<JobResult>)> done;
};

class Batcher {
 public:
  // `backend`, `clock` and `observer` (may be null) must outlive the batcher.
  Batcher(model::Backend* backend, const BatcherOptions& options, const Clock* clock,
          BatchObserver* observer);
  ~Batcher();  // Drain()s if the thread runs.
  Batcher(const Batcher&) = delete;
  Batcher& operator=(const Batcher&) = delete;

  // Admits the job or refuses it at once: InvalidArgument (no documents, no callback),
  // ResourceExhausted (queue full, or expected wait longer than the time left to the deadline),
  // Unavailable (draining), DeadlineExceeded (expired).
  // On refusal the callback is not called.
  absl::Status Submit(Job job);

  struct StepResult {
    bool ran = false;                          // a batch ran (or jobs were dropped)
    absl::Time wake_at = absl::InfiniteFuture();  // when the head's delay ends
  };
  // Drops dead jobs, then runs one batch if one is due at clock->Now().
  StepResult Step();

  // Starts the inference thread (real clock waits).
  void Start();
  // Refuses new jobs (UNAVAILABLE) and lets admitted ones finish for up to `grace`; then stops
  // the running batch at its next checkpoint and fails what is left with UNAVAILABLE. Stops the
  // thread. Idempotent.
  void Drain(absl::Duration grace = absl::InfiniteDuration());

  int64_t queued_documents() const;
  bool draining() const;
  // The throughput estimate in cost units (Backend::Cost) per second; 0 before the first
  // timed batch.
  double cost_per_second() const;

  // Weight of the newest batch in the throughput EWMA.
  static constexpr double kThroughputAlpha = 0.3;
  // A document may run from a batch's checkpoint if it costs at most 1/this of that batch.
  static constexpr double kPreemptCostRatio = 4;

 private:
  struct JobState;
  class Pause;
  struct Item {
    std::shared_ptr<JobState> job;
    int64_t index = 0;           // document index within the job
    std::vector<int32_t> ids;
    std::vector<model::TokenRange> chunks;
    double cost = 0;             // Backend::Cost of this document
  };
  struct Failure {
    std::shared_ptr<JobState> job;
    absl::Status status;
  };

  // Indices into queue_ of the next batch; `ready` false means wait until `wake_at`.
  struct Plan {
    std::vector<size_t> items;
    bool ready = false;
    absl::Time wake_at = absl::InfiniteFuture();
  };

  void DropDead(absl::Time now, std::vector<Failure>* failures) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Marks finished (with a failure) every job of `plan` whose deadline falls before the plan's
  // estimated end; returns whether it marked any (then DropDead removes them).
  bool FailDoomed(const Plan& plan, absl::Time now, std::vector<Failure>* failures)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RecordThroughput(double padded_cost, absl::Duration took);
  // The next batch among documents costing at most `max_cost`, headed by the oldest of them.
  Plan MakePlan(absl::Time now, double max_cost) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Drops dead jobs and takes the next due batch of documents costing at most `max_cost` out
  // of the queue into `batch` (empty: none due; then `wake_at` says when one is).
  void TakeBatch(double max_cost, std::vector<Failure>* failures, std::vector<Item>* batch,
                 int64_t* depth_after_drop, int64_t* depth, absl::Time* wake_at)
      ABSL_LOCKS_EXCLUDED(mu_);
  void Fail(std::vector<Failure>& failures, int64_t depth_after_drop);
  // Runs one batch; `pausable`: it may pause at checkpoints for shorter batches.
  void RunBatch(std::vector<Item> items, int64_t queue_after, bool pausable);
  // The checkpoint policy (see Preemption above); non-OK stops the paused batch.
  absl::Status OnCheckpoint(Pause& pause);
  void Loop();

  model::Backend* const backend_;
  const BatcherOptions options_;
  const Clock* const clock_;
  BatchObserver* const observer_;

  mutable absl::Mutex mu_;
  absl::CondVar cv_;
  std::deque<Item> queue_ ABSL_GUARDED_BY(mu_);  // arrival order
  int64_t queued_ ABSL_GUARDED_BY(mu_) = 0;
  double queued_cost_ ABSL_GUARDED_BY(mu_) = 0;
  double cost_per_second_ ABSL_GUARDED_BY(mu_) = 0;  // 0 = no estimate yet
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;  // bumped by Submit/Drain to wake the loop
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  bool aborting_ ABSL_GUARDED_BY(mu_) = false;  // the drain's grace has passed
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;   // the inference thread has returned
  int64_t batch_seq_ = 0;  // inference thread only
  std::thread thread_;
};

}  // namespace longenc::batching

#endif  // LONGENC_SERVER_BATCHING_BATCHER_H_
