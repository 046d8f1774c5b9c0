// The error table of docs/API.md, one test per row, against the real longenc-server binary and
// the real model (127.0.0.1, port 0). For every row RunRow() checks the same four things:
//   1. the exact gRPC code and a message containing the documented text;
//   2. a well-formed request sent at the same time (another thread) succeeds with the
//      embeddings computed before the rows ran;
//   3. the server still runs and health reports SERVING afterwards;
//   4. the row's own post-condition (e.g. a cancelled queued request was dropped before compute,
//      read from /metrics).
// The rows that need a busy server first admit a heavy request ("A", several seconds of compute
// on two cores) and then wait for the documents of the concurrent request to be admitted behind
// it, so "queued" and "computing" are states the test waits for, not guesses.
#include <signal.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "client/bench.h"
#include "client/client.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "longenc/v1/encoder.grpc.pb.h"
#include "tests/integration/server_process.h"

namespace longenc::integration {
namespace {

using longenc::v1::EmbedRequest;
using longenc::v1::EmbedResponse;

// Limits small enough that every row is cheap to reach (flags of the shared server). No
// preemption: the rows that queue a request behind the heavy one need it to stay queued
// (preemption has its own tests: batcher_test, tests/python/test_fair_serving.py).
constexpr int kMaxTokens = 2048;
constexpr int kMaxDocuments = 8;
constexpr int kMaxQueue = 8;
constexpr int kMaxMessageBytes = 1 << 20;
// The heavy request: one full batch of the longest admissible documents.
constexpr int kHeavyDocuments = kMaxDocuments;

const std::vector<std::string>& ServerFlags() {
  static const auto* const kFlags =
      new std::vector<std::string>{absl::StrCat("--max_tokens_per_document=", kMaxTokens),
                                   absl::StrCat("--max_documents_per_request=", kMaxDocuments),
                                   absl::StrCat("--max_queue=", kMaxQueue),
                                   absl::StrCat("--max_message_bytes=", kMaxMessageBytes),
                                   absl::StrCat("--max_batch_tokens=", kMaxTokens * kMaxDocuments),
                                   "--preempt_share=0"};
  return *kFlags;
}

EmbedRequest IdsRequest(const std::vector<std::vector<int32_t>>& docs) {
  EmbedRequest r;
  for (const auto& ids : docs) {
    r.add_documents()->mutable_tokens()->mutable_ids()->Add(ids.begin(), ids.end());
  }
  return r;
}

EmbedRequest HeavyRequest(uint64_t seed) {
  return IdsRequest(client::GeneratedDocuments(kHeavyDocuments, kMaxTokens, seed));
}

// The well-formed request of every row, and its embeddings computed on an idle server.
EmbedRequest GoodRequest() {
  EmbedRequest r;
  r.add_documents()->set_text("A short sentence about reliable services.");
  r.add_documents()->set_text("Embeddings of long documents with a BERT encoder over gRPC.");
  r.set_request_id("good");
  return r;
}

// GoodRequest() with other attention settings.
EmbedRequest WithAttention(const std::string& attention, const std::string& options) {
  EmbedRequest r = GoodRequest();
  r.set_attention(attention);
  r.set_attention_options(options);
  return r;
}

// A call in flight on another thread (async stub); Wait() returns its end.
class AsyncEmbed {
 public:
  AsyncEmbed(client::Client& client, EmbedRequest request,
             absl::Duration timeout = absl::Seconds(600))
      : request_(std::move(request)) {
    context_.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
    client.stub()->async()->Embed(&context_, &request_, &response_, [this](grpc::Status s) {
      status_ = std::move(s);
      done_.Notify();
    });
  }
  ~AsyncEmbed() {
    context_.TryCancel();
    done_.WaitForNotification();
  }
  void Cancel() { context_.TryCancel(); }
  bool done() const { return done_.HasBeenNotified(); }
  const grpc::Status& Wait() {
    done_.WaitForNotification();
    return status_;
  }
  const EmbedResponse& response() {
    Wait();
    return response_;
  }

