// Checkpoints: the points between bounded steps of a forward pass (a head group of attention, a
// block of query rows, a block of feed-forward rows, a layer) where a long document may pause.
//
// The batcher installs a Checkpoint on its inference thread around Backend::Embed (with
// ScopedCheckpoint); the model calls AtCheckpoint() between steps. At a checkpoint the batcher
// may run short batches through the same backend (that is how a long document stops blocking
// short requests), or stop the pass: then AtCheckpoint() throws StepStopped and Embed returns
// its status (cancelled, deadline passed, shutting down). docs/ARCHITECTURE.md describes the
// policy that decides.
//
// Torch-free (absl only), so batching and the model share it. Thread-safety: the installed
// checkpoint is per thread; batches run from inside Reached() see none (no nesting).
#ifndef LONGENC_MODEL_CHECKPOINT_H_
#define LONGENC_MODEL_CHECKPOINT_H_

#include <exception>
#include <utility>

#include "absl/status/status.h"

namespace longenc::model {

class Checkpoint {
 public:
  virtual ~Checkpoint() = default;
  // Called on the inference thread between two steps of a forward pass. OK: go on. Anything
  // else stops the pass and becomes the result of the Embed call that reached it.
  virtual absl::Status Reached() = 0;
};

// Thrown by AtCheckpoint() through the model's loops; the backend turns it back into a status.
class StepStopped : public std::exception {
 public:
  explicit StepStopped(absl::Status status) : status_(std::move(status)) {}
  const absl::Status& status() const { return status_; }
  const char* what() const noexcept override { return "forward pass stopped at a checkpoint"; }

 private:
  absl::Status status_;
};

// The checkpoint installed on this thread, or null.
inline Checkpoint*& CurrentCheckpoint() {
  static thread_local Checkpoint* current = nullptr;
  return current;
}

// Installs `checkpoint` on this thread for the scope's lifetime (null: none).
class ScopedCheckpoint {
 public:
  explicit ScopedCheckpoint(Checkpoint* checkpoint) : saved_(CurrentCheckpoint()) {
    CurrentCheckpoint() = checkpoint;
  }
  ~ScopedCheckpoint() { CurrentCheckpoint() = saved_; }
  ScopedCheckpoint(const ScopedCheckpoint&) = delete;
  ScopedCheckpoint& operator=(const ScopedCheckpoint&) = delete;

 private:
  Checkpoint* const saved_;
};

// Called by the model between steps. Never call it inside a parallel region (it may throw).
inline void AtCheckpoint() {
  Checkpoint* checkpoint = CurrentCheckpoint();
  if (checkpoint == nullptr) return;
  absl::Status status;
  {
    ScopedCheckpoint none(nullptr);  // batches run from Reached() do not nest
    status = checkpoint->Reached();
  }
  if (!status.ok()) throw StepStopped(std::move(status));
}

}  // namespace longenc::model

#endif  // LONGENC_MODEL_CHECKPOINT_H_
