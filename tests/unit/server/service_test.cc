// The gRPC service in process: a real EncoderServer on 127.0.0.1:0, the real tokenizer and
// batcher, and a small deterministic Backend (the real model is exercised by the integration
// tests against the longenc-server binary).
#include "server/service.h"

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "longenc/v1/encoder.grpc.pb.h"
#include "server/grpc_server.h"

namespace longenc::server {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using longenc::v1::EmbedRequest;
using longenc::v1::EmbedResponse;

// Row = {length, first id, last id, pooling(1 = cls) + 2 * normalize}. Optionally holds every
// call until `gate` is notified, so tests can fill the queue deterministically.
class TestBackend : public model::Backend {
 public:
  TestBackend() {
    info_.model_name = "test-model";
    info_.embedding_dim = 4;
    info_.max_positions = 512;
    info_.max_tokens_per_document = 131072;
    info_.vocab_size = 30522;
    info_.device = "cpu";
    info_.dtype = "float32";
    info_.attention_variants = {"full", "yoso"};
    info_.default_attention = "full";
    info_.position_modes = {"chunk"};
    info_.default_position_mode = "chunk";
  }
  const model::ModelInfo& info() const override { return info_; }
  absl::Status ValidateSettings(const model::EncodeSettings& s) const override {
    if (!s.attention.empty() && s.attention != "full" && s.attention != "yoso") {
      return absl::InvalidArgumentError("attention: unknown variant '" + s.attention + "'");
    }
    return absl::OkStatus();
  }
  absl::StatusOr<model::BatchResult> Embed(const model::Batch& batch) override {
    if (!entered.HasBeenNotified()) entered.Notify();
    if (gate != nullptr) gate->WaitForNotification();
    model::BatchResult r;
    r.dim = 4;
    for (int64_t i = 0; i < batch.size(); ++i) {
      r.embeddings.push_back(static_cast<float>(batch.length(i)));
      r.embeddings.push_back(static_cast<float>(batch.token_ids[batch.offsets[i]]));
      r.embeddings.push_back(static_cast<float>(batch.token_ids[batch.offsets[i + 1] - 1]));
      r.embeddings.push_back((batch.pooling[i] == model::Pooling::kCls ? 1.f : 0.f) +
                             2.f * batch.normalize[i]);
    }
    return r;
  }
  absl::Notification entered;
  absl::Notification* gate = nullptr;

 private:
  model::ModelInfo info_;
};

// Counts admitted documents; notifies when `want` have been admitted.
class CountingObserver : public ServiceObserver {
 public:
  void OnDocument(int64_t, bool) override {
    absl::MutexLock lock(&mu_);
    ++documents_;
  }
  void WaitForDocuments(int64_t want) {
    absl::MutexLock lock(&mu_);
    want_ = want;
    mu_.Await(absl::Condition(this, &CountingObserver::Reached));
  }
  void OnReject(Rejection r) override {
    absl::MutexLock lock(&mu_);
    rejections.push_back(r);
  }
  std::vector<Rejection> rejections;

 private:
  bool Reached() const { return documents_ >= want_; }
  absl::Mutex mu_;
  int64_t documents_ = 0;
  int64_t want_ = 0;
};

std::string ModelDir() {
  const char* env = std::getenv("LONGENC_MODEL_DIR");
  return env != nullptr ? env : LONGENC_DEFAULT_MODEL_DIR;
}

struct Harness {
  explicit Harness(ServiceLimits limits = {}, batching::BatcherOptions batch = {},
                   bool attach = true) {
    limits.max_queue_documents = batch.max_queue_documents;
    auto tok = tokenizer::WordPieceTokenizer::FromModelDir(ModelDir());
    EXPECT_TRUE(tok.ok()) << tok.status();
    tokenizer = std::make_unique<tokenizer::WordPieceTokenizer>(*tok);
    batcher = std::make_unique<batching::Batcher>(&backend, batch, batching::Clock::Real(),
                                                  nullptr);
    EncoderServer::Options o;
    o.host = "127.0.0.1";
    o.port = 0;
    o.limits = limits;
    auto s = EncoderServer::Start(o, &observer);
    EXPECT_TRUE(s.ok()) << s.status();
    server = std::move(*s);
    channel = grpc::CreateChannel(server->address(), grpc::InsecureChannelCredentials());
    stub = longenc::v1::Encoder::NewStub(channel);
    if (attach) Attach();
  }
  ~Harness() {
    if (gate != nullptr && !gate->HasBeenNotified()) gate->Notify();
    server->Drain(absl::Seconds(5));
  }
  void Attach() {
    batcher->Start();
    server->Attach(Runtime{&backend, tokenizer.get(), batcher.get()});
  }
  grpc::Status Embed(const EmbedRequest& req, EmbedResponse* resp) {
    grpc::ClientContext ctx;
    return stub->Embed(&ctx, req, resp);
  }

