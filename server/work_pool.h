// A fixed pool of threads that run queued tasks in order of arrival: request decoding,
// validation and tokenization run here, so gRPC's callback threads (health checks, small
// calls) never wait behind a large message.
//
// Thread-safety: Schedule() is thread-safe. The destructor runs every queued task, then joins.
#ifndef LONGENC_SERVER_WORK_POOL_H_
#define LONGENC_SERVER_WORK_POOL_H_

#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace longenc::server {

class WorkPool {
 public:
  explicit WorkPool(int threads);
  ~WorkPool();
  WorkPool(const WorkPool&) = delete;
  WorkPool& operator=(const WorkPool&) = delete;

  void Schedule(std::function<void()> task);

 private:
  void Run();

  absl::Mutex mu_;
  std::deque<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace longenc::server

#endif  // LONGENC_SERVER_WORK_POOL_H_
