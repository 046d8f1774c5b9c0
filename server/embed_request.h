// An EmbedRequest checked and turned into a batching::Job (the error table of docs/API.md), and
// a finished job turned into an EmbedResponse.
//
// Thread-safety: functions only; safe from any thread (the runtime's parts are thread-safe).
#ifndef LONGENC_SERVER_EMBED_REQUEST_H_
#define LONGENC_SERVER_EMBED_REQUEST_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "longenc/v1/encoder.pb.h"
#include "server/batching/batcher.h"
#include "server/runtime.h"
#include "server/service_observer.h"

namespace longenc::server {

// A validated, tokenized request: the job to submit and what the response echoes.
struct PreparedEmbed {
  batching::Job job;
  std::vector<std::string> ids;
  std::vector<int32_t> num_tokens;
  std::vector<bool> truncated;
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
