// The one place where an absl::Status becomes a grpc::Status (docs/ARCHITECTURE.md, "Layers
// and boundaries").
// The canonical codes are numerically identical in absl and gRPC, so the code passes through
// unchanged; the message is kept, and an empty message gets the code's name so that a client
// never sees a bare code. Thread-safe (pure function).
#ifndef LONGENC_SERVER_STATUS_MAPPING_H_
#define LONGENC_SERVER_STATUS_MAPPING_H_

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace longenc::server {

grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace longenc::server

#endif  // LONGENC_SERVER_STATUS_MAPPING_H_
