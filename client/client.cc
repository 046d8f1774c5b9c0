#include "client/client.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <thread>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace longenc::client {
namespace {

bool IsIpLiteral(const std::string& host, int family) {
  unsigned char buf[16];
  return inet_pton(family, host.c_str(), buf) == 1;
}

// Splits "host:port" / "[v6]:port".
absl::Status SplitHostPort(const std::string& address, std::string* host, std::string* port) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon + 1 == address.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--server: '", address, "' is not HOST:PORT"));
  }
  *host = address.substr(0, colon);
  *port = address.substr(colon + 1);
  if (host->size() >= 2 && host->front() == '[' && host->back() == ']') {
    *host = host->substr(1, host->size() - 2);
  }
  return absl::OkStatus();
}

constexpr char kRoundRobinConfig[] = R"({"loadBalancingConfig": [{"round_robin": {}}]})";
// A subchannel whose longenc.v1.Encoder health is not SERVING gets no calls.
constexpr char kWatchHealthConfig[] =
    R"({"loadBalancingConfig": [{"round_robin": {}}],
        "healthCheckConfig": {"serviceName": "longenc.v1.Encoder"}})";
}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelCredentials(
    const ConnectOptions& options) {
  if (!options.UsesTls()) {
    if (!options.tls_server_name.empty()) {
      return absl::InvalidArgumentError("--tls_server_name needs TLS (--tls or --tls_ca)");
    }
    return grpc::InsecureChannelCredentials();
  }
  if (options.tls_cert.empty() != options.tls_key.empty()) {
    return absl::InvalidArgumentError(
        "--tls_cert and --tls_key go together (the client certificate for mutual TLS and its "
        "key)");
  }
  grpc::SslCredentialsOptions ssl;
  const std::pair<const char*, std::string*> files[] = {{"tls_ca", &ssl.pem_root_certs},
                                                        {"tls_cert", &ssl.pem_cert_chain},
                                                        {"tls_key", &ssl.pem_private_key}};
  const std::string* paths[] = {&options.tls_ca, &options.tls_cert, &options.tls_key};
  for (int i = 0; i < 3; ++i) {
    if (paths[i]->empty()) continue;
    std::ifstream in(*paths[i], std::ios::binary);
    std::stringstream ss;
    if (in) ss << in.rdbuf();
    if (!in || ss.str().empty() || !absl::StrContains(ss.str(), "-----BEGIN ")) {
      return absl::InvalidArgumentError(absl::StrCat("--", files[i].first, "=", *paths[i],
                                                     ": cannot read a PEM file there"));
    }
    *files[i].second = ss.str();
  }
  return grpc::SslCredentials(ssl);
}

absl::StatusOr<std::string> ChannelTarget(const std::string& servers) {
  if (servers.empty()) return absl::InvalidArgumentError("--server is empty");
  if (absl::StartsWith(servers, "dns:") || absl::StartsWith(servers, "ipv4:") ||
      absl::StartsWith(servers, "ipv6:") || absl::StartsWith(servers, "unix:")) {
    return servers;
  }
  std::vector<std::string> parts = absl::StrSplit(servers, ',', absl::SkipEmpty());
  if (parts.size() == 1) return absl::StrCat("dns:///", parts[0]);
  // Several addresses: gRPC's ipv4:/ipv6: schemes take lists of literals; names are resolved.
  std::vector<std::string> v4, v6;
  for (const std::string& part : parts) {
    std::string host, port;
    if (absl::Status s = SplitHostPort(part, &host, &port); !s.ok()) return s;
    if (IsIpLiteral(host, AF_INET)) {
      v4.push_back(absl::StrCat(host, ":", port));
      continue;
    }
    if (IsIpLiteral(host, AF_INET6)) {
      v6.push_back(absl::StrCat("[", host, "]:", port));
      continue;
    }
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    if (getaddrinfo(host.c_str(), port.c_str(), &hints, &res) != 0 || res == nullptr) {
      return absl::UnavailableError(absl::StrCat("--server: cannot resolve '", host, "'"));
    }
    for (addrinfo* a = res; a != nullptr; a = a->ai_next) {
      char buf[INET6_ADDRSTRLEN];
      if (a->ai_family == AF_INET) {
        inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(a->ai_addr)->sin_addr, buf,
                  sizeof buf);
        v4.push_back(absl::StrCat(buf, ":", port));
      } else if (a->ai_family == AF_INET6) {
        inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(a->ai_addr)->sin6_addr, buf,
                  sizeof buf);
        v6.push_back(absl::StrCat("[", buf, "]:", port));
      }
    }
    freeaddrinfo(res);
  }
  if (!v4.empty() && !v6.empty()) {
    return absl::InvalidArgumentError("--server: mix of IPv4 and IPv6 addresses; use one family");
  }
  return v4.empty() ? absl::StrCat("ipv6:", absl::StrJoin(v6, ","))
                    : absl::StrCat("ipv4:", absl::StrJoin(v4, ","));
}