 private:
  const EmbedRequest request_;
  grpc::ClientContext context_;
  EmbedResponse response_;
  grpc::Status status_;
  absl::Notification done_;
};

// Documents admitted so far by `server` (the count of its histogram of admitted lengths).
double Admitted(const ServerProcess& server) {
  return server.Metric("longenc_document_tokens_count").value_or(-1);
}
void WaitAdmitted(const ServerProcess& server, double want) {
  server.WaitForMetric("longenc_document_tokens_count", {}, [want](double v) { return v >= want; });
}

// Admits the heavy request and returns once its batch is computing: its documents are admitted
// and the (otherwise idle) batcher has had far longer than --max_batch_delay to take them. The
// rows that depend on it check afterwards, from /metrics, that it really was so.
std::unique_ptr<AsyncEmbed> StartHeavy(ServerProcess& server, uint64_t seed) {
  const double before = Admitted(server);
  auto heavy = std::make_unique<AsyncEmbed>(server.client(), HeavyRequest(seed));
  WaitAdmitted(server, before + kHeavyDocuments);
  absl::SleepFor(absl::Milliseconds(300));
  return heavy;
}

// The shared server, its reference embeddings and what a row may use.
class ErrorTable : public ::testing::Test {
 public:
  static void SetUpTestSuite() {
    server_ = new ServerProcess(ServerFlags());
    if (!server_->serving()) return;
    absl::StatusOr<EmbedResponse> r = server_->client().Embed(GoodRequest());
    if (r.ok()) reference_ = new EmbedResponse(*r);
  }
  static void TearDownTestSuite() {
    // After every bad input of the table the server still drains and exits cleanly (under
    // ASan this is also where LeakSanitizer reports the server's leaks, as a non-zero exit).
    EXPECT_EQ(server_->Stop(), 0) << server_->Stderr();
    delete server_;
    delete reference_;
    server_ = nullptr;
    reference_ = nullptr;
  }

 protected:
  void SetUp() override {
    ASSERT_TRUE(server_->serving()) << server_->Stderr();
    ASSERT_NE(reference_, nullptr) << "the reference request failed";
  }

  // What a row does: provokes its error and returns the status it got. `ctx.StartGood()` sends
  // the concurrent well-formed request (RunRow sends it when the row starts, unless
  // Row::starts_good).
  struct Context {
    ServerProcess* server;
    std::function<void()> start_good;
    void StartGood() { start_good(); }
    double Admitted() const { return integration::Admitted(*server); }
    void WaitAdmitted(double want) const { integration::WaitAdmitted(*server, want); }
    double Rejected(const std::string& reason) const {
      return server->Metric("longenc_rejected_requests_total", {{"reason", reason}}).value_or(-1);
    }
  };
  struct Row {
    grpc::StatusCode code;
    // The message contains one of these (the text of docs/API.md; several when the status can
    // come from the client's own gRPC library or from the server).
    std::vector<std::string> messages;
    std::function<grpc::Status(Context&)> provoke;
    bool starts_good = false;  // the row calls ctx.StartGood() itself
  };

  // Runs one row and checks what every row must hold (see the file comment).
  void RunRow(const Row& row) {
    std::unique_ptr<AsyncEmbed> good;
    Context ctx{server_, [&] {
                  if (good == nullptr) {
                    good = std::make_unique<AsyncEmbed>(server_->client(), GoodRequest());
                  }
                }};
    grpc::Status status;
    absl::Notification started;
    std::thread provoker([&] {
      started.Notify();
      status = row.provoke(ctx);
    });
    // The well-formed request leaves at the same time as the row's, unless the row sends it
    // itself at the moment that matters to it (then only the row's thread touches `good`).
    started.WaitForNotification();
    if (!row.starts_good) ctx.StartGood();
    provoker.join();
    ctx.StartGood();  // a row that failed early may not have sent it

    EXPECT_EQ(status.error_code(), row.code)
        << "got " << status.error_code() << ": " << status.error_message();
    if (!row.messages.empty()) {
      bool found = false;
      for (const std::string& m : row.messages) {
        found = found || absl::StrContains(status.error_message(), m);
      }
      EXPECT_TRUE(found) << "message \"" << status.error_message()
                         << "\" contains none of: " << absl::StrJoin(row.messages, " | ");
    }
    CheckGood(good.get());
    EXPECT_TRUE(server_->Running()) << server_->Stderr();
    absl::StatusOr<client::Health> health = server_->client().CheckHealth();
    ASSERT_TRUE(health.ok()) << health.status();
    EXPECT_EQ(*health, client::Health::kServing);
  }

