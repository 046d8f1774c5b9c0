// Hooks through which the metrics layer watches the batcher, without the batcher knowing
// about Prometheus. Every method has an empty default so an observer overrides only what it
// records. Durations are absl::Duration; codes are absl::StatusCode (numerically equal to the
// gRPC codes).
//
// Thread-safety: methods are called from request threads (OnEnqueue, OnReject) and from the
// inference thread (everything else), concurrently; implementations must be thread-safe and
// cheap (they run on the critical path, never under the batcher's lock).
#ifndef LONGENC_SERVER_BATCHING_OBSERVER_H_
#define LONGENC_SERVER_BATCHING_OBSERVER_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "model/backend.h"

namespace longenc::batching {

// One backend call.
struct BatchStats {
  model::EncodeSettings settings;   // as sent to the backend ("" = backend default)
  int64_t documents = 0;
  int64_t tokens = 0;               // real tokens, special tokens included
  int64_t padded_tokens = 0;        // longest document x documents: the budget's measure
  std::vector<int64_t> document_tokens;       // per document
  std::vector<absl::Duration> queue_times;    // per document: admission -> batch start
  absl::Duration inference_time;    // the Embed() call, minus the batches run from its checkpoints
  absl::Duration paused_time;       // spent in batches run from its checkpoints (preemption)
  int64_t preemptions = 0;          // how many such batches ran
  absl::Duration longest_step;      // longest own compute between two checkpoints (or the ends)
  int64_t peak_memory_bytes = 0;    // BatchResult::peak_memory_bytes (0 = unknown)
  absl::StatusCode code = absl::StatusCode::kOk;
};

class BatchObserver {
 public:
  virtual ~BatchObserver() = default;
  // A job was admitted; `queue_documents` is the queue depth after admission.
  virtual void OnEnqueue(int64_t documents, int64_t tokens, int64_t queue_documents) {}
  // A job was refused at admission: kResourceExhausted (queue full), kUnavailable (draining),
  // kDeadlineExceeded (already expired).
  virtual void OnReject(absl::StatusCode code, int64_t documents) {}
  // Queued documents dropped before compute: kCancelled or kDeadlineExceeded.
  virtual void OnDrop(absl::StatusCode code, int64_t documents, int64_t queue_documents) {}
  // A batch left the queue and ran; `queue_documents` is the depth after it was taken.
  virtual void OnBatch(const BatchStats& stats, int64_t queue_documents) {}
};

}  // namespace longenc::batching

#endif  // LONGENC_SERVER_BATCHING_OBSERVER_H_
