#include "client/batch_embed.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <deque>
#include <memory>
#include <optional>
#include <random>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"

namespace longenc::client {
namespace {

using longenc::v1::Embedding;

std::string Lines(int64_t first, int64_t last) {
  return first == last ? absl::StrCat("line ", first) : absl::StrCat("lines ", first, "-", last);
}

absl::Status Annotate(const absl::Status& s, const std::string& where) {
  return absl::Status(s.code(), absl::StrCat(where, ": ", s.message()));
}

struct Batch {
  std::vector<InputDocument> documents;
  std::vector<absl::StatusOr<Embedding>> results;  // one per document, written by its thread
  absl::Status fatal;                               // why the run must stop (OK: it need not)
  int64_t calls = 0;
  int64_t retries = 0;
  bool done = false;  // guarded by Runner::mu_
};

class Runner {
 public:
  Runner(const longenc::v1::EmbedRequest& options, const EmbedCall& call,
         const BatchOptions& batch)
      : options_(options), call_(call), batch_(batch),
        max_documents_(std::max<int64_t>(1, batch.max_documents)),
        max_tokens_(std::max<int64_t>(1, batch.max_tokens)),
        rng_(batch.seed != 0 ? batch.seed
                             : static_cast<uint64_t>(absl::ToUnixNanos(absl::Now()))) {
    options_.clear_documents();
  }

  // Embeds `b` on the calling thread; marks it done.
  void Process(Batch* b) {
    b->results.assign(b->documents.size(), absl::UnknownError("not sent"));
    std::vector<size_t> to_send;
    for (size_t i = 0; i < b->documents.size(); ++i) {
      if (b->documents[i].input_error.ok()) {
        to_send.push_back(i);
      } else {
        b->results[i] = b->documents[i].input_error;
      }
    }
    if (!to_send.empty()) Send(b, to_send);
    absl::MutexLock lock(&mu_);
    b->done = true;
  }

  void WaitDone(Batch* b) {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&b->done));
  }

  void Stop() { stopping_ = true; }

  // The bounds of the batches still to form: those of BatchOptions until a batch exceeded its
  // deadline, then at most half of that batch.
  int64_t max_documents() const { return max_documents_; }
  int64_t max_tokens() const { return max_tokens_; }
  bool Stopping() const {
    return stopping_ || (batch_.interrupted != nullptr && batch_.interrupted->load());
  }

 private:
  // Sends the documents of `b` at `positions`; a rejection splits them until the offending
  // documents are alone.
  void Send(Batch* b, const std::vector<size_t>& positions) {
    const std::string where = Lines(b->documents[positions.front()].line,
                                    b->documents[positions.back()].line);
    if (Stopping()) {
      for (size_t p : positions) {
        b->results[p] = absl::AbortedError("not sent: the run stopped on an earlier error");
      }
      return;
    }
    absl::StatusOr<longenc::v1::EmbedResponse> r = Attempt(b, positions);
    if (r.ok()) {
      for (size_t k = 0; k < positions.size(); ++k) {
        b->results[positions[k]] = std::move(*r->mutable_embeddings(static_cast<int>(k)));
      }
      return;
    }
    const bool too_slow = r.status().code() == absl::StatusCode::kDeadlineExceeded;
    if (too_slow && positions.size() > 1) {
      // Too much for one deadline: halves get a deadline each, and later batches are cut at
      // the size of a half (a slow or loaded server stays slow).
      int64_t tokens = 0;
      for (size_t p : positions) tokens += b->documents[p].tokens;
      Shrink(static_cast<int64_t>(positions.size()) / 2, std::max<int64_t>(1, tokens / 2));
    }
    if ((IsDocumentRejection(r.status().code()) || too_slow) && positions.size() > 1) {
      const size_t half = positions.size() / 2;
      Send(b, std::vector<size_t>(positions.begin(), positions.begin() + half));
      Send(b, std::vector<size_t>(positions.begin() + half, positions.end()));
      return;
    }
    // The server names a rejected document "documents[i]"; a rejection that names none is
    // about the request (an unknown variant, an option out of range): every batch would get
    // it, so it stops the run below.
    if (IsDocumentRejection(r.status().code()) &&
        absl::StartsWith(r.status().message(), "documents[")) {
      b->results[positions.front()] = r.status();
      return;
    }
    for (size_t p : positions) b->results[p] = r.status();
    if (b->fatal.ok()) b->fatal = Annotate(r.status(), where);
    stopping_ = true;
  }

