#include "server/reactors.h"

#include <deque>
#include <memory>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "server/embed_request.h"
#include "server/service.h"
#include "server/status_mapping.h"
#include "server/wire_format.h"
#include "server/work_pool.h"

namespace longenc::server {

using longenc::v1::EmbedRequest;
using longenc::v1::EmbedResponse;

ServiceObserver* NoopObserver() {
  static ServiceObserver* const kNoop = new ServiceObserver();
  return kNoop;
}

// What a failed job's status says about why it never ran.
Rejection RejectionFor(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kResourceExhausted:
      return Rejection::kQueueFull;
    case absl::StatusCode::kUnavailable:
      return Rejection::kShuttingDown;
    case absl::StatusCode::kDeadlineExceeded:
      return Rejection::kDeadlineExceeded;
    case absl::StatusCode::kCancelled:
      return Rejection::kCancelled;
    default:
      return Rejection::kInvalidArgument;
  }
}

bool IsRejection(absl::StatusCode code) {
  return code == absl::StatusCode::kResourceExhausted || code == absl::StatusCode::kUnavailable ||
         code == absl::StatusCode::kDeadlineExceeded || code == absl::StatusCode::kCancelled;
}

namespace {

// EmbedStream: one response per request, in order. The reactor decides what to do under its
// lock and calls into gRPC after releasing it, so a reaction that runs inline cannot deadlock.
class StreamCall : public grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  StreamCall(EncoderService* service, grpc::CallbackServerContext* context)
      : service_(service),
        observer_(service->observer() ? service->observer() : NoopObserver()),
        deadline_(CallDeadline(*context)),
        start_(absl::Now()) {
    observer_->OnRequestStart("EmbedStream");
    reading_ = true;
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      Actions a;
      {
        absl::MutexLock lock(&mu_);
        reading_ = false;
        reads_done_ = true;
        a = DecideLocked();
      }
      Act(a);
      return;
    }
    // Reads are serialized: the next read starts only once this message is prepared. A
    // message that arrives after the stream failed (it was already pipelined) is dropped: the
    // reactor may finish at any time then, and nothing may capture it any more.
    bool dropped = false;
    Actions a;
    {
      absl::MutexLock lock(&mu_);
      dropped = !status_.ok() || finished_;
      if (dropped) {
        reading_ = false;
        a = DecideLocked();
      } else {
        preparing_ = true;
      }
    }
    if (dropped) {
      Act(a);
      return;
    }
    auto raw = std::make_shared<grpc::ByteBuffer>();
    raw->Swap(&request_);
    service_->pool().Schedule([this, raw] { PrepareAndSubmit(*raw); });
  }

  // On a WorkPool thread: decode, validate, tokenize and submit one message.
  void PrepareAndSubmit(const grpc::ByteBuffer& raw) {
    EmbedRequest request;
    Rejection why = Rejection::kInvalidArgument;
    absl::StatusOr<PreparedEmbed> prepared = absl::UnknownError("not prepared");
    absl::StatusOr<Runtime> runtime = service_->Acquire(&why);
    absl::Status decoded = DecodeMessage(raw, &request);
    const std::string request_id = request.request_id();
    if (runtime.ok() && decoded.ok()) prepared = service_->Prepare(request, *runtime, &why);
    absl::Status status =
        !runtime.ok() ? runtime.status() : !decoded.ok() ? decoded : prepared.status();
    auto slot = std::make_shared<Slot>();
    bool submit = false;
    if (status.ok()) {
      observer_->OnTokenization(prepared->tokenization_time);
      slot->prepared = std::move(*prepared);
      absl::MutexLock lock(&mu_);
      // The stream may have failed (cancelled) while this message was prepared.
      if (status_.ok()) {
        slots_.push_back(slot);
        ++inflight_;  // from here the reactor cannot finish before the job's callback
        submit = true;
      }
    }
    if (submit) {
      batching::Job job = std::move(slot->prepared.job);
      job.deadline = deadline_;
      job.cancelled = cancelled_;
      job.done = [this, slot](absl::StatusOr<batching::JobResult> result) {
        OnJobDone(slot, std::move(result));
      };
      status = runtime->batcher->Submit(std::move(job));
      if (status.ok()) {
        for (size_t i = 0; i < slot->prepared.num_tokens.size(); ++i) {
          observer_->OnDocument(slot->prepared.num_tokens[i], slot->prepared.truncated[i]);
        }
        if (slot->prepared.num_chunks > 0) observer_->OnChunks(slot->prepared.num_chunks);
      } else {
        absl::MutexLock lock(&mu_);
        --inflight_;
        slots_.pop_back();
      }
    }
    Actions a;
    {
      absl::MutexLock lock(&mu_);
      reading_ = false;
      preparing_ = false;
      if (!status.ok()) {
        observer_->OnReject(IsRejection(status.code()) ? RejectionFor(status.code()) : why);
        const std::string label =
            request_id.empty() ? "" : absl::StrCat(" (request_id \"", request_id, "\")");
        FailLocked(absl::Status(status.code(), absl::StrCat("EmbedStream message ", next_index_,
                                                            label, ": ", status.message())));
      }
      ++next_index_;
      a = DecideLocked();
    }
    Act(a);
  }

  void OnWriteDone(bool ok) override {
    Actions a;
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      slots_.pop_front();
      if (!ok) FailLocked(absl::CancelledError("client stopped reading the stream"));
      a = DecideLocked();
    }
    Act(a);
  }

  void OnCancel() override {
    cancelled_->store(true);
    Actions a;
    {
      absl::MutexLock lock(&mu_);
      FailLocked(absl::CancelledError("stream cancelled by the client"));
      a = DecideLocked();
    }
    Act(a);
  }

  void OnDone() override { delete this; }

 private:
  struct Slot {
    PreparedEmbed prepared;
    grpc::ByteBuffer response;
    bool ready = false;
  };
  struct Actions {
    bool read = false;
    grpc::ByteBuffer* write = nullptr;
    bool finish = false;
    absl::Status status;
  };

  void OnJobDone(const std::shared_ptr<Slot>& slot, absl::StatusOr<batching::JobResult> result) {
    if (result.ok()) {
      observer_->OnQueueTime(result->queue_time);
      EmbedResponse response;
      FillEmbedResponse(slot->prepared, *result, absl::Now() - start_, &response);
      bool own = false;
      (void)grpc::SerializationTraits<EmbedResponse>::Serialize(response, &slot->response, &own);
    } else if (IsRejection(result.status().code())) {
      observer_->OnReject(RejectionFor(result.status().code()));
    }
    Actions a;
    {
      absl::MutexLock lock(&mu_);
      --inflight_;
      slot->ready = true;
      if (!result.ok()) FailLocked(result.status());
      a = DecideLocked();
    }
    Act(a);
  }

  void FailLocked(absl::Status status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!status_.ok()) return;  // the first error wins
    status_ = std::move(status);
    cancelled_->store(true);    // queued messages of this stream need not run any more
  }

  Actions DecideLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Actions a;
    if (finished_) return a;
    if (status_.ok()) {
      if (!writing_ && !slots_.empty() && slots_.front()->ready) {
        writing_ = true;
        a.write = &slots_.front()->response;
      }
      if (!reading_ && !reads_done_ &&
          static_cast<int64_t>(slots_.size()) < service_->limits().stream_window) {
        reading_ = true;
        a.read = true;
      }
      if (reads_done_ && slots_.empty() && !writing_ && a.write == nullptr) {
        finished_ = a.finish = true;
        a.status = absl::OkStatus();
      }
    } else if (inflight_ == 0 && !writing_ && !preparing_) {
      // The callbacks of in-flight jobs and a message being prepared point at this reactor:
      // finish only once they are back.
      finished_ = a.finish = true;
      a.status = status_;
    }
    return a;
  }

  void Act(const Actions& a) {
    if (a.write != nullptr) StartWrite(a.write);
    if (a.read) StartRead(&request_);
    if (a.finish) {
      observer_->OnRequestEnd("EmbedStream", a.status.code(), absl::Now() - start_);
      Finish(ToGrpcStatus(a.status));
    }
  }

  EncoderService* const service_;
  ServiceObserver* const observer_;
  const absl::Time deadline_;
  const absl::Time start_;
  const std::shared_ptr<std::atomic<bool>> cancelled_ = std::make_shared<std::atomic<bool>>();
  grpc::ByteBuffer request_;
  int64_t next_index_ = 0;  // index of the message in request_ (reads are serialized)

  absl::Mutex mu_;
  std::deque<std::shared_ptr<Slot>> slots_ ABSL_GUARDED_BY(mu_);  // read, not yet written
  int64_t inflight_ ABSL_GUARDED_BY(mu_) = 0;                     // submitted, not yet done
  bool reading_ ABSL_GUARDED_BY(mu_) = false;    // a read is outstanding or being prepared
  bool preparing_ ABSL_GUARDED_BY(mu_) = false;  // a WorkPool task holds this reactor
  bool reads_done_ ABSL_GUARDED_BY(mu_) = false;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status status_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* NewStreamCall(
    EncoderService* service, grpc::CallbackServerContext* context) {
  return new StreamCall(service, context);
}

}  // namespace longenc::server
