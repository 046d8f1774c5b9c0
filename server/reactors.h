// The gRPC reactors of the service's calls: UnaryCall (Embed, Tokenize, GetInfo) reports its end
// to the observer exactly once; StreamCall runs EmbedStream (one response per message, in order,
// at most `stream_window` messages read ahead).
//
// Ownership: gRPC owns a reactor until OnDone, which deletes it. Thread-safety: reactions run on
// gRPC's threads, the WorkPool and the batcher's thread; each reactor locks its own state.
#ifndef LONGENC_SERVER_REACTORS_H_
#define LONGENC_SERVER_REACTORS_H_

#include <atomic>
#include <memory>
#include <string_view>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "server/service_observer.h"
#include "server/status_mapping.h"

namespace longenc::server {

class EncoderService;

// What a failed job's status says about why it never ran.
Rejection RejectionFor(absl::StatusCode code);
// Whether `code` is a refusal (overload, shutdown, deadline, cancellation) rather than an error.
bool IsRejection(absl::StatusCode code);
// An observer that records nothing.
ServiceObserver* NoopObserver();

// A unary call that reports its end to the observer exactly once.
class UnaryCall : public grpc::ServerUnaryReactor {
 public:
  UnaryCall(ServiceObserver* observer, std::string_view method,
            absl::Time deadline = absl::InfiniteFuture())
      : observer_(observer), method_(method), start_(absl::Now()), deadline_(deadline) {
    observer_->OnRequestStart(method_);
  }
  void Complete(const absl::Status& status) {
    observer_->OnRequestEnd(method_, status.code(), absl::Now() - start_);
    Finish(ToGrpcStatus(status));
  }
  // Counts the refusal (`why`) and completes the call with `status`.
  void Reject(Rejection why, const absl::Status& status) {
    observer_->OnReject(why);
    Complete(status);
  }
  // gRPC also cancels the call when its deadline passes. Such a call is left to the batcher's
  // deadline check, so it is dropped (and counted) as DEADLINE_EXCEEDED, not as cancelled by
  // the client; the margin covers gRPC's timer firing a little before absl::Now() reaches it.
  void OnCancel() override {
    if (absl::Now() + absl::Milliseconds(5) < deadline_) cancelled_->store(true);
  }
  void OnDone() override { delete this; }

  absl::Time start() const { return start_; }
  const std::shared_ptr<std::atomic<bool>>& cancelled() const { return cancelled_; }

 private:
  ServiceObserver* const observer_;
  const std::string_view method_;
  const absl::Time start_;
  const absl::Time deadline_;
  const std::shared_ptr<std::atomic<bool>> cancelled_ = std::make_shared<std::atomic<bool>>();
};

// EmbedStream's reactor; see StreamCall in reactors.cc.
grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* NewStreamCall(
    EncoderService* service, grpc::CallbackServerContext* context);

}  // namespace longenc::server

#endif  // LONGENC_SERVER_REACTORS_H_
