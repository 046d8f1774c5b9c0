// The longenc.v1.Encoder gRPC service on the callback API.
//
// Handlers hand each call to a WorkPool (server/work_pool.h) that decodes (server/wire_format.h),
// validates and tokenizes (server/embed_request.h) and submits jobs to the batcher, so gRPC's
// callback threads stay free; they never run the model. The batcher's inference thread
// completes the calls through their reactors (server/reactors.h). EmbedStream reads at most
// `stream_window` requests ahead of the responses written (backpressure through HTTP/2 flow
// control instead of unbounded buffering).
//
// Lifecycle: the service is registered and the server listens before the model is loaded;
// until Attach() every call except health gets UNAVAILABLE ("model is loading"). After
// SetDraining() new calls (and new stream messages) get UNAVAILABLE while admitted work
// finishes.
//
// Ownership: the service does not own the Runtime it is attached to; the runtime must outlive
// the gRPC server. Thread-safety: all methods are thread-safe.
#ifndef LONGENC_SERVER_SERVICE_H_
#define LONGENC_SERVER_SERVICE_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "longenc/v1/encoder.grpc.pb.h"
#include "model/backend.h"
#include "model/tokenizer/wordpiece.h"
#include "server/batching/batcher.h"
#include "server/embed_request.h"
#include "server/runtime.h"
#include "server/service_observer.h"

namespace longenc::server {

class UnaryCall;
class WorkPool;

// Embed, EmbedStream and Tokenize take raw bytes, decoded by server/wire_format.h.
using EncoderServiceBase = longenc::v1::Encoder::WithRawCallbackMethod_Embed<
    longenc::v1::Encoder::WithRawCallbackMethod_EmbedStream<
        longenc::v1::Encoder::WithRawCallbackMethod_Tokenize<
            longenc::v1::Encoder::WithCallbackMethod_GetInfo<longenc::v1::Encoder::Service>>>>;

class EncoderService final : public EncoderServiceBase {
 public:
  // `observer` may be null; it must outlive the service.
  EncoderService(const ServiceLimits& limits, ServiceObserver* observer);
  ~EncoderService() override;

  void Attach(const Runtime& runtime);
  void SetDraining();
  bool draining() const { return draining_.load(); }

  grpc::ServerUnaryReactor* Embed(grpc::CallbackServerContext* context,
                                  const grpc::ByteBuffer* request,
                                  grpc::ByteBuffer* response) override;
  grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* EmbedStream(
      grpc::CallbackServerContext* context) override;
  grpc::ServerUnaryReactor* Tokenize(grpc::CallbackServerContext* context,
                                     const grpc::ByteBuffer* request,
                                     grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* GetInfo(grpc::CallbackServerContext* context,
                                    const longenc::v1::GetInfoRequest* request,
                                    longenc::v1::GetInfoResponse* response) override;

  // PrepareEmbed (server/embed_request.h) with this service's limits.
  absl::StatusOr<PreparedEmbed> Prepare(const longenc::v1::EmbedRequest& request,
                                        const Runtime& runtime, Rejection* rejection) const;

  // The runtime, or UNAVAILABLE while loading / draining.
  absl::StatusOr<Runtime> Acquire(Rejection* rejection) const;
  ServiceObserver* observer() const { return observer_; }
  const ServiceLimits& limits() const { return limits_; }
  // Where requests are decoded, validated and tokenized.
  WorkPool& pool() const { return *pool_; }

 private:
  // The bodies of Embed and Tokenize, run on the pool.
  void EmbedOnPool(UnaryCall* call, const grpc::ByteBuffer& raw_request,
                   grpc::ByteBuffer* raw_response, absl::Time deadline);
  void TokenizeOnPool(UnaryCall* call, const grpc::ByteBuffer& raw_request,
                      grpc::ByteBuffer* raw_response);

  const ServiceLimits limits_;
  ServiceObserver* const observer_;
  std::atomic<bool> attached_{false};
  std::atomic<bool> draining_{false};
  Runtime runtime_;  // written once before attached_ is set
  std::unique_ptr<WorkPool> pool_;  // last member: its tasks use the others until it is joined
};

}  // namespace longenc::server

#endif  // LONGENC_SERVER_SERVICE_H_