  static void CheckGood(AsyncEmbed* good) {
    ASSERT_NE(good, nullptr);
    const grpc::Status& s = good->Wait();
    ASSERT_TRUE(s.ok()) << "the concurrent well-formed request failed: " << s.error_code() << " "
                        << s.error_message();
    const EmbedResponse& r = good->response();
    ASSERT_EQ(r.embeddings_size(), reference_->embeddings_size());
    EXPECT_EQ(r.request_id(), "good");
    for (int d = 0; d < r.embeddings_size(); ++d) {
      ASSERT_EQ(r.embeddings(d).values_size(), reference_->embeddings(d).values_size());
      float worst = 0;
      for (int k = 0; k < r.embeddings(d).values_size(); ++k) {
        worst = std::max(worst,
                         std::abs(r.embeddings(d).values(k) - reference_->embeddings(d).values(k)));
      }
      EXPECT_LT(worst, 1e-4) << "document " << d << " differs from the reference";
    }
  }

  // A unary Embed with the stub (the client library would turn the status into absl::Status).
  static grpc::Status Embed(const EmbedRequest& request, EmbedResponse* response = nullptr) {
    EmbedResponse ignored;
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(600)));
    return server_->client().stub()->Embed(&context, request,
                                           response != nullptr ? response : &ignored);
  }

  // Sends `bytes` as the body of `method` without any client-side encoding.
  static grpc::Status RawCall(const std::string& method, const std::string& bytes) {
    auto channel = grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials());
    grpc::GenericStub stub(channel);
    grpc::Slice slice(bytes);
    grpc::ByteBuffer request(&slice, 1), response;
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
    absl::Notification done;
    grpc::Status status;
    stub.UnaryCall(&context, method, grpc::StubOptions(), &request, &response, [&](grpc::Status s) {
      status = std::move(s);
      done.Notify();
    });
    done.WaitForNotification();
    return status;
  }

  static std::unique_ptr<AsyncEmbed> StartHeavy(Context& ctx, uint64_t seed) {
    return integration::StartHeavy(*ctx.server, seed);
  }
  // Starts the good request and waits until its documents are admitted (queued behind A).
  static void StartGoodQueued(Context& ctx) {
    const double before = ctx.Admitted();
    ctx.StartGood();
    ctx.WaitAdmitted(before + GoodRequest().documents_size());
  }

  // Waits until the server has embedded `want` documents in all (longenc_documents_total) and
  // expects no more.
  static void ExpectDocumentsComputed(double want) {
    EXPECT_EQ(server_->WaitForMetric("longenc_documents_total", {},
                                     [want](double v) { return v >= want; }),
              want);
  }

  static ServerProcess* server_;
  static EmbedResponse* reference_;
};

ServerProcess* ErrorTable::server_ = nullptr;
EmbedResponse* ErrorTable::reference_ = nullptr;

using Code = grpc::StatusCode;

TEST_F(ErrorTable, EmptyRequest) {
  RunRow({Code::INVALID_ARGUMENT,
          {"EmbedRequest.documents is empty: send at least one"},
          [](Context&) { return Embed(EmbedRequest()); }});
}

TEST_F(ErrorTable, DocumentWithoutContent) {
  RunRow({Code::INVALID_ARGUMENT,
          {"documents[1] (id \"x\"): empty document (neither text nor tokens is set)"},
          [](Context&) {
            EmbedRequest r;
            r.add_documents()->set_text("fine");
            r.add_documents()->set_id("x");
            return Embed(r);
          }});
}

TEST_F(ErrorTable, EmptyText) {
  RunRow({Code::INVALID_ARGUMENT, {"documents[0]: text is empty"}, [](Context&) {
            EmbedRequest r;
            r.add_documents()->set_text("");
            return Embed(r);
          }});
}