  TestBackend backend;
  CountingObserver observer;
  absl::Notification* gate = nullptr;
  std::unique_ptr<tokenizer::WordPieceTokenizer> tokenizer;
  std::unique_ptr<batching::Batcher> batcher;
  std::unique_ptr<EncoderServer> server;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<longenc::v1::Encoder::Stub> stub;
};

EmbedRequest TokensRequest(std::vector<std::vector<int32_t>> docs) {
  EmbedRequest req;
  for (auto& d : docs) {
    auto* doc = req.add_documents();
    doc->mutable_tokens()->mutable_ids()->Add(d.begin(), d.end());
  }
  return req;
}

TEST(EncoderService, EmbedReturnsRowsInRequestOrderWithUsage) {
  Harness h;
  EmbedRequest req = TokensRequest({{101, 5, 6, 102}, {101, 7, 102}});
  req.mutable_documents(0)->set_id("a");
  req.mutable_documents(1)->set_id("b");
  auto* text = req.add_documents();
  text->set_text("hello world");
  text->set_id("c");
  req.set_request_id("r1");
  EmbedResponse resp;
  grpc::Status s = h.Embed(req, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(resp.embeddings_size(), 3);
  EXPECT_THAT(resp.embeddings(0).values(), ElementsAre(4, 101, 102, 2));
  EXPECT_THAT(resp.embeddings(1).values(), ElementsAre(3, 101, 102, 2));
  EXPECT_EQ(resp.embeddings(2).num_tokens(), 4);  // [CLS] hello world [SEP]
  EXPECT_EQ(resp.embeddings(0).id(), "a");
  EXPECT_EQ(resp.embeddings(2).id(), "c");
  EXPECT_EQ(resp.request_id(), "r1");
  EXPECT_EQ(resp.usage().documents(), 3);
  EXPECT_EQ(resp.usage().tokens(), 11);
  EXPECT_EQ(resp.attention(), "full");
  EXPECT_EQ(resp.position_mode(), "chunk");
  EXPECT_GE(resp.timing().total_us(), resp.timing().inference_us());
}

TEST(EncoderService, PoolingAndNormalizeReachTheBackend) {
  Harness h;
  EmbedRequest req = TokensRequest({{101, 5, 102}});
  req.set_pooling(longenc::v1::POOLING_CLS);
  req.set_normalize(false);
  EmbedResponse resp;
  ASSERT_TRUE(h.Embed(req, &resp).ok());
  EXPECT_EQ(resp.embeddings(0).values(3), 1);
}

TEST(EncoderService, TextAndTokenIdsGiveTheSameEmbedding) {
  Harness h;
  grpc::ClientContext ctx;
  longenc::v1::TokenizeRequest treq;
  treq.add_texts("The quick brown fox jumps over the lazy dog.");
  longenc::v1::TokenizeResponse tresp;
  ASSERT_TRUE(h.stub->Tokenize(&ctx, treq, &tresp).ok());
  ASSERT_EQ(tresp.results_size(), 1);
  const auto& ids = tresp.results(0).ids();
  EXPECT_EQ(ids.size(), tresp.results(0).offsets_size());
  EXPECT_EQ(ids[0], h.tokenizer->cls_id());
  EmbedRequest by_text;
  by_text.add_documents()->set_text(treq.texts(0));
  EmbedRequest by_ids = TokensRequest({{ids.begin(), ids.end()}});
  EmbedResponse a, b;
  ASSERT_TRUE(h.Embed(by_text, &a).ok());
  ASSERT_TRUE(h.Embed(by_ids, &b).ok());
  EXPECT_THAT(a.embeddings(0).values(), ::testing::Pointwise(::testing::Eq(),
                                                             b.embeddings(0).values()));
}

struct ErrorCase {
  std::string name;
  EmbedRequest request;
  grpc::StatusCode code;
  std::string message;
};

TEST(EncoderService, ValidationErrorsHaveTheirCodeAndSayWhatIsWrong) {
  ServiceLimits limits;
  limits.max_documents_per_request = 2;
  limits.max_tokens_per_document = 8;
  Harness h(limits);
  std::vector<ErrorCase> cases;
  cases.push_back({"empty request", EmbedRequest(), grpc::StatusCode::INVALID_ARGUMENT,
                   "documents is empty"});
  {
    EmbedRequest r;
    r.add_documents()->set_id("x");
    cases.push_back({"empty document", r, grpc::StatusCode::INVALID_ARGUMENT,
                     "documents[0] (id \"x\"): empty document"});
  }
  {
    EmbedRequest r;
    r.add_documents()->set_text("");
    cases.push_back({"empty text", r, grpc::StatusCode::INVALID_ARGUMENT, "text is empty"});
  }
  cases.push_back({"empty ids", TokensRequest({{}}), grpc::StatusCode::INVALID_ARGUMENT,
                   "tokens.ids is empty"});
  cases.push_back({"negative id", TokensRequest({{101, -1, 102}}),
                   grpc::StatusCode::INVALID_ARGUMENT, "tokens.ids[1] = -1 is outside"});
  cases.push_back({"id past vocab", TokensRequest({{101, 30522, 102}}),
                   grpc::StatusCode::INVALID_ARGUMENT, "[0, 30522)"});
  cases.push_back({"too many documents", TokensRequest({{101, 102}, {101, 102}, {101, 102}}),
                   grpc::StatusCode::INVALID_ARGUMENT, "limit is 2 (--max_documents_per_request"});
  cases.push_back({"too long", TokensRequest({std::vector<int32_t>(9, 100)}),
                   grpc::StatusCode::INVALID_ARGUMENT, "has 9 tokens, over the limit of 8"});
  {
    // Sent as raw bytes by this C++ client (protobuf only logs); Python/Java cannot send it.
    EmbedRequest r = TokensRequest({{101, 102}});
    r.add_documents()->set_text("bad \xff utf8");
    cases.push_back({"invalid utf-8", r, grpc::StatusCode::INVALID_ARGUMENT,
                     "documents[1].text is not valid UTF-8"});
  }
  {
    EmbedRequest r = TokensRequest({{101, 102}});
    r.set_attention("nope");
    cases.push_back({"unknown attention", r, grpc::StatusCode::INVALID_ARGUMENT,
                     "unknown variant 'nope'"});
  }
  {
    EmbedRequest r = TokensRequest({{101, 102}});
    r.set_pooling(static_cast<longenc::v1::Pooling>(9));
    cases.push_back({"unknown pooling", r, grpc::StatusCode::INVALID_ARGUMENT, "pooling"});
  }
  for (const ErrorCase& c : cases) {
    EmbedResponse resp;
    const grpc::Status s = h.Embed(c.request, &resp);
    EXPECT_EQ(s.error_code(), c.code) << c.name << ": " << s.error_message();
    EXPECT_THAT(s.error_message(), HasSubstr(c.message)) << c.name;
  }
}

TEST(EncoderService, TokenizeRejectsInvalidUtf8NamingTheText) {
  Harness h;
  grpc::ClientContext ctx;
  longenc::v1::TokenizeRequest req;
  req.add_texts("fine");
  req.add_texts("broken \xc3");
  longenc::v1::TokenizeResponse resp;
  const grpc::Status s = h.stub->Tokenize(&ctx, req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("texts[1] is not valid UTF-8"));
}

TEST(EncoderService, TruncationKeepsTheHeadAndTheFinalSep) {
  ServiceLimits limits;
  limits.max_tokens_per_document = 8;
  Harness h(limits);
  EmbedRequest req;
  req.add_documents()->set_text(
      "one two three four five six seven eight nine ten eleven twelve");
  req.set_over_limit(longenc::v1::OVER_LIMIT_TRUNCATE);
  EmbedResponse resp;
  ASSERT_TRUE(h.Embed(req, &resp).ok());
  EXPECT_EQ(resp.embeddings(0).num_tokens(), 8);
  EXPECT_TRUE(resp.embeddings(0).truncated());
  EXPECT_EQ(resp.embeddings(0).values(2), h.tokenizer->sep_id());
  EXPECT_EQ(resp.usage().truncated_documents(), 1);
}

TEST(EncoderService, FullQueueIsRefusedAtOnce) {
  batching::BatcherOptions batch;
  batch.max_queue_documents = 2;
  batch.max_batch_delay = absl::ZeroDuration();
  ServiceLimits limits;
  limits.max_documents_per_request = 2;
  Harness h(limits, batch);
  absl::Notification gate;
  h.gate = &gate;
  h.backend.gate = &gate;
  // The first request occupies the inference thread, the second fills the queue.
  // The async stub does not own the requests: they must outlive the calls.
  const EmbedRequest q1 = TokensRequest({{101, 102}});
  const EmbedRequest q2 = TokensRequest({{101, 102}, {101, 102}});
  grpc::ClientContext c1, c2;
  EmbedResponse r1, r2;
  absl::Notification d1, d2;
  grpc::Status s1, s2;
  h.stub->async()->Embed(&c1, &q1, &r1, [&](grpc::Status s) { s1 = s; d1.Notify(); });
  h.backend.entered.WaitForNotification();
  h.stub->async()->Embed(&c2, &q2, &r2, [&](grpc::Status s) { s2 = s; d2.Notify(); });
  h.observer.WaitForDocuments(3);
  EmbedResponse r3;
  const grpc::Status s3 = h.Embed(TokensRequest({{101, 102}}), &r3);
  EXPECT_EQ(s3.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(s3.error_message(), HasSubstr("queue full"));
  gate.Notify();
  d1.WaitForNotification();
  d2.WaitForNotification();
  EXPECT_TRUE(s1.ok());
  EXPECT_TRUE(s2.ok());
  EXPECT_EQ(r2.embeddings_size(), 2);
}

TEST(EncoderService, EmbedStreamKeepsOrderAndRequestIds) {
  ServiceLimits limits;
  limits.stream_window = 3;  // smaller than the number of messages: exercises backpressure
  Harness h(limits);
  grpc::ClientContext ctx;
  auto stream = h.stub->EmbedStream(&ctx);
  constexpr int kMessages = 12;
  for (int i = 0; i < kMessages; ++i) {
    std::vector<int32_t> ids(2 + (i * 7) % 20, 1000 + i);
    ids.front() = 101;
    ids.back() = 102;
    EmbedRequest req = TokensRequest({ids});
    req.set_request_id("m" + std::to_string(i));
    ASSERT_TRUE(stream->Write(req));
  }
  stream->WritesDone();
  EmbedResponse resp;
  int i = 0;
  while (stream->Read(&resp)) {
    EXPECT_EQ(resp.request_id(), "m" + std::to_string(i));
    EXPECT_EQ(resp.embeddings(0).num_tokens(), 2 + (i * 7) % 20);
    ++i;
  }
  EXPECT_EQ(i, kMessages);
  EXPECT_TRUE(stream->Finish().ok());
}

TEST(EncoderService, EmbedStreamEndsWithTheErrorOfABadMessage) {
  Harness h;
  grpc::ClientContext ctx;
  auto stream = h.stub->EmbedStream(&ctx);
  EmbedRequest good = TokensRequest({{101, 102}});
  EmbedRequest bad;
  bad.set_request_id("broken");
  stream->Write(good);
  stream->Write(bad);
  stream->WritesDone();
  EmbedResponse resp;
  while (stream->Read(&resp)) {
  }
  const grpc::Status s = stream->Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("EmbedStream message 1 (request_id \"broken\")"));
}

TEST(EncoderService, GetInfoReportsModelAndLimits) {
  ServiceLimits limits;
  limits.max_documents_per_request = 7;
  Harness h(limits);
  grpc::ClientContext ctx;
  longenc::v1::GetInfoResponse info;
  ASSERT_TRUE(h.stub->GetInfo(&ctx, longenc::v1::GetInfoRequest(), &info).ok());
  EXPECT_EQ(info.model_name(), "test-model");
  EXPECT_EQ(info.embedding_dim(), 4);
  EXPECT_THAT(info.attention_variants(), ElementsAre("full", "yoso"));
  EXPECT_EQ(info.limits().max_documents_per_request(), 7);
  EXPECT_EQ(info.limits().max_tokens_per_document(), 131072);
  EXPECT_EQ(info.server_version(), LONGENC_VERSION);
}

grpc::health::v1::HealthCheckResponse::ServingStatus Health(Harness& h,
                                                            const std::string& service) {
  auto stub = grpc::health::v1::Health::NewStub(h.channel);
  grpc::ClientContext ctx;
  grpc::health::v1::HealthCheckRequest req;
  req.set_service(service);
  grpc::health::v1::HealthCheckResponse resp;
  const grpc::Status s = stub->Check(&ctx, req, &resp);
  EXPECT_TRUE(s.ok()) << s.error_message();
  return resp.status();
}

TEST(EncoderService, HealthIsNotServingUntilAttachedAndCallsAreUnavailable) {
  Harness h({}, {}, /*attach=*/false);
  EXPECT_EQ(Health(h, ""), grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  EXPECT_EQ(Health(h, "longenc.v1.Encoder"), grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  EmbedResponse resp;
  const grpc::Status s = h.Embed(TokensRequest({{101, 102}}), &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(s.error_message(), HasSubstr("loading"));
  h.Attach();
  EXPECT_EQ(Health(h, ""), grpc::health::v1::HealthCheckResponse::SERVING);
  EXPECT_EQ(Health(h, "longenc.v1.Encoder"), grpc::health::v1::HealthCheckResponse::SERVING);
  EXPECT_TRUE(h.Embed(TokensRequest({{101, 102}}), &resp).ok());
}

}  // namespace
}  // namespace longenc::server
