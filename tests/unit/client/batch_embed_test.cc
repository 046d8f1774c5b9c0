// EmbedInBatches against a fake Embed call: batch bounds, retries and their waits, rejected
// documents isolated, stops, input order with several batches in flight.
#include "client/batch_embed.h"

#include <atomic>
#include <cmath>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace longenc::client {
namespace {

using longenc::v1::EmbedRequest;
using longenc::v1::EmbedResponse;
using longenc::v1::Embedding;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Documents of token ids; document i has `lengths[i]` tokens, the first being 1000 + i.
std::vector<InputDocument> Documents(const std::vector<int>& lengths) {
  std::vector<InputDocument> docs;
  for (size_t i = 0; i < lengths.size(); ++i) {
    InputDocument d;
    d.index = static_cast<int64_t>(i);
    d.line = static_cast<int64_t>(i) + 1;
    d.document.set_id("doc" + std::to_string(i));
    for (int k = 0; k < lengths[i]; ++k) d.document.mutable_tokens()->add_ids(1000 + (int)i);
    d.tokens = lengths[i];
    docs.push_back(d);
  }
  return docs;
}

// What a server would answer: one embedding per document, its value the first token id.
EmbedResponse Answer(const EmbedRequest& request) {
  EmbedResponse r;
  for (const auto& d : request.documents()) {
    Embedding* e = r.add_embeddings();
    e->add_values(static_cast<float>(d.tokens().ids(0)));
    e->set_num_tokens(d.tokens().ids_size());
    e->set_id(d.id());
  }
  return r;
}

struct Outcome {
  BatchSummary summary;
  std::vector<std::string> order;   // ids as the sink saw them
  std::vector<absl::StatusCode> codes;
  std::vector<float> values;        // of the OK ones
  std::vector<int> request_sizes;
  std::vector<absl::Duration> sleeps;
  int64_t pulled = 0;               // documents taken from `next`
};

Outcome RunWith(std::vector<InputDocument> docs, BatchOptions options,
            const std::function<CallOutcome(const EmbedRequest&, int call)>& fake) {
  Outcome run;
  absl::Mutex mu;
  int calls = 0;
  options.sleep = [&](absl::Duration d) {
    absl::MutexLock lock(&mu);
    run.sleeps.push_back(d);
  };
  size_t pos = 0;
  auto next = [&](InputDocument* d) {
    if (pos == docs.size()) return false;
    *d = docs[pos++];
    ++run.pulled;
    return true;
  };
  EmbedCall call = [&](const EmbedRequest& request) {
    int n;
    {
      absl::MutexLock lock(&mu);
      n = calls++;
      run.request_sizes.push_back(request.documents_size());
    }
    return fake(request, n);
  };
  run.summary = EmbedInBatches(next, EmbedRequest(), call, options,
                               [&](const InputDocument& d, const absl::StatusOr<Embedding>& e) {
                                 run.order.push_back(d.document.id());
                                 run.codes.push_back(e.status().code());
                                 if (e.ok()) run.values.push_back(e->values(0));
                                 return absl::OkStatus();
                               });
  return run;
}

CallOutcome Ok(const EmbedRequest& r) { return CallOutcome{Answer(r), absl::ZeroDuration()}; }

TEST(EmbedInBatches, BatchesRespectTheDocumentAndTokenBounds) {
  BatchOptions o;
  o.max_documents = 3;
  o.max_tokens = 100;
  o.in_flight = 1;
  // 40+40 fit, +40 would pass 100; 250 is over the bound alone; then 10 x 4 cut at 3 documents.
  Outcome run = RunWith(Documents({40, 40, 40, 250, 10, 10, 10, 10}), o,
                    [](const EmbedRequest& r, int) { return Ok(r); });
  EXPECT_THAT(run.request_sizes, ElementsAre(2, 1, 1, 3, 1));
  EXPECT_THAT(run.values, ElementsAre(1000, 1001, 1002, 1003, 1004, 1005, 1006, 1007));
  EXPECT_EQ(run.summary.embedded, 8);
  EXPECT_EQ(run.summary.tokens, 40 * 3 + 250 + 40);
  EXPECT_TRUE(run.summary.stop.ok());
  EXPECT_EQ(run.summary.calls, 5);
}

TEST(EmbedInBatches, ResultsComeInInputOrderWhateverOrderBatchesFinish) {
  BatchOptions o;
  o.max_documents = 2;
  o.in_flight = 4;
  // The first call answers only after the three others have been answered.
  std::atomic<int> answered{0};
  Outcome run = RunWith(Documents({5, 5, 5, 5, 5, 5, 5, 5}), o,
                    [&](const EmbedRequest& r, int) {
                      if (r.documents(0).id() == "doc0") {
                        while (answered.load() < 3) absl::SleepFor(absl::Milliseconds(1));
                      }
                      ++answered;
                      return Ok(r);
                    });
  EXPECT_THAT(run.order, ElementsAre("doc0", "doc1", "doc2", "doc3", "doc4", "doc5", "doc6",
                                     "doc7"));
  EXPECT_THAT(run.values, ElementsAre(1000, 1001, 1002, 1003, 1004, 1005, 1006, 1007));
}

TEST(EmbedInBatches, RetriesUnavailableAndResourceExhaustedWithGrowingWaits) {
  BatchOptions o;
  o.backoff = absl::Seconds(1);
  o.retries = 5;
  o.seed = 7;
  Outcome run = RunWith(Documents({5, 5}), o, [](const EmbedRequest& r, int call) {
    if (call == 0) return CallOutcome{absl::UnavailableError("connection refused"), {}};
    if (call < 3) return CallOutcome{absl::ResourceExhaustedError("queue full"), {}};
    return Ok(r);
  });
  EXPECT_EQ(run.summary.embedded, 2);
  EXPECT_EQ(run.summary.retries, 3);
  EXPECT_EQ(run.summary.calls, 4);
  ASSERT_EQ(run.sleeps.size(), 3u);
  // Equal jitter: retry k waits within [d/2, d], d = 1 s * 2^k.
  for (int k = 0; k < 3; ++k) {
    const absl::Duration d = absl::Seconds(1 << k);
    EXPECT_GE(run.sleeps[k], d / 2) << k;
    EXPECT_LE(run.sleeps[k], d) << k;
  }
}

TEST(EmbedInBatches, TheServersPushbackHintIsHonoured) {
  BatchOptions o;
  o.backoff = absl::Milliseconds(10);
  Outcome run = RunWith(Documents({5}), o, [](const EmbedRequest& r, int call) {
    if (call == 0) return CallOutcome{absl::ResourceExhaustedError("busy"), absl::Seconds(7)};
    return Ok(r);
  });
  ASSERT_EQ(run.sleeps.size(), 1u);
  EXPECT_EQ(run.sleeps[0], absl::Seconds(7));
  EXPECT_EQ(run.summary.embedded, 1);
}

TEST(RetryDelay, DoublesUpToTheCapWithinTheJitterBand) {
  BatchOptions o;
  o.backoff = absl::Milliseconds(500);
  o.max_backoff = absl::Seconds(4);
  EXPECT_EQ(RetryDelay(o, 0, absl::ZeroDuration(), 0.0), absl::Milliseconds(250));
  EXPECT_EQ(RetryDelay(o, 0, absl::ZeroDuration(), 1.0), absl::Milliseconds(500));
  EXPECT_EQ(RetryDelay(o, 2, absl::ZeroDuration(), 1.0), absl::Seconds(2));
  EXPECT_EQ(RetryDelay(o, 10, absl::ZeroDuration(), 1.0), absl::Seconds(4));
  EXPECT_EQ(RetryDelay(o, 10, absl::ZeroDuration(), 0.0), absl::Seconds(2));
  EXPECT_EQ(RetryDelay(o, 0, absl::Seconds(9), 0.5), absl::Seconds(9));
}

TEST(EmbedInBatches, PersistentUnavailableStopsTheRunAndNamesWhereItStopped) {
  BatchOptions o;
  o.max_documents = 2;
  o.in_flight = 1;
  o.retries = 2;
  Outcome run = RunWith(Documents({5, 5, 5, 5, 5, 5}), o, [](const EmbedRequest& r, int call) {
    if (call == 0) return Ok(r);
    return CallOutcome{absl::UnavailableError("failed to connect"), {}};
  });
  EXPECT_EQ(run.summary.stop.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(run.summary.stop.message()), HasSubstr("lines 3-4"));
  EXPECT_THAT(std::string(run.summary.stop.message()), HasSubstr("after 2 retries"));
  EXPECT_EQ(run.summary.embedded, 2);
  EXPECT_EQ(run.summary.failed, 2);
  EXPECT_EQ(run.summary.first_unsent_line, 5);
  EXPECT_EQ(run.summary.first_unsent_index, 4);
  EXPECT_THAT(run.order, ElementsAre("doc0", "doc1", "doc2", "doc3"));
  EXPECT_EQ(run.summary.calls, 1 + 3);
  EXPECT_LE(run.pulled, 5);  // the input is not read to its end
}

TEST(EmbedInBatches, ADocumentAloneOverItsDeadlineStopsTheRun) {
  BatchOptions o;
  o.in_flight = 1;
  Outcome run = RunWith(Documents({5, 5}), o, [](const EmbedRequest&, int) {
    return CallOutcome{absl::DeadlineExceededError("deadline"), {}};
  });
  EXPECT_EQ(run.summary.stop.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(run.summary.calls, 2);  // the pair, then its first document alone; not retried
  EXPECT_TRUE(run.sleeps.empty());
  EXPECT_EQ(run.summary.first_unsent_line, 0);  // both documents were in the failed batch
  EXPECT_EQ(run.summary.first_unsent_index, -1);
}

TEST(EmbedInBatches, ABatchOverItsDeadlineIsHalvedAndLaterBatchesAreCut) {
  BatchOptions o;
  o.max_documents = 8;
  o.max_tokens = 1000;
  o.in_flight = 1;
  // The server manages at most 2 documents within a deadline.
  Outcome run = RunWith(Documents(std::vector<int>(16, 10)), o,
                        [](const EmbedRequest& r, int) {
                          if (r.documents_size() > 2) {
                            return CallOutcome{absl::DeadlineExceededError("deadline"), {}};
                          }
                          return Ok(r);
                        });
  EXPECT_TRUE(run.summary.stop.ok()) << run.summary.stop;
  EXPECT_EQ(run.summary.embedded, 16);
  EXPECT_EQ(run.summary.max_documents, 2);
  EXPECT_EQ(run.summary.max_tokens, 20);
  // 8 -> 4 -> 2+2, 4 -> 2+2; then batches of 2.
  EXPECT_THAT(run.request_sizes, ElementsAre(8, 4, 2, 2, 4, 2, 2, 2, 2, 2, 2));
  EXPECT_THAT(run.order, ElementsAre("doc0", "doc1", "doc2", "doc3", "doc4", "doc5", "doc6",
                                     "doc7", "doc8", "doc9", "doc10", "doc11", "doc12", "doc13",
                                     "doc14", "doc15"));
}

TEST(EmbedInBatches, ARejectedDocumentFailsAloneAndTheRunGoesOn) {
  BatchOptions o;
  o.max_documents = 8;
  o.in_flight = 1;
  Outcome run = RunWith(Documents({5, 5, 5, 5, 5, 5, 5, 5, 5, 5}), o,
                    [](const EmbedRequest& r, int) {
                      for (const auto& d : r.documents()) {
                        if (d.id() == "doc5") {
                          return CallOutcome{absl::InvalidArgumentError("documents[0]: too long"),
                                             {}};
                        }
                      }
                      return Ok(r);
                    });
  EXPECT_TRUE(run.summary.stop.ok());
  EXPECT_EQ(run.summary.embedded, 9);
  EXPECT_EQ(run.summary.failed, 1);
  EXPECT_EQ(run.summary.rejected, 1);
  ASSERT_EQ(run.codes.size(), 10u);
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(run.codes[i], i == 5 ? absl::StatusCode::kInvalidArgument : absl::StatusCode::kOk)
        << i;
  }
  EXPECT_THAT(run.values, ElementsAre(1000, 1001, 1002, 1003, 1004, 1006, 1007, 1008, 1009));
  EXPECT_TRUE(run.sleeps.empty());  // rejections are not retried
}

TEST(EmbedInBatches, ARejectionOfTheRequestItselfStopsTheRun) {
  BatchOptions o;
  o.max_documents = 8;
  o.in_flight = 1;
  Outcome run = RunWith(Documents({5, 5, 5, 5, 5, 5, 5, 5, 5, 5}), o,
                        [](const EmbedRequest&, int) {
                          return CallOutcome{
                              absl::InvalidArgumentError("attention: unknown variant \"bogus\""),
                              {}};
                        });
  EXPECT_EQ(run.summary.stop.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(run.summary.stop.message()), HasSubstr("unknown variant"));
  EXPECT_EQ(run.summary.calls, 4);  // 8 -> 4 -> 2 -> 1 documents, then it is clear
  EXPECT_EQ(run.summary.embedded, 0);
  EXPECT_EQ(run.summary.first_unsent_line, 9);
}

TEST(EmbedInBatches, UnreadableLinesFailInPlaceWithoutACall) {
  std::vector<InputDocument> docs = Documents({5, 5, 5});
  docs[1].input_error = absl::InvalidArgumentError("not a JSON object");
  docs[1].document.clear_tokens();
  BatchOptions o;
  Outcome run = RunWith(docs, o, [](const EmbedRequest& r, int) { return Ok(r); });
  EXPECT_THAT(run.request_sizes, ElementsAre(2));
  EXPECT_THAT(run.codes, ElementsAre(absl::StatusCode::kOk, absl::StatusCode::kInvalidArgument,
                                     absl::StatusCode::kOk));
  EXPECT_EQ(run.summary.failed, 1);
  EXPECT_EQ(run.summary.rejected, 0);
}

TEST(EmbedInBatches, AnInterruptionFinishesTheCallsInFlightAndStartsNoMore) {
  std::atomic<bool> interrupted{false};
  BatchOptions o;
  o.max_documents = 2;
  o.in_flight = 2;
  o.interrupted = &interrupted;
  // Ctrl-C while both first batches are in flight.
  std::atomic<bool> second_called{false};
  Outcome run = RunWith(Documents({5, 5, 5, 5, 5, 5, 5, 5}), o,
                        [&](const EmbedRequest& r, int) {
                          if (r.documents(0).id() == "doc2") second_called = true;
                          if (r.documents(0).id() == "doc0") {
                            while (!second_called) absl::SleepFor(absl::Milliseconds(1));
                            interrupted = true;
                          }
                          return Ok(r);
                        });
  EXPECT_EQ(run.summary.stop.code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(run.summary.embedded, 4);  // the two batches in flight
  EXPECT_EQ(run.summary.failed, 0);
  EXPECT_EQ(run.summary.first_unsent_line, 5);
}

TEST(EmbedInBatches, ASinkErrorStopsTheRun) {
  BatchOptions o;
  o.max_documents = 1;
  o.in_flight = 1;
  int seen = 0;
  size_t pos = 0;
  std::vector<InputDocument> docs = Documents({5, 5, 5, 5});
  BatchSummary s = EmbedInBatches(
      [&](InputDocument* d) {
        if (pos == docs.size()) return false;
        *d = docs[pos++];
        return true;
      },
      EmbedRequest(), [](const EmbedRequest& r) { return Ok(r); }, o,
      [&](const InputDocument&, const absl::StatusOr<Embedding>&) {
        return ++seen == 2 ? absl::DataLossError("disk full") : absl::OkStatus();
      });
  EXPECT_EQ(s.stop.code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(seen, 2);
}

}  // namespace
}  // namespace longenc::client