absl::Status FromGrpc(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      status.error_message());
}

bool IsValidUtf8(std::string_view s, size_t* bad_offset) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    int n = 0;
    uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c >> 5) == 0x6) {
      n = 1;
      cp = c & 0x1f;
    } else if ((c >> 4) == 0xe) {
      n = 2;
      cp = c & 0x0f;
    } else if ((c >> 3) == 0x1e) {
      n = 3;
      cp = c & 0x07;
    } else {
      *bad_offset = i;
      return false;
    }
    if (i + n >= s.size()) {  // truncated sequence
      *bad_offset = i;
      return false;
    }
    for (int k = 1; k <= n; ++k) {
      const unsigned char cc = static_cast<unsigned char>(s[i + k]);
      if ((cc >> 6) != 0x2) {
        *bad_offset = i;
        return false;
      }
      cp = (cp << 6) | (cc & 0x3f);
    }
    // Overlong forms, surrogates and values past U+10FFFF are invalid.
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
        (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff) {
      *bad_offset = i;
      return false;
    }
    i += n + 1;
  }
  return true;
}

Client::Client(const ConnectOptions& options, std::shared_ptr<grpc::Channel> channel)
    : options_(options),
      channel_(std::move(channel)),
      stub_(longenc::v1::Encoder::NewStub(channel_)) {}

absl::StatusOr<std::unique_ptr<Client>> Client::Connect(const ConnectOptions& options) {
  absl::StatusOr<std::string> target = ChannelTarget(options.servers);
  if (!target.ok()) return target.status();
  grpc::ChannelArguments args;
  args.SetServiceConfigJSON(options.skip_unhealthy ? kWatchHealthConfig : kRoundRobinConfig);
  args.SetMaxReceiveMessageSize(static_cast<int>(options.max_message_bytes));
  args.SetMaxSendMessageSize(static_cast<int>(options.max_message_bytes));
  if (!options.tls_server_name.empty()) {
    args.SetSslTargetNameOverride(options.tls_server_name);
  }
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
      ChannelCredentials(options);
  if (!credentials.ok()) return credentials.status();
  auto channel = grpc::CreateCustomChannel(*target, *credentials, args);
  return std::unique_ptr<Client>(new Client(options, std::move(channel)));
}

std::unique_ptr<grpc::ClientContext> Client::NewContext() const {
  auto ctx = std::make_unique<grpc::ClientContext>();
  if (options_.timeout > absl::ZeroDuration() && options_.timeout != absl::InfiniteDuration()) {
    ctx->set_deadline(absl::ToChronoTime(absl::Now() + options_.timeout));
  }
  // Per call rather than as call credentials: gRPC refuses call credentials on plain-text
  // channels, and keys must also work behind a TLS-terminating proxy.
  if (!options_.api_key.empty()) ctx->AddMetadata("authorization", "Bearer " + options_.api_key);
  return ctx;
}

