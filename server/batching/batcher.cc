#include "server/batching/batcher.h"

#include <algorithm>
#include <cstdlib>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "model/checkpoint.h"

namespace longenc::batching {
namespace {

class RealClock : public Clock {
 public:
  absl::Time Now() const override { return absl::Now(); }
};

}  // namespace

const Clock* Clock::Real() {
  static const RealClock* const kClock = new RealClock();
  return kClock;
}

// Mutated only by the thread that runs Step() once the job is admitted.
struct Batcher::JobState {
  Job job;
  absl::Time enqueued;
  int64_t documents = 0;
  int64_t remaining = 0;
  bool finished = false;
  int64_t last_batch = -1;
  JobResult result;
};

// The checkpoint of a running batch (model/checkpoint.h): the batcher's policy decides there.
class Batcher::Pause final : public model::Checkpoint {
 public:
  Pause(Batcher* batcher, const std::vector<Item>& items, double cost, absl::Time start)
      : batcher(batcher), items(items), cost(cost), start(start), last_step_end(start) {}
  absl::Status Reached() override { return batcher->OnCheckpoint(*this); }

  Batcher* const batcher;
  const std::vector<Item>& items;
  const double cost;               // of the paused batch's documents
  const absl::Time start;
  absl::Duration nested_time;      // spent in batches run from its checkpoints
  int64_t nested_batches = 0;
  absl::Time last_step_end;        // the previous checkpoint (or the start), after its batches
  absl::Duration longest_step;     // longest own compute between two checkpoints
  void EndStep(absl::Time now) {
    longest_step = std::max(longest_step, now - last_step_end);
  }
};

Batcher::Batcher(model::Backend* backend, const BatcherOptions& options, const Clock* clock,
                 BatchObserver* observer)
    : backend_(backend), options_(options), clock_(clock), observer_(observer) {}

Batcher::~Batcher() { Drain(); }

absl::Status Batcher::Submit(Job job) {
  const int64_t n = static_cast<int64_t>(job.documents.size());
  if (n == 0 || !job.done) {
    return absl::InvalidArgumentError("batcher: a job needs documents and a callback");
  }
  if (!job.chunks.empty() && static_cast<int64_t>(job.chunks.size()) != n) {
    return absl::InvalidArgumentError("batcher: a job's chunks need one list per document");
  }
  int64_t tokens = 0;
  double cost = 0, costliest = 0;
  std::vector<double> costs;
  costs.reserve(job.documents.size());
  for (const auto& d : job.documents) {
    tokens += static_cast<int64_t>(d.size());
    costs.push_back(backend_->Cost(job.settings, static_cast<int64_t>(d.size())));
    cost += costs.back();
    costliest = std::max(costliest, costs.back());
  }
  const absl::Time now = clock_->Now();
  absl::Status refusal;
  int64_t depth = 0;
  {
    absl::MutexLock lock(&mu_);
    const double left = absl::ToDoubleSeconds(job.deadline - now);
    const bool timed = job.deadline != absl::InfiniteFuture() && cost_per_second_ > 0;
    double ahead = 0;  // cost that runs before this job: documents no costlier than its own
    if (timed) {
      for (const Item& item : queue_) ahead += item.cost <= costliest ? item.cost : 0;
    }
    if (draining_) {
      refusal = absl::UnavailableError("server is draining (shutting down); retry elsewhere");
    } else if (job.deadline <= now) {
      refusal = absl::DeadlineExceededError("deadline expired before the request was queued");
    } else if (timed && cost / cost_per_second_ > left) {
      refusal = absl::DeadlineExceededError(absl::StrFormat(
          "deadline too short for this request: it needs about %.3f s of compute even on an "
          "idle server and its deadline leaves %.3f s; raise the deadline or send fewer or "
          "shorter documents",
          cost / cost_per_second_, left));
    } else if (queued_ + n > options_.max_queue_documents) {
      refusal = absl::ResourceExhaustedError(absl::StrCat(
          "queue full: ", queued_, " documents queued, request has ", n, ", limit ",
          options_.max_queue_documents, " (--max_queue); retry with backoff"));
    } else if (timed && ahead > 0 && (ahead + cost) / cost_per_second_ > left) {
      refusal = absl::ResourceExhaustedError(absl::StrFormat(
          "server overloaded: expected wait %.1f s exceeds the call's remaining deadline %.1f s "
          "(work queued ahead of it: about %.1f s); retry later or elsewhere",
          (ahead + cost) / cost_per_second_, left, ahead / cost_per_second_));
    } else {
      auto state = std::make_shared<JobState>();
      state->enqueued = now;
      state->documents = n;
      state->remaining = n;
      std::vector<std::vector<int32_t>> docs = std::move(job.documents);
      std::vector<std::vector<model::TokenRange>> chunks = std::move(job.chunks);
      chunks.resize(static_cast<size_t>(n));
      state->job = std::move(job);
      for (int64_t i = 0; i < n; ++i) {
        queue_.push_back(Item{state, i, std::move(docs[i]), std::move(chunks[i]), costs[i]});
      }
      queued_ += n;
      queued_cost_ += cost;
      depth = queued_;
      ++generation_;
      cv_.Signal();
    }
  }
  if (!refusal.ok()) {
    if (observer_ != nullptr) observer_->OnReject(refusal.code(), n);
    return refusal;
  }
  if (observer_ != nullptr) observer_->OnEnqueue(n, tokens, depth);
  return absl::OkStatus();
}

void Batcher::DropDead(absl::Time now, std::vector<Failure>* failures) {
  std::deque<Item> kept;
  for (Item& item : queue_) {
    JobState& state = *item.job;
    if (!state.finished) {
      if (aborting_) {
        state.finished = true;
        failures->push_back({item.job, absl::UnavailableError(
                                           "server shut down before the request ran "
                                           "(--shutdown_timeout passed); retry elsewhere")});
      } else if (state.job.cancelled != nullptr && state.job.cancelled->load()) {
        state.finished = true;
        failures->push_back({item.job, absl::CancelledError("request cancelled by the client")});
      } else if (state.job.deadline <= now) {
        state.finished = true;
        failures->push_back({item.job, absl::DeadlineExceededError(
                                           "deadline expired while the request was queued")});
      }
    }
    if (state.finished) {
      --queued_;
      queued_cost_ -= item.cost;
      continue;
    }
    kept.push_back(std::move(item));
  }
  queue_.swap(kept);
}

Batcher::Plan Batcher::MakePlan(absl::Time now, double max_cost) const {
  Plan plan;
  size_t head_index = 0;
  while (head_index < queue_.size() && queue_[head_index].cost > max_cost) ++head_index;
  if (head_index == queue_.size()) return plan;
  const Item& head = queue_[head_index];
  const int64_t budget = options_.max_batch_tokens;
  const int64_t head_len = static_cast<int64_t>(head.ids.size());
  bool full = false;
  if (head_len >= budget) {
    plan.items = {head_index};
    full = true;
  } else {
    // Same-settings documents that fit the budget, sorted by length (then arrival).
    std::vector<size_t> cand;
    const model::EncodeSettings& settings = head.job->job.settings;
    for (size_t i = 0; i < queue_.size(); ++i) {
      if (static_cast<int64_t>(queue_[i].ids.size()) <= budget && queue_[i].cost <= max_cost &&
          queue_[i].job->job.settings == settings) {
        cand.push_back(i);
      }
    }
    std::stable_sort(cand.begin(), cand.end(), [this](size_t a, size_t b) {
      return queue_[a].ids.size() < queue_[b].ids.size();
    });
    const size_t p = std::find(cand.begin(), cand.end(), head_index) - cand.begin();
    // Grow a window [lo, hi] of the sorted candidates around the head, each time taking the
    // neighbour that adds the least padding: a shorter one pads itself up to the longest, a
    // longer one pads every member up to itself.
    size_t lo = p, hi = p;
    int64_t longest = head_len;
    int64_t count = 1;
    while (true) {
      const bool can_lo = lo > 0;
      const bool can_hi = hi + 1 < cand.size();
      if (!can_lo && !can_hi) break;
      int64_t waste_lo = -1, waste_hi = -1;
      if (can_lo && longest * (count + 1) <= budget) {
        waste_lo = longest - static_cast<int64_t>(queue_[cand[lo - 1]].ids.size());
      }
      if (can_hi) {
        const int64_t len = static_cast<int64_t>(queue_[cand[hi + 1]].ids.size());
        if (len * (count + 1) <= budget) waste_hi = (len - longest) * count;
      }
      if (waste_lo < 0 && waste_hi < 0) {
        full = true;  // candidates remain but none fits
        break;
      }
      if (waste_hi < 0 || (waste_lo >= 0 && waste_lo <= waste_hi)) {
        --lo;
      } else {
        ++hi;
        longest = static_cast<int64_t>(queue_[cand[hi]].ids.size());
      }
      ++count;
    }
    if (longest * (count + 1) > budget) full = true;
    plan.items.assign(cand.begin() + lo, cand.begin() + hi + 1);
  }
  const absl::Time due = head.job->enqueued + options_.max_batch_delay;
  plan.ready = full || draining_ || now >= due;
  if (!plan.ready) plan.wake_at = due;
  return plan;
}

void Batcher::TakeBatch(double max_cost, std::vector<Failure>* failures,
                        std::vector<Item>* batch, int64_t* depth_after_drop, int64_t* depth,
                        absl::Time* wake_at) {
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_->Now();
  DropDead(now, failures);
  *depth_after_drop = queued_;
  Plan plan;
  if (!queue_.empty()) plan = MakePlan(now, max_cost);
  // Each round fails at least one job, so this ends.
  while (!plan.items.empty() && plan.ready && FailDoomed(plan, now, failures)) {
    DropDead(now, failures);
    *depth_after_drop = queued_;
    plan = queue_.empty() ? Plan() : MakePlan(now, max_cost);
  }
  if (!plan.items.empty()) {
    if (plan.ready) {
      std::sort(plan.items.begin(), plan.items.end());
      batch->reserve(plan.items.size());
      for (size_t i : plan.items) batch->push_back(std::move(queue_[i]));
      // Erase the taken items, keeping arrival order of the rest.
      size_t next = 0;
      std::deque<Item> rest;
      for (size_t i = 0; i < queue_.size(); ++i) {
        if (next < plan.items.size() && plan.items[next] == i) {
          ++next;
          continue;
        }
        rest.push_back(std::move(queue_[i]));
      }
      queue_.swap(rest);
      queued_ -= static_cast<int64_t>(batch->size());
      for (const Item& item : *batch) queued_cost_ -= item.cost;
    } else {
      *wake_at = plan.wake_at;
    }
  }
  *depth = queued_;
}

void Batcher::Fail(std::vector<Failure>& failures, int64_t depth_after_drop) {
  for (Failure& f : failures) {
    if (observer_ != nullptr) {
      observer_->OnDrop(f.status.code(), f.job->remaining, depth_after_drop);
    }
    f.job->job.done(std::move(f.status));
    f.job->job.done = nullptr;  // release captured state now
  }
}

Batcher::StepResult Batcher::Step() {
  StepResult out;
  std::vector<Failure> failures;
  std::vector<Item> batch;
  int64_t depth_after_drop = 0, depth = 0;
  TakeBatch(std::numeric_limits<double>::infinity(), &failures, &batch, &depth_after_drop, &depth,
            &out.wake_at);
  Fail(failures, depth_after_drop);
  out.ran = !failures.empty();
  if (!batch.empty()) {
    RunBatch(std::move(batch), depth, /*pausable=*/true);
    out.ran = true;
  }
  return out;
}

absl::Status Batcher::OnCheckpoint(Pause& pause) {
  pause.EndStep(clock_->Now());
  struct NextStep {  // the next step starts when this checkpoint returns
    Pause& pause;
    const Clock* clock;
    ~NextStep() { pause.last_step_end = clock->Now(); }
  } next_step{pause, clock_};
  {
    absl::MutexLock lock(&mu_);
    if (aborting_) {
      return absl::UnavailableError(
          "server shut down before this request finished (--shutdown_timeout passed); retry "
          "elsewhere");
    }
  }
  // Stop when nobody waits for any document of the batch any more.
  const absl::Time now = clock_->Now();
  absl::Status why = absl::CancelledError("request cancelled by the client");
  bool waited_for = false;
  for (const Item& item : pause.items) {
    const JobState& state = *item.job;
    if (state.finished) continue;
    if (state.job.cancelled != nullptr && state.job.cancelled->load()) continue;
    if (state.job.deadline <= now) {
      why = absl::DeadlineExceededError("deadline passed while the request was computed; "
                                        "stopped at a checkpoint");
      continue;
    }
    waited_for = true;
  }
  if (!waited_for) return why;
  if (options_.preempt_share <= 0) return absl::OkStatus();
  // Shorter batches run from here while their time stays within the share of the paused
  // batch's own compute.
  const double max_cost = pause.cost / kPreemptCostRatio;
  while (true) {
    const absl::Duration own = (clock_->Now() - pause.start) - pause.nested_time;
    if (pause.nested_time > own * options_.preempt_share) break;
    std::vector<Failure> failures;
    std::vector<Item> batch;
    int64_t depth_after_drop = 0, depth = 0;
    absl::Time wake_at;
    TakeBatch(max_cost, &failures, &batch, &depth_after_drop, &depth, &wake_at);
    Fail(failures, depth_after_drop);
    if (batch.empty()) break;
    const absl::Time t0 = clock_->Now();
    RunBatch(std::move(batch), depth, /*pausable=*/false);
    pause.nested_time += clock_->Now() - t0;
    ++pause.nested_batches;
  }
  return absl::OkStatus();
}

void Batcher::RunBatch(std::vector<Item> items, int64_t queue_after, bool pausable) {
  const int64_t seq = batch_seq_++;
  model::Batch batch;
  batch.settings = items.front().job->job.settings;
  BatchStats stats;
  stats.settings = batch.settings;
  int64_t longest = 0;
  double cost = 0, costliest = 0;
  for (const Item& item : items) {
    cost += item.cost;
    costliest = std::max(costliest, item.cost);
    const JobState& s = *item.job;
    batch.Add(item.ids, s.job.pooling, s.job.normalize, item.chunks);
    const int64_t len = static_cast<int64_t>(item.ids.size());
    stats.document_tokens.push_back(len);
    stats.tokens += len;
    longest = std::max(longest, len);
  }
  stats.documents = batch.size();
  stats.padded_tokens = longest * stats.documents;

  const absl::Time start = clock_->Now();
  Pause pause(this, items, cost, start);
  absl::StatusOr<model::BatchResult> result;
  {
    model::ScopedCheckpoint checkpoint(pausable ? &pause : nullptr);
    result = backend_->Embed(batch);
  }
  const absl::Time end = clock_->Now();
  if (pausable && pause.last_step_end > start) pause.EndStep(end);  // the last step, if stepped
  if (result.ok() && (result->dim <= 0 || static_cast<int64_t>(result->embeddings.size()) !=
                                              result->dim * batch.size())) {
    result = absl::InternalError(absl::StrCat("backend returned ", result->embeddings.size(),
                                              " floats for ", batch.size(),
                                              " documents of dim ", result->dim));
  }
  if (result.ok() && static_cast<int64_t>(result->chunk_embeddings.size()) !=
                         result->dim * batch.num_chunks()) {
    result = absl::InternalError(absl::StrCat("backend returned ",
                                              result->chunk_embeddings.size(), " floats for ",
                                              batch.num_chunks(), " chunks of dim ", result->dim));
  }
  // Time spent in batches run from this one's checkpoints is theirs, not its own.
  stats.inference_time = end - start - pause.nested_time;
  stats.paused_time = pause.nested_time;
  stats.preemptions = pause.nested_batches;
  stats.longest_step = pause.longest_step;
  if (result.ok()) {
    RecordThroughput(costliest * static_cast<double>(stats.documents), stats.inference_time);
  }
  stats.code = result.status().code();
  if (result.ok()) stats.peak_memory_bytes = result->peak_memory_bytes;
  for (const Item& item : items) stats.queue_times.push_back(start - item.job->enqueued);
  if (observer_ != nullptr) observer_->OnBatch(stats, queue_after);

  for (size_t r = 0; r < items.size(); ++r) {
    JobState& s = *items[r].job;
    if (s.finished) continue;  // an earlier row of this batch already failed the job
    if (!result.ok()) {
      s.finished = true;
      // A batch stopped at a checkpoint because nobody waited: each job says why it ended.
      absl::Status status = result.status();
      if (s.job.cancelled != nullptr && s.job.cancelled->load()) {
        status = absl::CancelledError("request cancelled by the client");
      } else if (s.job.deadline <= end) {
        status = absl::DeadlineExceededError("deadline passed while the request was computed");
      }
      s.job.done(std::move(status));
      s.job.done = nullptr;
      continue;
    }
    JobResult& out = s.result;
    if (out.embeddings.empty()) {
      out.dim = result->dim;
      out.embeddings.resize(static_cast<size_t>(s.documents * out.dim));
    }
    std::copy_n(result->embeddings.begin() + r * result->dim, result->dim,
                out.embeddings.begin() + items[r].index * out.dim);
    if (!items[r].chunks.empty()) {
      out.chunk_embeddings.resize(static_cast<size_t>(s.documents));
      const auto first = result->chunk_embeddings.begin() + batch.chunk_offsets[r] * result->dim;
      out.chunk_embeddings[items[r].index].assign(
          first, first + static_cast<int64_t>(items[r].chunks.size()) * result->dim);
    }
    out.queue_time = std::max(out.queue_time, start - s.enqueued);
    if (s.last_batch != seq) {
      s.last_batch = seq;
      out.inference_time += stats.inference_time;
      ++out.batches;
    }
    if (--s.remaining == 0) {
      s.finished = true;
      s.job.done(std::move(out));
      s.job.done = nullptr;
    }
  }
}

bool Batcher::FailDoomed(const Plan& plan, absl::Time now, std::vector<Failure>* failures) {
  if (cost_per_second_ <= 0) return false;
  // A batch of one job runs even if it looks too slow: running is also how a too pessimistic
  // estimate recovers (no batch, no new measurement).
  bool one_job = true;
  double costliest = 0;
  for (size_t i : plan.items) {
    costliest = std::max(costliest, queue_[i].cost);
    one_job = one_job && queue_[i].job == queue_[plan.items.front()].job;
  }
  if (one_job) return false;
  const double seconds =
      costliest * static_cast<double>(plan.items.size()) / cost_per_second_;
  const absl::Time end = now + absl::Seconds(seconds);
  bool any = false;
  for (size_t i : plan.items) {
    JobState& state = *queue_[i].job;
    if (state.finished || state.job.deadline >= end) continue;
    state.finished = true;
    any = true;
    failures->push_back({queue_[i].job, absl::DeadlineExceededError(absl::StrFormat(
                                            "deadline would pass during compute: %.1f s left, "
                                            "the batch needs about %.1f s; dropped before compute",
                                            absl::ToDoubleSeconds(state.job.deadline - now),
                                            seconds))});
  }
  return any;
}

void Batcher::RecordThroughput(double padded_cost, absl::Duration took) {
  // A batch timed as zero (a coarse or fake clock) says nothing about the rate.
  if (padded_cost <= 0 || took <= absl::ZeroDuration()) return;
  const double rate = padded_cost / absl::ToDoubleSeconds(took);
  absl::MutexLock lock(&mu_);
  cost_per_second_ = cost_per_second_ <= 0
                         ? rate
                         : kThroughputAlpha * rate + (1 - kThroughputAlpha) * cost_per_second_;
}

double Batcher::cost_per_second() const {
  absl::MutexLock lock(&mu_);
  return cost_per_second_;
}

void Batcher::Start() {
  absl::MutexLock lock(&mu_);
  if (thread_.joinable() || draining_) return;
  thread_ = std::thread([this] { Loop(); });
}

void Batcher::Loop() {
  while (true) {
    uint64_t seen;
    {
      absl::MutexLock lock(&mu_);
      seen = generation_;
    }
    const StepResult r = Step();
    if (r.ran) continue;
    absl::MutexLock lock(&mu_);
    if (draining_ && queue_.empty()) {
      stopped_ = true;
      return;
    }
    if (generation_ != seen) continue;  // work arrived while Step() ran
    cv_.WaitWithDeadline(&mu_, r.wake_at);
  }
}

void Batcher::Drain(absl::Duration grace) {
  {
    absl::MutexLock lock(&mu_);
    draining_ = true;
    ++generation_;
    cv_.SignalAll();
  }
  if (!thread_.joinable() || thread_.get_id() == std::this_thread::get_id()) return;
  {
    absl::MutexLock lock(&mu_);
    if (!mu_.AwaitWithTimeout(absl::Condition(&stopped_), grace)) {
      aborting_ = true;  // the running batch stops at its next checkpoint, the queue fails
      ++generation_;
      cv_.SignalAll();
    }
  }
  thread_.join();
}

int64_t Batcher::queued_documents() const {
  absl::MutexLock lock(&mu_);
  return queued_;
}

bool Batcher::draining() const {
  absl::MutexLock lock(&mu_);
  return draining_;
}

}  // namespace longenc::batching
