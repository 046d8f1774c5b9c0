// `longenc embed` on large inputs: documents cut into bounded batches (a number of documents and
// an estimate of tokens), each sent as its own Embed call with its own deadline, retried with
// exponential backoff and jitter on UNAVAILABLE and RESOURCE_EXHAUSTED, a few batches in flight,
// results handed back in input order as soon as the batches before them are done.
//
// Failure policy: a batch the server rejects as invalid (INVALID_ARGUMENT, OUT_OF_RANGE) is split
// in halves until the offending documents are alone; they fail (the server names them
// "documents[i]: ..."), the others are embedded and the run goes on. A rejection of one document
// that names no document is about the request itself (an unknown variant, a bad option) and
// stops the run, as does any other error that persists after the retries (server gone, deadline
// exceeded, authentication, internal): no new batch starts, batches in flight finish, and the
// documents not sent are left to a resume. A batch that exceeds its deadline is split in halves
// too, each with a deadline of its own, and later batches are cut to the size of a half; a
// single document that exceeds it stops the run.
//
// Thread-safety: EmbedInBatches runs its own threads and calls `call` from several of them at
// once (it must be thread-safe, as Client::Embed is); `next` and `sink` are called from the
// calling thread only.
#ifndef LONGENC_CLIENT_BATCH_EMBED_H_
#define LONGENC_CLIENT_BATCH_EMBED_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "longenc/v1/encoder.pb.h"

namespace longenc::client {

// One document of the input with where it came from.
struct InputDocument {
  int64_t index = 0;  // 0-based position among the documents of this run's input
  int64_t line = 0;   // 1-based line of the input (argument number for texts given as arguments)
  longenc::v1::Document document;
  int64_t tokens = 0;  // exact for token ids, EstimateTokens for text
  // --spans: this document's late-chunk spans (UTF-8 byte ranges), sent as the request's
  // chunking.spans; such a document is always sent alone (spans address one text).
  std::vector<std::pair<int32_t, int32_t>> spans;
  // Not OK for a line that could not be read (bad JSON, invalid UTF-8): never sent, reported
  // as failed in its place.
  absl::Status input_error;
};

// Tokens a text will likely have: the model's WordPiece vocabulary averages about 4 UTF-8 bytes
// a token on English prose; this counts 3 (plus [CLS] and [SEP]) so batches rarely exceed
// their token bound.
int64_t EstimateTokens(const std::string& text);

struct BatchOptions {
  int64_t max_documents = 16;   // documents per batch (>= 1)
  int64_t max_tokens = 16384;   // tokens per batch; a longer document is a batch of its own
  int in_flight = 2;            // batches sent at once (>= 1)
  int retries = 5;              // extra attempts of a batch on UNAVAILABLE / RESOURCE_EXHAUSTED
  absl::Duration backoff = absl::Milliseconds(500);  // wait before the first retry
  absl::Duration max_backoff = absl::Seconds(30);    // doubling stops here
  uint64_t seed = 0;            // of the jitter (0: from the clock)
  // How to wait between attempts (tests pass one that records instead of sleeping).
  std::function<void(absl::Duration)> sleep;
  // When it turns true (Ctrl-C) the run stops as on an error, with CANCELLED: no new batch or
  // retry starts, the calls in flight finish.
  const std::atomic<bool>* interrupted = nullptr;
};

// The outcome of one Embed call; `retry_after` is the server's pushback hint
// (grpc-retry-pushback-ms), zero when it sent none.
struct CallOutcome {
  absl::StatusOr<longenc::v1::EmbedResponse> response;
  absl::Duration retry_after = absl::ZeroDuration();
};
using EmbedCall = std::function<CallOutcome(const longenc::v1::EmbedRequest&)>;

// True for the codes a batch is retried on.
bool IsRetryable(absl::StatusCode code);

// True for the codes that reject documents of a request (INVALID_ARGUMENT, OUT_OF_RANGE), not
// the server's state: the batch is split to find them.
bool IsDocumentRejection(absl::StatusCode code);

// Wait before retry `attempt` (0 = the first retry): a uniform draw from [d/2, d] where
// d = min(max_backoff, backoff * 2^attempt) ("equal jitter": retries of many clients spread
// out, none comes back at once), and never less than the server's hint. `unit` is in [0, 1).
absl::Duration RetryDelay(const BatchOptions& options, int attempt, absl::Duration hint,
                          double unit);

struct BatchSummary {
  int64_t documents = 0;  // handed to the sink (embedded + failed)
  int64_t embedded = 0;
  int64_t failed = 0;     // rejected by the server or unreadable
  int64_t rejected = 0;   // of `failed`: rejected by the server (the others: input errors)
  int64_t tokens = 0;     // Embedding.num_tokens summed over the embedded documents
  int64_t retries = 0;    // extra attempts made
  int64_t calls = 0;      // Embed calls made
  // The batch bounds at the end: those asked for, or lower after a DEADLINE_EXCEEDED.
  int64_t max_documents = 0;
  int64_t max_tokens = 0;
  // Not OK when the run stopped early: the error that stopped it, naming the batch's lines.
  absl::Status stop;
  // With `stop`: the line and index of the first document never sent (0 and -1: every document
  // was sent). The documents from there on were not handed to the sink and `next` was not asked
  // for more.
  int64_t first_unsent_line = 0;
  int64_t first_unsent_index = -1;
};

// Pulls documents from `next` (false at the end), embeds them with `options` (its documents are
// ignored) and calls `sink` once per document in input order, with the embedding or why it
// failed. A sink error stops the run (it is returned as `stop`).
BatchSummary EmbedInBatches(
    const std::function<bool(InputDocument*)>& next, const longenc::v1::EmbedRequest& options,
    const EmbedCall& call, const BatchOptions& batch,
    const std::function<absl::Status(const InputDocument&,
                                     const absl::StatusOr<longenc::v1::Embedding>&)>& sink);

}  // namespace longenc::client

#endif  // LONGENC_CLIENT_BATCH_EMBED_H_
