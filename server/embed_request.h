// An EmbedRequest checked and turned into a batching::Job (the error table of docs/API.md), and
// a finished job turned into an EmbedResponse.
//
// Thread-safety: functions only; safe from any thread (the runtime's parts are thread-safe).
#ifndef LONGENC_SERVER_EMBED_REQUEST_H_
#define LONGENC_SERVER_EMBED_REQUEST_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "longenc/v1/encoder.pb.h"
#include "server/batching/batcher.h"
#include "server/runtime.h"
#include "server/service_observer.h"

namespace longenc::server {

// Most late chunks (EmbedRequest.chunking) one request may ask for, over all its documents:
// keeps a response well within the default message limit (4096 x 1024 floats is 16 MiB).
inline constexpr int64_t kMaxChunksPerRequest = 4096;

// A validated, tokenized request: the job to submit and what the response echoes.
struct PreparedEmbed {
  batching::Job job;
  std::vector<std::string> ids;
  std::vector<int32_t> num_tokens;
  std::vector<bool> truncated;
  // Per document, each chunk's tokens and UTF-8 byte range in the text ((0, 0) for token-id
  // documents); empty without chunking. job.chunks holds the same token ranges.
  struct ChunkSpan {
    model::TokenRange tokens;
    std::pair<int32_t, int32_t> bytes;
  };
  std::vector<std::vector<ChunkSpan>> chunks;
  int64_t num_chunks = 0;  // over all documents
  std::string request_id;
  std::string attention;
  std::string position_mode;
  absl::Duration tokenization_time;
};

// Validation + tokenization of one EmbedRequest. On error, `*rejection` says why (for metrics).
absl::StatusOr<PreparedEmbed> PrepareEmbed(const longenc::v1::EmbedRequest& request,
                                           const Runtime& runtime, const ServiceLimits& limits,
                                           Rejection* rejection);

// Fills `response` from a finished job.
void FillEmbedResponse(const PreparedEmbed& prepared, const batching::JobResult& result,
                       absl::Duration total, longenc::v1::EmbedResponse* response);

}  // namespace longenc::server

#endif  // LONGENC_SERVER_EMBED_REQUEST_H_
