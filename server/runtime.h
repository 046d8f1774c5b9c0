// Plain types shared by the gRPC service and the server's wiring: the service's limits and the
// loaded runtime. No gRPC or protobuf headers, so the wiring (which also sees LibTorch's
// include path) can use them: torch ships its own protobuf headers (docs/ARCHITECTURE.md,
// "Layers and boundaries").
#ifndef LONGENC_SERVER_RUNTIME_H_
#define LONGENC_SERVER_RUNTIME_H_

#include <cstdint>

#include "absl/time/time.h"
#include "model/backend.h"
#include "model/tokenizer/tokenizer.h"
#include "server/batching/batcher.h"

namespace longenc::server {

struct ServiceLimits {
  int64_t max_documents_per_request = 256;
  int64_t max_tokens_per_document = 131072;
  int64_t max_message_bytes = 64ll << 20;
  int64_t max_batch_tokens = 16384;
  int64_t max_queue_documents = 1024;
  absl::Duration max_batch_delay = absl::Milliseconds(2);
  int64_t stream_window = 16;
  int64_t prepare_threads = 4;  // WorkPool threads that decode, validate and tokenize
};

// What the handlers need once the model is loaded; all three outlive the gRPC server.
struct Runtime {
  model::Backend* backend = nullptr;
  const tokenizer::Tokenizer* tokenizer = nullptr;
  batching::Batcher* batcher = nullptr;
};

}  // namespace longenc::server

#endif  // LONGENC_SERVER_RUNTIME_H_