TEST_F(ErrorTable, EmptyTokenIds) {
  RunRow({Code::INVALID_ARGUMENT, {"documents[0]: tokens.ids is empty"}, [](Context&) {
            EmbedRequest r;
            r.add_documents()->mutable_tokens();
            return Embed(r);
          }});
}

TEST_F(ErrorTable, NegativeTokenId) {
  RunRow({Code::INVALID_ARGUMENT,
          {"documents[0].tokens.ids[1] = -1 is outside the vocabulary [0, 30522)"},
          [](Context&) {
            return Embed(IdsRequest({{101, -1, 102}}));
          }});
}

TEST_F(ErrorTable, TokenIdAtVocabularySize) {
  RunRow({Code::INVALID_ARGUMENT,
          {"documents[0].tokens.ids[2] = 30522 is outside the vocabulary [0, 30522)"},
          [](Context&) {
            return Embed(IdsRequest({{101, 2000, 30522, 102}}));
          }});
}

TEST_F(ErrorTable, DocumentOverTokenLimit) {
  RunRow(
      {Code::INVALID_ARGUMENT,
       {absl::StrCat("documents[0] has ", kMaxTokens + 1, " tokens, over the limit of ", kMaxTokens,
                     " (--max_tokens_per_document, GetInfo.limits): set "
                     "over_limit=OVER_LIMIT_TRUNCATE")},
       [](Context&) {
         return Embed(IdsRequest(client::GeneratedDocuments(1, kMaxTokens + 1, 5)));
       }});
}

TEST_F(ErrorTable, DocumentOverTokenLimitTruncated) {
  EmbedResponse truncated;
  RunRow({Code::OK, {}, [&](Context&) {
            EmbedRequest r = IdsRequest(client::GeneratedDocuments(1, kMaxTokens + 100, 5));
            r.set_over_limit(longenc::v1::OVER_LIMIT_TRUNCATE);
            return Embed(r, &truncated);
          }});
  ASSERT_EQ(truncated.embeddings_size(), 1);
  EXPECT_TRUE(truncated.embeddings(0).truncated());
  EXPECT_EQ(truncated.embeddings(0).num_tokens(), kMaxTokens);
  EXPECT_EQ(truncated.usage().truncated_documents(), 1);
  // Truncating keeps the head and the final [SEP]: the same as sending those ids.
  std::vector<int32_t> head = client::GeneratedDocuments(1, kMaxTokens + 100, 5)[0];
  head.resize(kMaxTokens);
  head.back() = 102;
  EmbedResponse direct;
  ASSERT_TRUE(Embed(IdsRequest({head}), &direct).ok());
  for (int k = 0; k < direct.embeddings(0).values_size(); ++k) {
    EXPECT_NEAR(truncated.embeddings(0).values(k), direct.embeddings(0).values(k), 1e-5) << k;
  }
}

TEST_F(ErrorTable, TooManyDocuments) {
  RunRow({Code::INVALID_ARGUMENT,
          {absl::StrCat("EmbedRequest has ", kMaxDocuments + 1, " documents; the limit is ",
                        kMaxDocuments,
                        " (--max_documents_per_request, GetInfo.limits): split the request")},
          [](Context&) {
            return Embed(IdsRequest(client::GeneratedDocuments(kMaxDocuments + 1, 8, 6)));
          }});
}

TEST_F(ErrorTable, MessageOverSizeLimit) {
  RunRow({Code::RESOURCE_EXHAUSTED,
          {absl::StrCat("Received message larger than max (")},
          [](Context&) {
            EmbedRequest r;
            r.add_documents()->set_text(std::string(kMaxMessageBytes + 1000, 'a'));
            return Embed(r);
          }});
}