  // One call of the documents at `positions`, retried on UNAVAILABLE / RESOURCE_EXHAUSTED.
  absl::StatusOr<longenc::v1::EmbedResponse> Attempt(Batch* b,
                                                     const std::vector<size_t>& positions) {
    longenc::v1::EmbedRequest request = options_;
    for (size_t p : positions) *request.add_documents() = b->documents[p].document;
    if (positions.size() == 1 && !b->documents[positions.front()].spans.empty()) {
      longenc::v1::Chunking* chunking = request.mutable_chunking();
      for (const auto& [start, end] : b->documents[positions.front()].spans) {
        longenc::v1::Offset* o = chunking->add_spans();
        o->set_start(start);
        o->set_end(end);
      }
    }
    for (int attempt = 0;; ++attempt) {
      ++b->calls;
      CallOutcome outcome = call_(request);
      if (outcome.response.ok() &&
          outcome.response->embeddings_size() != static_cast<int>(positions.size())) {
        return absl::InternalError(absl::StrCat("the server returned ",
                                                outcome.response->embeddings_size(),
                                                " embeddings for ", positions.size(),
                                                " documents"));
      }
      if (outcome.response.ok() || !IsRetryable(outcome.response.status().code()) ||
          attempt >= batch_.retries || Stopping()) {
        if (!outcome.response.ok() && attempt > 0) {
          return absl::Status(outcome.response.status().code(),
                              absl::StrCat(outcome.response.status().message(), " (after ",
                                           attempt, attempt == 1 ? " retry)" : " retries)"));
        }
        return outcome.response;
      }
      ++b->retries;
      const absl::Duration wait = RetryDelay(batch_, attempt, outcome.retry_after, Unit());
      if (batch_.sleep) {
        batch_.sleep(wait);
        continue;
      }
      // In slices, so that an interruption does not wait out a long backoff.
      for (const absl::Time end = absl::Now() + wait; absl::Now() < end && !Stopping();) {
        absl::SleepFor(std::min(absl::Milliseconds(100), end - absl::Now()));
      }
    }
  }

  void Shrink(int64_t documents, int64_t tokens) {
    int64_t d = max_documents_.load();
    while (documents < d && !max_documents_.compare_exchange_weak(d, documents)) {
    }
    int64_t t = max_tokens_.load();
    while (tokens < t && !max_tokens_.compare_exchange_weak(t, tokens)) {
    }
  }

  double Unit() {
    absl::MutexLock lock(&mu_);
    return std::uniform_real_distribution<double>(0.0, 1.0)(rng_);
  }

