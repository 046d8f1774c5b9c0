#include "server/status_mapping.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace longenc::server {

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  const int code = static_cast<int>(status.code());
  // absl has no code outside gRPC's 1..16; anything else would be a bug, reported as UNKNOWN
  // rather than an invalid wire code.
  const grpc::StatusCode grpc_code =
      (code >= 1 && code <= 16) ? static_cast<grpc::StatusCode>(code) : grpc::StatusCode::UNKNOWN;
  std::string message(status.message());
  if (message.empty()) message = absl::StatusCodeToString(status.code());
  return grpc::Status(grpc_code, message);
}

}  // namespace longenc::server
