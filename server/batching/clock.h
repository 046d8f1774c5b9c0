// Time source of the batcher. Injected so that unit tests drive delays and deadlines with a
// fake clock instead of sleeping.
//
// Thread-safety: Now() may be called from any thread.
#ifndef LONGENC_SERVER_BATCHING_CLOCK_H_
#define LONGENC_SERVER_BATCHING_CLOCK_H_

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace longenc::batching {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;

  // The process-wide wall clock (absl::Now); never destroyed.
  static const Clock* Real();
};

}  // namespace longenc::batching

#endif  // LONGENC_SERVER_BATCHING_CLOCK_H_
