// The wire format of the requests the service decodes itself (Embed, EmbedStream, Tokenize take
// raw bytes): proto3 refuses to parse a string field that is not UTF-8 and gRPC then answers an
// empty UNIMPLEMENTED; decoding here answers INVALID_ARGUMENT naming the field instead.
//
// Thread-safety: functions only; safe from any thread.
#ifndef LONGENC_SERVER_WIRE_FORMAT_H_
#define LONGENC_SERVER_WIRE_FORMAT_H_

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "google/protobuf/message.h"
#include "grpcpp/grpcpp.h"

namespace longenc::server {

// Decodes a request message; InvalidArgument naming the field when a string field is not UTF-8
// (e.g. "documents[1].text is not valid UTF-8") or the bytes are not a `message`.
absl::Status DecodeMessage(const grpc::ByteBuffer& buffer, google::protobuf::Message* message);

// The deadline of a call as absl::Time (InfiniteFuture when the client set none).
absl::Time CallDeadline(const grpc::CallbackServerContext& context);

}  // namespace longenc::server

#endif  // LONGENC_SERVER_WIRE_FORMAT_H_
