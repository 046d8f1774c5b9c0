// The running gRPC server: longenc.v1.Encoder, the standard health service and reflection.
//
// Its header is free of gRPC and protobuf types on purpose: the wiring file (main.cc) also sees
// LibTorch's include path, whose bundled protobuf headers must never meet generated code.
//
// Lifecycle: Start() listens at once with health NOT_SERVING and every call UNAVAILABLE; Attach()
// hands over the loaded runtime and turns health SERVING; Drain() turns health NOT_SERVING, makes
// new calls UNAVAILABLE, lets the batcher finish all admitted work, waits kHealthGrace so that
// health-watching clients leave, then shuts the server down.
//
// Thread-safety: Attach() and Drain() may be called from any one thread; port() any time.
#ifndef LONGENC_SERVER_GRPC_SERVER_H_
#define LONGENC_SERVER_GRPC_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/runtime.h"
#include "server/security.h"
#include "server/service_observer.h"

namespace longenc::server {

class EncoderServer {
 public:
  struct Options {
    std::string host = "0.0.0.0";
    int port = 50051;  // 0 = pick a free port
    ServiceLimits limits;
    // TLS / mTLS and API keys (LoadServerSecurity); default: plain text, no authentication.
    ServerSecurity security;
  };

  // `observer` may be null and must outlive the server.
  static absl::StatusOr<std::unique_ptr<EncoderServer>> Start(const Options& options,
                                                              ServiceObserver* observer);
  ~EncoderServer();  // Drain(0) if not drained yet.
  EncoderServer(const EncoderServer&) = delete;
  EncoderServer& operator=(const EncoderServer&) = delete;

  int port() const;
  // "host:port" as bound.
  std::string address() const;
  // The service name reported by health besides "" (the whole server).
  static const char* ServiceName();

  void Attach(const Runtime& runtime);
  // `timeout` bounds how long open calls (e.g. idle streams) may stay after the queue emptied.
  // Shutdown starts no sooner than min(kHealthGrace, timeout) after health went NOT_SERVING.
  void Drain(absl::Duration timeout);
  // How long a client's health watch gets to learn NOT_SERVING and move its calls elsewhere.
  static constexpr absl::Duration kHealthGrace = absl::Seconds(1);

 private:
  struct Impl;
  explicit EncoderServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace longenc::server

#endif  // LONGENC_SERVER_GRPC_SERVER_H_
