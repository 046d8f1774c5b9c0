#include "server/grpc_server.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "server/security.h"
#include "server/service.h"

namespace longenc::server {

struct EncoderServer::Impl {
  Impl(const Options& o, ServiceObserver* observer) : options(o), service(o.limits, observer) {}
  Options options;
  EncoderService service;
  std::unique_ptr<grpc::Server> server;
  int port = 0;
  Runtime runtime;
  bool drained = false;

  void SetServing(bool serving) {
    grpc::HealthCheckServiceInterface* health = server->GetHealthCheckService();
    if (health == nullptr) return;
    health->SetServingStatus(serving);  // "" and every registered service
    health->SetServingStatus(EncoderServer::ServiceName(), serving);
  }
};

const char* EncoderServer::ServiceName() { return "longenc.v1.Encoder"; }

EncoderServer::EncoderServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

EncoderServer::~EncoderServer() { Drain(absl::ZeroDuration()); }

absl::StatusOr<std::unique_ptr<EncoderServer>> EncoderServer::Start(const Options& options,
                                                                   ServiceObserver* observer) {
  auto impl = std::make_unique<Impl>(options, observer);
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  const std::string address = absl::StrCat(options.host, ":", options.port);
  builder.AddListeningPort(address, MakeServerCredentials(options.security, observer),
                           &impl->port);
  builder.SetMaxReceiveMessageSize(static_cast<int>(options.limits.max_message_bytes));
  builder.SetMaxSendMessageSize(static_cast<int>(options.limits.max_message_bytes));
  builder.RegisterService(&impl->service);
  impl->server = builder.BuildAndStart();
  if (impl->server == nullptr || impl->port == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", address,
                                               " (--host/--port): in use or not an address"));
  }
  impl->SetServing(false);
  return std::unique_ptr<EncoderServer>(new EncoderServer(std::move(impl)));
}

int EncoderServer::port() const { return impl_->port; }

std::string EncoderServer::address() const {
  return absl::StrCat(impl_->options.host, ":", impl_->port);
}

void EncoderServer::Attach(const Runtime& runtime) {
  impl_->runtime = runtime;
  impl_->service.Attach(runtime);
  impl_->SetServing(true);
}

void EncoderServer::Drain(absl::Duration timeout) {
  if (impl_ == nullptr || impl_->drained) return;
  impl_->drained = true;
  const absl::Time not_serving_since = absl::Now();
  impl_->SetServing(false);
  impl_->service.SetDraining();
  // Admitted work finishes (and completes its calls) before the server stops, within the
  // grace; after it the running document stops at its next checkpoint and the rest fails.
  if (impl_->runtime.batcher != nullptr) impl_->runtime.batcher->Drain(timeout);
  // gRPC's Shutdown() cancels (CANCELLED, not safely retryable) every call that reaches the
  // server between its start and the client reading the GOAWAY. Clients that watch health
  // (healthCheckConfig) stop picking this server once NOT_SERVING reaches them, so give them
  // that long; calls arriving meanwhile get UNAVAILABLE "server is draining", safe to retry.
  absl::SleepFor(std::min(kHealthGrace, timeout) - (absl::Now() - not_serving_since));
  impl_->server->Shutdown(absl::ToChronoTime(absl::Now() + timeout));
  impl_->server->Wait();
}

}  // namespace longenc::server
