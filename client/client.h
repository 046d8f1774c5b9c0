// A small C++ client of longenc.v1.Encoder, used by the `longenc` CLI and the integration tests.
//
// Connects to one address, several ("10.0.0.1:50051,10.0.0.2:50051") or a DNS name whose
// records are spread with gRPC's round_robin policy. Every call carries the configured timeout
// as its deadline; errors come back as absl::Status with the server's code and message.
//
// Thread-safety: a Client may be used from many threads at once (gRPC stubs are thread-safe).
#ifndef LONGENC_CLIENT_CLIENT_H_
#define LONGENC_CLIENT_CLIENT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "longenc/v1/encoder.grpc.pb.h"

namespace longenc::client {

struct ConnectOptions {
  std::string servers = "127.0.0.1:50051";
  absl::Duration timeout = absl::Seconds(60);  // deadline of each call
  int64_t max_message_bytes = 64ll << 20;
  // TLS (docs/SECURITY.md). On when `tls` is set or any file is given; `tls_ca` = PEM file of
  // the CA that signed the server's certificate (empty: the system's roots); `tls_cert` +
  // `tls_key` = the client's certificate and key for mutual TLS; `tls_server_name` overrides the
  // name checked against the server certificate (default: the host of `servers`).
  bool tls = false;
  std::string tls_ca;
  std::string tls_cert;
  std::string tls_key;
  std::string tls_server_name;
  // Sent as "authorization: Bearer <api_key>" on every call when not empty.
  std::string api_key;
  // Watch each server's health (gRPC client-side health checking) and send no calls to one that
  // reports NOT_SERVING, e.g. a draining replica. Off for `longenc health`, which must reach it.
  bool skip_unhealthy = true;

  bool UsesTls() const { return tls || !tls_ca.empty() || !tls_cert.empty() || !tls_key.empty(); }
};

// The channel credentials of `options`: insecure, or TLS with the PEM files read (errors name
// the flag and the file).
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelCredentials(
    const ConnectOptions& options);

// The gRPC target for --server: "dns:///host:port" for one name (all its addresses, round
// robin), "ipv4:a:1,b:2" / "ipv6:[..]:1,..." for lists of literals; names in a list are
// resolved here. A value with a scheme ("dns:", "ipv4:", "unix:") is used as is.
absl::StatusOr<std::string> ChannelTarget(const std::string& servers);

// The absl::Status of a gRPC status (same code numbers); the message names the server.
absl::Status FromGrpc(const grpc::Status& status);

enum class Health { kServing, kNotServing, kUnknown };

class Client {
 public:
  static absl::StatusOr<std::unique_ptr<Client>> Connect(const ConnectOptions& options);

  // `retry_after` (may be null) gets the server's pushback hint on failure: the standard
  // grpc-retry-pushback-ms trailer, zero when absent.
  absl::StatusOr<longenc::v1::EmbedResponse> Embed(const longenc::v1::EmbedRequest& request,
                                                   absl::Duration* retry_after = nullptr);
  absl::StatusOr<longenc::v1::TokenizeResponse> Tokenize(const std::vector<std::string>& texts);
  absl::StatusOr<longenc::v1::GetInfoResponse> GetInfo();
  // grpc.health.v1 Check of `service` ("" = the whole server).
  absl::StatusOr<Health> CheckHealth(const std::string& service = "");

  // Embeds `documents` over one EmbedStream, `per_request` documents per message, with the
  // options of `options` (its documents are ignored). Embeddings in input order; `progress`
  // (may be empty) is called with (done, total) after each response.
  absl::StatusOr<std::vector<longenc::v1::Embedding>> EmbedMany(
      const std::vector<longenc::v1::Document>& documents,
      const longenc::v1::EmbedRequest& options, int per_request,
      const std::function<void(int64_t, int64_t)>& progress);

  longenc::v1::Encoder::Stub* stub() { return stub_.get(); }
  // A context with the configured deadline.
  std::unique_ptr<grpc::ClientContext> NewContext() const;
  absl::Duration timeout() const { return options_.timeout; }

 private:
  Client(const ConnectOptions& options, std::shared_ptr<grpc::Channel> channel);
  ConnectOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<longenc::v1::Encoder::Stub> stub_;
};

// True if `text` is valid UTF-8 (the API's string fields must be); else the offset of the
// first bad byte in `*bad_offset`.
bool IsValidUtf8(std::string_view text, size_t* bad_offset);

}  // namespace longenc::client

#endif  // LONGENC_CLIENT_CLIENT_H_