  longenc::v1::EmbedRequest options_;
  const EmbedCall& call_;
  const BatchOptions& batch_;
  std::atomic<bool> stopping_{false};
  std::atomic<int64_t> max_documents_;
  std::atomic<int64_t> max_tokens_;
  absl::Mutex mu_;
  std::mt19937_64 rng_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

int64_t EstimateTokens(const std::string& text) {
  return static_cast<int64_t>(text.size()) / 3 + 2;
}

bool IsDocumentRejection(absl::StatusCode code) {
  return code == absl::StatusCode::kInvalidArgument || code == absl::StatusCode::kOutOfRange;
}

bool IsRetryable(absl::StatusCode code) {
  return code == absl::StatusCode::kUnavailable || code == absl::StatusCode::kResourceExhausted;
}

absl::Duration RetryDelay(const BatchOptions& options, int attempt, absl::Duration hint,
                          double unit) {
  absl::Duration d = options.backoff;
  for (int i = 0; i < attempt && d < options.max_backoff; ++i) d *= 2;
  d = std::min(d, options.max_backoff);
  const absl::Duration jittered = d / 2 + (d / 2) * std::clamp(unit, 0.0, 1.0);
  return std::max(jittered, hint);
}

BatchSummary EmbedInBatches(
    const std::function<bool(InputDocument*)>& next, const longenc::v1::EmbedRequest& options,
    const EmbedCall& call, const BatchOptions& batch,
    const std::function<absl::Status(const InputDocument&,
                                     const absl::StatusOr<Embedding>&)>& sink) {
  BatchSummary summary;
  Runner runner(options, call, batch);
  const size_t in_flight = static_cast<size_t>(std::max(1, batch.in_flight));
  std::optional<InputDocument> carry;  // read, but over the token bound of the last batch
  bool input_done = false;

  // The next batch of the input, or null at its end.
  auto form = [&]() -> std::unique_ptr<Batch> {
    auto b = std::make_unique<Batch>();
    int64_t tokens = 0;
    const int64_t max_documents = runner.max_documents();
    const int64_t max_tokens = runner.max_tokens();
    while (static_cast<int64_t>(b->documents.size()) < max_documents) {
      InputDocument d;
      if (carry.has_value()) {
        d = std::move(*carry);
        carry.reset();
      } else if (!next(&d)) {
        input_done = true;
        break;
      }
      // Spans address one text: such a document is a batch of its own.
      if (!b->documents.empty() && (!d.spans.empty() || !b->documents.back().spans.empty())) {
        carry = std::move(d);
        break;
      }
      if (d.input_error.ok() && tokens > 0 && tokens + d.tokens > max_tokens) {
        carry = std::move(d);
        break;
      }
      if (d.input_error.ok()) tokens += d.tokens;
      b->documents.push_back(std::move(d));
    }
    if (b->documents.empty()) return nullptr;
    return b;
  };

  std::deque<std::pair<std::unique_ptr<Batch>, std::thread>> pending;
  bool stopped = false;
  bool sink_failed = false;  // nothing more is handed to the sink
  // An interruption is the reason of the stop even when it made a batch give up its retries.
  auto check_interrupted = [&] {
    if (summary.stop.ok() && batch.interrupted != nullptr && batch.interrupted->load()) {
      summary.stop = absl::CancelledError("interrupted");
      stopped = true;
    }
  };
  while (true) {
    check_interrupted();
    while (!stopped && !input_done && pending.size() < in_flight) {
      std::unique_ptr<Batch> b = form();
      if (b == nullptr) break;
      Batch* raw = b.get();
      pending.emplace_back(std::move(b), std::thread([&runner, raw] { runner.Process(raw); }));
    }
    if (pending.empty()) break;
    Batch* b = pending.front().first.get();
    runner.WaitDone(b);
    pending.front().second.join();
    check_interrupted();
    summary.calls += b->calls;
    summary.retries += b->retries;
    if (!b->fatal.ok() && summary.stop.ok()) {
      summary.stop = b->fatal;
      stopped = true;
    }
    for (size_t i = 0; i < b->documents.size() && !sink_failed; ++i) {
      const absl::StatusOr<Embedding>& r = b->results[i];
      ++summary.documents;
      if (r.ok()) {
        ++summary.embedded;
        summary.tokens += r->num_tokens();
      } else {
        ++summary.failed;
        if (b->documents[i].input_error.ok()) ++summary.rejected;
      }
      if (absl::Status s = sink(b->documents[i], r); !s.ok()) {
        summary.stop = s;
        stopped = sink_failed = true;
        runner.Stop();
      }
    }
    pending.pop_front();
  }
  summary.max_documents = runner.max_documents();
  summary.max_tokens = runner.max_tokens();
  if (stopped) {
    InputDocument d;
    if (carry.has_value()) {
      summary.first_unsent_line = carry->line;
      summary.first_unsent_index = carry->index;
    } else if (!input_done && next(&d)) {
      summary.first_unsent_line = d.line;
      summary.first_unsent_index = d.index;
    }
  }
  return summary;
}

}  // namespace longenc::client