TEST_F(ErrorTable, InvalidUtf8) {
  RunRow({Code::INVALID_ARGUMENT,
          {"documents[1].text is not valid UTF-8 (string fields must be UTF-8)"},
          [](Context&) {
            // Encoded with a valid placeholder, then the placeholder's bytes replaced: no
            // client library would send this, a hand-written or buggy client can.
            EmbedRequest r;
            r.add_documents()->set_text("fine");
            r.add_documents()->set_text("caf#PLACEHOLDER#");
            std::string bytes = r.SerializeAsString();
            const std::string bad = "\xc3\x28\xff\xfe\x80\x80\x80\x80\x80\x80\x80\x80\x80";
            bytes.replace(bytes.find("#PLACEHOLDER#"), bad.size(), bad);
            return RawCall("/longenc.v1.Encoder/Embed", bytes);
          }});
}

TEST_F(ErrorTable, BytesThatAreNotAMessage) {
  RunRow({Code::INVALID_ARGUMENT, {"malformed protobuf in longenc.v1.EmbedRequest"}, [](Context&) {
            return RawCall("/longenc.v1.Encoder/Embed", std::string("\x0a\xff\xff\xff\x0f\x01", 6));
          }});
}

TEST_F(ErrorTable, UnknownAttentionVariant) {
  RunRow({Code::INVALID_ARGUMENT, {"unknown attention 'no-such-variant'; known: "}, [](Context&) {
            return Embed(WithAttention("no-such-variant", ""));
          }});
}

// A request may set only the options of model/request_policy.h, within its ranges.
TEST_F(ErrorTable, UnknownAttentionOption) {
  RunRow({Code::INVALID_ARGUMENT,
          {"attention_options: \"bogus\" of attention \"yoso\" cannot be set by a request (a "
           "request may set: hashes, min_len_efficient, tau; --request_option_limits)"},
          [](Context&) { return Embed(WithAttention("yoso", "bogus=1")); }});
}

TEST_F(ErrorTable, BadAttentionOptionValue) {
  RunRow({Code::INVALID_ARGUMENT,
          {"attention_options: clustered clusters=zero is outside what a request may set: an "
           "integer in [1, 256] (--request_option_limits)"},
          [](Context&) { return Embed(WithAttention("clustered", "clusters=zero")); }});
}

TEST_F(ErrorTable, MalformedAttentionOptions) {
  RunRow({Code::INVALID_ARGUMENT,
          {"attention option 'clusters' is not of the form key=value"},
          [](Context&) { return Embed(WithAttention("clustered", "clusters")); }});
}

TEST_F(ErrorTable, UnknownPooling) {
  RunRow({Code::INVALID_ARGUMENT, {"pooling: unknown value 9"}, [](Context&) {
            EmbedRequest r = GoodRequest();
            r.set_pooling(static_cast<longenc::v1::Pooling>(9));
            return Embed(r);
          }});
}

TEST_F(ErrorTable, UnknownOverLimitMode) {
  RunRow({Code::INVALID_ARGUMENT, {"over_limit: unknown value 7"}, [](Context&) {
            EmbedRequest r = GoodRequest();
            r.set_over_limit(static_cast<longenc::v1::OverLimit>(7));
            return Embed(r);
          }});
}

TEST_F(ErrorTable, UnknownPositionMode) {
  RunRow({Code::INVALID_ARGUMENT, {"unknown position mode 'sideways'; valid: "}, [](Context&) {
            EmbedRequest r = GoodRequest();
            r.set_position_mode("sideways");
            return Embed(r);
          }});
}

TEST_F(ErrorTable, DeadlineAlreadyExpired) {
  RunRow({Code::DEADLINE_EXCEEDED,
          // The client's gRPC library ends the call itself; a server that sees it first says
          // the second.
          {"Deadline Exceeded", "deadline expired before the request was read"},
          [](Context&) {
            grpc::ClientContext context;
            context.set_deadline(absl::ToChronoTime(absl::Now() - absl::Seconds(1)));
            EmbedResponse response;
            return server_->client().stub()->Embed(&context, GoodRequest(), &response);
          }});
}

