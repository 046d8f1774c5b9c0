// Hooks through which the metrics layer watches the RPC handlers (the batcher has its own,
// batching::BatchObserver). No gRPC, Prometheus or torch types: codes are absl::StatusCode
// (numerically equal to gRPC codes). Every method has an empty default.
//
// Thread-safety: called concurrently from gRPC callback threads and the inference thread;
// implementations must be thread-safe and cheap.
#ifndef LONGENC_SERVER_SERVICE_OBSERVER_H_
#define LONGENC_SERVER_SERVICE_OBSERVER_H_

#include <cstdint>
#include <string_view>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace longenc::server {

// Why a request was turned away before its documents were computed (the values match the
// `reason` label of longenc_rejected_requests_total, see server/metrics/).
enum class Rejection {
  kQueueFull,          // RESOURCE_EXHAUSTED at admission
  kTooManyDocuments,   // over --max_documents_per_request
  kDocumentTooLong,    // over --max_tokens_per_document, truncation not requested
  kInvalidArgument,    // any other validation failure
  kShuttingDown,       // draining or still loading: UNAVAILABLE
  kDeadlineExceeded,   // expired before or while queued
  kCancelled,          // cancelled by the caller while queued
};

class ServiceObserver {
 public:
  virtual ~ServiceObserver() = default;
  // One RPC ("Embed", "EmbedStream", "Tokenize", "GetInfo") began / ended with `code`.
  virtual void OnRequestStart(std::string_view method) {}
  virtual void OnRequestEnd(std::string_view method, absl::StatusCode code,
                            absl::Duration elapsed) {}
  // Tokenizing the texts of one Embed request (or one EmbedStream message).
  virtual void OnTokenization(absl::Duration elapsed) {}
  // One admitted document: tokens after truncation, and whether it was truncated.
  virtual void OnDocument(int64_t tokens, bool truncated) {}
  // The late chunks (EmbedRequest.chunking) of one admitted request, all documents together.
  virtual void OnChunks(int64_t chunks) {}
  // One request's documents waited this long in the queue (admission to last batch start).
  virtual void OnQueueTime(absl::Duration elapsed) {}
  // A request (or a stream message) refused before compute.
  virtual void OnReject(Rejection reason) {}
};

}  // namespace longenc::server

#endif  // LONGENC_SERVER_SERVICE_OBSERVER_H_