absl::StatusOr<longenc::v1::EmbedResponse> Client::Embed(
    const longenc::v1::EmbedRequest& request, absl::Duration* retry_after) {
  auto ctx = NewContext();
  longenc::v1::EmbedResponse response;
  absl::Status s = FromGrpc(stub_->Embed(ctx.get(), request, &response));
  if (retry_after != nullptr) {
    *retry_after = absl::ZeroDuration();
    const auto& trailers = ctx->GetServerTrailingMetadata();
    auto it = trailers.find("grpc-retry-pushback-ms");
    int64_t ms = 0;
    if (!s.ok() && it != trailers.end() &&
        absl::SimpleAtoi(absl::string_view(it->second.data(), it->second.size()), &ms) &&
        ms >= 0) {
      *retry_after = absl::Milliseconds(ms);
    }
  }
  if (!s.ok()) return s;
  return response;
}

absl::StatusOr<longenc::v1::TokenizeResponse> Client::Tokenize(
    const std::vector<std::string>& texts) {
  auto ctx = NewContext();
  longenc::v1::TokenizeRequest request;
  for (const std::string& t : texts) request.add_texts(t);
  longenc::v1::TokenizeResponse response;
  absl::Status s = FromGrpc(stub_->Tokenize(ctx.get(), request, &response));
  if (!s.ok()) return s;
  return response;
}

absl::StatusOr<longenc::v1::GetInfoResponse> Client::GetInfo() {
  auto ctx = NewContext();
  longenc::v1::GetInfoResponse response;
  absl::Status s =
      FromGrpc(stub_->GetInfo(ctx.get(), longenc::v1::GetInfoRequest(), &response));
  if (!s.ok()) return s;
  return response;
}

absl::StatusOr<Health> Client::CheckHealth(const std::string& service) {
  auto health = grpc::health::v1::Health::NewStub(channel_);
  auto ctx = NewContext();
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  grpc::health::v1::HealthCheckResponse response;
  absl::Status s = FromGrpc(health->Check(ctx.get(), request, &response));
  if (!s.ok()) return s;
  switch (response.status()) {
    case grpc::health::v1::HealthCheckResponse::SERVING:
      return Health::kServing;
    case grpc::health::v1::HealthCheckResponse::NOT_SERVING:
      return Health::kNotServing;
    default:
      return Health::kUnknown;
  }
}

absl::StatusOr<std::vector<longenc::v1::Embedding>> Client::EmbedMany(
    const std::vector<longenc::v1::Document>& documents, const longenc::v1::EmbedRequest& options,
    int per_request, const std::function<void(int64_t, int64_t)>& progress) {
  if (per_request < 1) return absl::InvalidArgumentError("documents per request must be >= 1");
  std::vector<longenc::v1::Embedding> out;
  out.reserve(documents.size());
  if (documents.empty()) return out;
  auto ctx = NewContext();
  auto stream = stub_->EmbedStream(ctx.get());
  const int64_t total = static_cast<int64_t>(documents.size());
  // The writer runs ahead on its own thread; the server's window bounds how far.
  std::thread writer([&] {
    for (int64_t begin = 0; begin < total; begin += per_request) {
      longenc::v1::EmbedRequest request = options;
      request.clear_documents();
      request.set_request_id(std::to_string(begin));
      const int64_t end = std::min<int64_t>(total, begin + per_request);
      for (int64_t i = begin; i < end; ++i) *request.add_documents() = documents[i];
      if (!stream->Write(request)) break;  // the stream failed; Finish() says why
    }
    stream->WritesDone();
  });
  longenc::v1::EmbedResponse response;
  while (stream->Read(&response)) {
    for (auto& e : *response.mutable_embeddings()) out.push_back(std::move(e));
    if (progress) progress(static_cast<int64_t>(out.size()), total);
  }
  writer.join();
  absl::Status s = FromGrpc(stream->Finish());
  if (!s.ok()) return s;
  if (static_cast<int64_t>(out.size()) != total) {
    return absl::InternalError(absl::StrCat("stream returned ", out.size(), " embeddings for ",
                                            total, " documents"));
  }
  return out;
}

}  // namespace longenc::client
