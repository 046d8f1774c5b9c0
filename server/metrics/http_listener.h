// A minimal HTTP/1.0 listener that answers GET <path> with a body rendered on demand: the
// /metrics endpoint.
//
// Why not prometheus-cpp's Exposer: its civetweb starts threads with a fixed 100 KiB stack,
// and in a process that loads LibTorch the static TLS alone is larger, so pthread_create
// fails with EINVAL and the exposer cannot start. Our thread gets the default stack.
//
// One thread accepts and answers connections one at a time (scrapes are rare and small).
// Thread-safety: `render` is called from the listener thread.
#ifndef LONGENC_SERVER_METRICS_HTTP_LISTENER_H_
#define LONGENC_SERVER_METRICS_HTTP_LISTENER_H_

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"

namespace longenc::metrics {

class HttpListener {
 public:
  // Binds host:port (port 0 = any free port) and starts answering. Unavailable when the
  // address cannot be bound.
  static absl::StatusOr<std::unique_ptr<HttpListener>> Start(const std::string& host, int port,
                                                            std::string path,
                                                            std::function<std::string()> render);
  ~HttpListener();  // stops accepting and joins the thread (within ~100 ms)
  HttpListener(const HttpListener&) = delete;
  HttpListener& operator=(const HttpListener&) = delete;

  int port() const { return port_; }

 private:
  HttpListener(int fd, int port, std::string path, std::function<std::string()> render);
  void Serve();
  void Answer(int client);

  const int fd_;
  const int port_;
  const std::string path_;
  const std::function<std::string()> render_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace longenc::metrics

#endif  // LONGENC_SERVER_METRICS_HTTP_LISTENER_H_