TEST_F(ErrorTable, DeadlineExpiresWhileQueued) {
  double dropped_before = 0, dropped_after = 0;
  RunRow({Code::DEADLINE_EXCEEDED,
          {"Deadline Exceeded", "deadline expired while the request was queued"},
          [&](Context& ctx) {
            dropped_before = ctx.Rejected("deadline_exceeded");
            std::unique_ptr<AsyncEmbed> heavy = StartHeavy(ctx, 11);
            StartGoodQueued(ctx);
            AsyncEmbed late(server_->client(), IdsRequest({{101, 2000, 102}}),
                            absl::Milliseconds(500));
            grpc::Status s = late.Wait();
            EXPECT_FALSE(heavy->done()) << "the heavy request ended before the deadline: the "
                                           "late one was never queued behind it";
            EXPECT_TRUE(heavy->Wait().ok()) << heavy->Wait().error_message();
            // Dropped before compute, once the batcher came back to its queue.
            dropped_after = server_->WaitForMetric(
                "longenc_rejected_requests_total", {{"reason", "deadline_exceeded"}},
                [&](double v) { return v >= dropped_before + 1; });
            return s;
          },
          /*starts_good=*/true});
  EXPECT_EQ(dropped_after, dropped_before + 1);
}

TEST_F(ErrorTable, CancelWhileQueued) {
  double cancelled_before = 0, cancelled_after = 0, documents_before = 0;
  RunRow({Code::CANCELLED,
          {"CANCELLED"},
          [&](Context& ctx) {
            cancelled_before = ctx.Rejected("cancelled");
            documents_before = server_->Metric("longenc_documents_total").value_or(-1);
            std::unique_ptr<AsyncEmbed> heavy = StartHeavy(ctx, 12);
            StartGoodQueued(ctx);
            const double before = ctx.Admitted();
            AsyncEmbed queued(server_->client(), IdsRequest({{101, 2001, 102}}));
            ctx.WaitAdmitted(before + 1);
            queued.Cancel();
            grpc::Status s = queued.Wait();
            EXPECT_FALSE(heavy->done()) << "cancelled after the heavy request ended";
            EXPECT_TRUE(heavy->Wait().ok()) << heavy->Wait().error_message();
            cancelled_after =
                server_->WaitForMetric("longenc_rejected_requests_total", {{"reason", "cancelled"}},
                                       [&](double v) { return v >= cancelled_before + 1; });
            return s;
          },
          /*starts_good=*/true});
  EXPECT_EQ(cancelled_after, cancelled_before + 1) << "not dropped before compute";
  // Computed: the heavy request and the good one, never the cancelled document.
  ExpectDocumentsComputed(documents_before + kHeavyDocuments + 2);
}

TEST_F(ErrorTable, CancelWhileComputing) {
  double cancelled_before = 0, documents_before = 0;
  RunRow({Code::CANCELLED,
          {"CANCELLED"},
          [&](Context& ctx) {
            cancelled_before = ctx.Rejected("cancelled");
            documents_before = server_->Metric("longenc_documents_total").value_or(-1);
            std::unique_ptr<AsyncEmbed> heavy = StartHeavy(ctx, 13);
            StartGoodQueued(ctx);
            heavy->Cancel();
            return heavy->Wait();
          },
          /*starts_good=*/true});
  // The heavy request's work stopped (its running batch at the next checkpoint, its queued
  // documents before compute): it is counted as cancelled once, the good request ran, and
  // fewer than all heavy documents were computed.
  const double computed = server_->WaitForMetric("longenc_documents_total", {},
                                                 [&](double v) { return v >= documents_before + 2; });
  EXPECT_LT(computed, documents_before + kHeavyDocuments + 2);
  EXPECT_EQ(
      server_->Metric("longenc_rejected_requests_total", {{"reason", "cancelled"}}).value_or(-1),
      cancelled_before + 1);
}

TEST_F(ErrorTable, QueueFull) {
  RunRow({Code::RESOURCE_EXHAUSTED,
          {absl::StrCat("queue full: 2 documents queued, request has ", kMaxDocuments, ", limit ",
                        kMaxQueue, " (--max_queue); retry with backoff")},
          [](Context& ctx) {
            std::unique_ptr<AsyncEmbed> heavy = StartHeavy(ctx, 14);
            StartGoodQueued(ctx);  // 2 documents wait behind the heavy batch
            grpc::Status s = Embed(IdsRequest(client::GeneratedDocuments(kMaxDocuments, 16, 15)));
            EXPECT_FALSE(heavy->done()) << "refused after the heavy request ended";
            EXPECT_TRUE(heavy->Wait().ok()) << heavy->Wait().error_message();
            return s;
          },
          /*starts_good=*/true});
}

