// A real longenc-server child process for the integration tests: started on 127.0.0.1 with
// --port=0 and the real model, its stderr kept in a file, its /metrics port read from that
// stderr, and a connected client once health reports SERVING.
//
// Ownership: the object owns the child; the destructor SIGKILLs it if it still runs (Stop()
// is the graceful end). Thread-safety: client() may be used from many threads; the rest is for
// the test's main thread.
#ifndef LONGENC_TESTS_INTEGRATION_SERVER_PROCESS_H_
#define LONGENC_TESTS_INTEGRATION_SERVER_PROCESS_H_

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/client.h"

namespace longenc::integration {

// $LONGENC_BUILD_DIR (default "build") and $LONGENC_MODEL_DIR (default: the embedded model).
std::string BuildDir();
std::string ModelDir();

class ServerProcess {
 public:
  // `extra` flags are appended to the defaults (and so override them).
  explicit ServerProcess(std::vector<std::string> extra = {});
  ~ServerProcess();
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  bool serving() const { return serving_; }
  const std::string& address() const { return address_; }
  client::Client& client() { return *client_; }
  pid_t pid() const { return pid_; }

  void Signal(int sig);
  // Waits for exit; the exit code, or -signal when a signal ended it.
  int Wait();
  // SIGTERM, then Wait().
  int Stop();
  // Whether the process still runs (reaps it if it ended).
  bool Running();

  // Everything the server wrote on stderr so far.
  std::string Stderr() const;
  // The text of GET /metrics.
  absl::StatusOr<std::string> Metrics() const;
  // Sum of the samples of `name` whose labels include every pair of `labels` (0 if none).
  absl::StatusOr<double> Metric(const std::string& name,
                                const std::map<std::string, std::string>& labels = {}) const;
  // Polls Metric() until `pred` holds or `timeout` passes; the last value seen.
  template <typename Pred>
  double WaitForMetric(const std::string& name, const std::map<std::string, std::string>& labels,
                       Pred pred, absl::Duration timeout = absl::Seconds(60)) const {
    const absl::Time deadline = absl::Now() + timeout;
    double value = -1;
    while (true) {
      absl::StatusOr<double> v = Metric(name, labels);
      if (v.ok()) value = *v;
      if ((v.ok() && pred(value)) || absl::Now() > deadline) return value;
      absl::SleepFor(absl::Milliseconds(20));
    }
  }

 private:
  std::string dir_;
  pid_t pid_ = -1;
  int exit_status_ = 0;
  std::string address_;
  int metrics_port_ = 0;
  bool serving_ = false;
  std::unique_ptr<client::Client> client_;
};

}  // namespace longenc::integration

#endif  // LONGENC_TESTS_INTEGRATION_SERVER_PROCESS_H_