TEST_F(ErrorTable, EmbedStreamNamesTheMessage) {
  RunRow({Code::INVALID_ARGUMENT,
          {"EmbedStream message 1 (request_id \"second\"): EmbedRequest.documents is empty"},
          [](Context&) {
            grpc::ClientContext context;
            auto stream = server_->client().stub()->EmbedStream(&context);
            EmbedRequest first = GoodRequest();
            EmbedRequest second;
            second.set_request_id("second");
            stream->Write(first);
            stream->Write(second);
            stream->WritesDone();
            EmbedResponse r;
            while (stream->Read(&r)) {
            }
            return stream->Finish();
          }});
}

TEST_F(ErrorTable, TokenizeWithoutTexts) {
  RunRow(
      {Code::INVALID_ARGUMENT, {"TokenizeRequest.texts is empty: send at least one"}, [](Context&) {
         grpc::ClientContext context;
         longenc::v1::TokenizeResponse r;
         return server_->client().stub()->Tokenize(&context, longenc::v1::TokenizeRequest(), &r);
       }});
}

// Draining ends the server, so it has its own. The concurrent well-formed request is one
// admitted before SIGTERM: draining must finish it with the right numbers; a request that
// arrives during the drain is refused.
TEST(ErrorTableDrain, ServerDraining) {
  ServerProcess server(ServerFlags());
  ASSERT_TRUE(server.serving()) << server.Stderr();
  absl::StatusOr<EmbedResponse> reference = server.client().Embed(GoodRequest());
  ASSERT_TRUE(reference.ok()) << reference.status();

  std::unique_ptr<AsyncEmbed> heavy = StartHeavy(server, 21);
  const double admitted = Admitted(server);
  AsyncEmbed good(server.client(), GoodRequest());
  WaitAdmitted(server, admitted + 2);  // queued behind the computing heavy batch
  // A plain channel: the client library's channel watches health itself and, once it sees
  // NOT_SERVING, fails every call locally ("backend unhealthy"), health checks included.
  std::shared_ptr<grpc::Channel> plain =
      grpc::CreateChannel(server.address(), grpc::InsecureChannelCredentials());
  auto health = grpc::health::v1::Health::NewStub(plain);
  auto encoder = longenc::v1::Encoder::NewStub(plain);
  server.Signal(SIGTERM);
  // Health turns NOT_SERVING first; new calls are refused while the heavy batch computes.
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  grpc::health::v1::HealthCheckResponse h;
  while (absl::Now() < deadline) {
    grpc::ClientContext c;
    c.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
    if (health->Check(&c, grpc::health::v1::HealthCheckRequest(), &h).ok() &&
        h.status() == grpc::health::v1::HealthCheckResponse::NOT_SERVING) {
      break;
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(h.status(), grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
  EmbedResponse late_response;
  const grpc::Status late = encoder->Embed(&context, GoodRequest(), &late_response);
  EXPECT_FALSE(heavy->done()) << "the drain ended before the late request was sent";
  EXPECT_EQ(late.error_code(), grpc::StatusCode::UNAVAILABLE) << late.error_message();
  EXPECT_THAT(late.error_message(),
              ::testing::HasSubstr("server is draining (shutting down); retry elsewhere"))
      << server.Stderr();

  EXPECT_TRUE(heavy->Wait().ok()) << heavy->Wait().error_message();
  ASSERT_TRUE(good.Wait().ok()) << good.Wait().error_message();
  ASSERT_EQ(good.response().embeddings_size(), reference->embeddings_size());
  for (int d = 0; d < reference->embeddings_size(); ++d) {
    for (int k = 0; k < reference->embeddings(d).values_size(); ++k) {
      EXPECT_NEAR(good.response().embeddings(d).values(k), reference->embeddings(d).values(k),
                  1e-4);
    }
  }
  EXPECT_EQ(server.Wait(), 0) << server.Stderr();
}

}  // namespace
}  // namespace longenc::integration
