// The real longenc-server binary, started on 127.0.0.1 with --port=0 and the real model, driven
// through the client library: parity with longenc-encode, text vs ids, stream order, concurrent
// bursts, queue-full / deadline / cancel, drain on SIGTERM, health.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <thread>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "client/bench.h"
#include "client/client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/server_process.h"

namespace longenc::client {
namespace {

using longenc::v1::EmbedRequest;
using longenc::v1::EmbedResponse;

using ::longenc::integration::BuildDir;
using ::longenc::integration::ModelDir;
using ::longenc::integration::ServerProcess;

EmbedRequest TextRequest(const std::vector<std::string>& texts) {
  EmbedRequest r;
  for (size_t i = 0; i < texts.size(); ++i) {
    auto* d = r.add_documents();
    d->set_text(texts[i]);
    d->set_id(std::to_string(i));
  }
  return r;
}

EmbedRequest IdsRequest(const std::vector<std::vector<int32_t>>& docs) {
  EmbedRequest r;
  for (const auto& ids : docs) {
    r.add_documents()->mutable_tokens()->mutable_ids()->Add(ids.begin(), ids.end());
  }
  return r;
}

double MaxAbsDiff(const longenc::v1::Embedding& a, const std::vector<float>& b) {
  EXPECT_EQ(static_cast<size_t>(a.values_size()), b.size());
  double m = 0;
  for (size_t i = 0; i < b.size() && i < static_cast<size_t>(a.values_size()); ++i) {
    m = std::max(m, std::abs(static_cast<double>(a.values(i)) - b[i]));
  }
  return m;
}

std::vector<float> Values(const longenc::v1::Embedding& e) {
  return std::vector<float>(e.values().begin(), e.values().end());
}

// Texts of varied length from the kernel documentation when installed, else synthetic.
std::vector<std::string> Texts() {
  std::vector<std::string> texts = {
      "A short sentence.",
      "Embeddings of long documents with a BERT encoder over gRPC.",
      "The quick brown fox jumps over the lazy dog. " + std::string(""),
  };
  std::string para;
  for (int i = 0; i < 60; ++i) {
    absl::StrAppend(&para, "Sentence number ", i, " talks about attention and batching. ");
  }
  texts.push_back(para);
  texts.push_back(para.substr(0, para.size() / 3));
  return texts;
}

TEST(ServerIntegration, EmbeddingsEqualLongencEncode) {
  ServerProcess server;
  ASSERT_TRUE(server.serving());
  const std::vector<std::string> texts = Texts();
  absl::StatusOr<EmbedResponse> resp = server.client().Embed(TextRequest(texts));
  ASSERT_TRUE(resp.ok()) << resp.status();

  // The offline encoder on the same texts.
  char path[] = "/tmp/longenc-it-in-XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  {
    std::ofstream in(path);
    for (size_t i = 0; i < texts.size(); ++i) {
      in << nlohmann::json({{"id", std::to_string(i)}, {"text", texts[i]}}).dump() << "\n";
    }
  }
  close(fd);
  const std::string cmd =
      absl::StrCat(BuildDir(), "/bin/longenc-encode --progress=false --threads=2 --model_dir=",
                   ModelDir(), " --input=", path);
  FILE* pipe = popen(cmd.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string out;
  char buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, pipe)) > 0) out.append(buf, n);
  const int encode_status = pclose(pipe);
  unlink(path);
  ASSERT_EQ(encode_status, 0) << cmd;
  std::istringstream lines(out);
  std::string line;
  int i = 0;
  while (std::getline(lines, line)) {
    nlohmann::json j = nlohmann::json::parse(line);
    ASSERT_LT(i, resp->embeddings_size());
    EXPECT_EQ(j["id"].get<std::string>(), resp->embeddings(i).id());
    EXPECT_EQ(j["num_tokens"].get<int>(), resp->embeddings(i).num_tokens());
    EXPECT_LT(MaxAbsDiff(resp->embeddings(i), j["embedding"].get<std::vector<float>>()), 1e-5)
        << "document " << i;
    ++i;
  }
  EXPECT_EQ(i, static_cast<int>(texts.size()));
  unlink(path);
  EXPECT_EQ(server.Stop(), 0);
}

TEST(ServerIntegration, TextAndTokenIdsAgreeAndStreamKeepsOrder) {
  ServerProcess server({"--stream_window=4"});
  ASSERT_TRUE(server.serving());
  const std::vector<std::string> texts = Texts();
  absl::StatusOr<longenc::v1::TokenizeResponse> tok = server.client().Tokenize(texts);
  ASSERT_TRUE(tok.ok()) << tok.status();
  std::vector<std::vector<int32_t>> ids;
  for (const auto& t : tok->results()) ids.emplace_back(t.ids().begin(), t.ids().end());
  absl::StatusOr<EmbedResponse> by_text = server.client().Embed(TextRequest(texts));
  absl::StatusOr<EmbedResponse> by_ids = server.client().Embed(IdsRequest(ids));
  ASSERT_TRUE(by_text.ok() && by_ids.ok());
  for (size_t i = 0; i < texts.size(); ++i) {
    EXPECT_LT(MaxAbsDiff(by_text->embeddings(i), Values(by_ids->embeddings(i))), 1e-6) << i;
  }

  // EmbedStream: 20 messages of one document each (more than the window), ids echoed in order.
  std::vector<longenc::v1::Document> docs;
  for (int k = 0; k < 20; ++k) {
    longenc::v1::Document d;
    d.set_text(texts[k % texts.size()]);
    d.set_id("doc" + std::to_string(k));
    docs.push_back(d);
  }
  absl::StatusOr<std::vector<longenc::v1::Embedding>> streamed =
      server.client().EmbedMany(docs, EmbedRequest(), 1, nullptr);
  ASSERT_TRUE(streamed.ok()) << streamed.status();
  ASSERT_EQ(streamed->size(), 20u);
  for (int k = 0; k < 20; ++k) {
    EXPECT_EQ((*streamed)[k].id(), "doc" + std::to_string(k));
    EXPECT_LT(MaxAbsDiff((*streamed)[k], Values(by_text->embeddings(k % texts.size()))), 1e-5);
  }
  EXPECT_EQ(server.Stop(), 0);
}

// Starts `requests` Embed calls at once; returns their statuses and responses.
struct Burst {
  std::vector<grpc::Status> status;
  std::vector<EmbedResponse> response;
};
Burst FireBurst(Client& client, const std::vector<EmbedRequest>& requests,
                absl::Duration timeout = absl::Seconds(300)) {
  Burst b;
  b.status.resize(requests.size());
  b.response.resize(requests.size());
  std::vector<std::unique_ptr<grpc::ClientContext>> ctx;
  absl::Mutex mu;
  size_t done = 0;
  for (size_t i = 0; i < requests.size(); ++i) {
    ctx.push_back(std::make_unique<grpc::ClientContext>());
    ctx.back()->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
    client.stub()->async()->Embed(ctx.back().get(), &requests[i], &b.response[i],
                                  [&, i](grpc::Status s) {
                                    absl::MutexLock lock(&mu);
                                    b.status[i] = s;
                                    ++done;
                                  });
  }
  const size_t total = requests.size();
  auto all_done = [&]() { return done == total; };
  absl::MutexLock lock(&mu);
  mu.Await(absl::Condition(&all_done));
  return b;
}

TEST(ServerIntegration, ConcurrentBurstEqualsOneByOne) {
  ServerProcess server;
  ASSERT_TRUE(server.serving());
  // Mixed lengths, so batches mix and pad differently than one-by-one.
  std::vector<EmbedRequest> requests;
  const std::vector<int64_t> lengths = {5, 40, 511, 128, 7, 300, 64, 2, 200, 480, 16, 90};
  for (size_t i = 0; i < lengths.size(); ++i) {
    requests.push_back(IdsRequest(GeneratedDocuments(1 + i % 2, lengths[i], 100 + i)));
  }
  std::vector<EmbedResponse> alone;
  for (const auto& r : requests) {
    absl::StatusOr<EmbedResponse> resp = server.client().Embed(r);
    ASSERT_TRUE(resp.ok()) << resp.status();
    alone.push_back(*resp);
  }
  Burst burst = FireBurst(server.client(), requests);
  for (size_t i = 0; i < requests.size(); ++i) {
    ASSERT_TRUE(burst.status[i].ok()) << burst.status[i].error_message();
    ASSERT_EQ(burst.response[i].embeddings_size(), alone[i].embeddings_size());
    for (int k = 0; k < alone[i].embeddings_size(); ++k) {
      EXPECT_LT(MaxAbsDiff(burst.response[i].embeddings(k), Values(alone[i].embeddings(k))),
                1e-4)
          << "request " << i << " document " << k;
    }
  }
  EXPECT_EQ(server.Stop(), 0);
}

TEST(ServerIntegration, QueueFullDeadlineAndCancel) {
  ServerProcess server({"--max_queue=4", "--max_documents_per_request=4",
                        "--max_batch_delay=0"});
  ASSERT_TRUE(server.serving());
  // 40 requests of 2 x 256 tokens arrive within milliseconds; the queue holds 4 documents, so
  // some are refused at once and every other one succeeds.
  std::vector<EmbedRequest> requests(40, IdsRequest(GeneratedDocuments(2, 256, 7)));
  Burst burst = FireBurst(server.client(), requests);
  int ok = 0, exhausted = 0;
  for (const grpc::Status& s : burst.status) {
    if (s.ok()) {
      ++ok;
    } else {
      EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
      EXPECT_THAT(s.error_message(), ::testing::HasSubstr("queue full"));
      ++exhausted;
    }
  }
  EXPECT_GE(ok, 1);
  EXPECT_GE(exhausted, 1);

  // A deadline that cannot be met: DEADLINE_EXCEEDED, never a result.
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Microseconds(500)));
    EmbedResponse resp;
    const grpc::Status s =
        server.client().stub()->Embed(&ctx, IdsRequest(GeneratedDocuments(4, 512, 3)), &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << s.error_message();
  }
  // A cancelled call: CANCELLED.
  {
    grpc::ClientContext ctx;
    EmbedResponse resp;
    absl::Notification done;
    grpc::Status status;
    EmbedRequest req = IdsRequest(GeneratedDocuments(4, 512, 4));
    server.client().stub()->async()->Embed(&ctx, &req, &resp, [&](grpc::Status s) {
      status = s;
      done.Notify();
    });
    ctx.TryCancel();
    done.WaitForNotification();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED);
  }
  // The server is still healthy afterwards. The cancelled call's documents may still hold the
  // 4-document queue until the batcher drops them, so a refusal for a full queue is retried.
  absl::Status still_fine;
  for (int attempt = 0; attempt < 240; ++attempt) {
    still_fine = server.client().Embed(TextRequest({"still fine"})).status();
    if (still_fine.code() != absl::StatusCode::kResourceExhausted) break;
    absl::SleepFor(absl::Milliseconds(250));
  }
  EXPECT_TRUE(still_fine.ok()) << still_fine;
  EXPECT_EQ(server.Stop(), 0);
}

TEST(ServerIntegration, ShutdownDrainsAdmittedWork) {
  // A grace far longer than the work, however busy the machine (after it, work is stopped).
  ServerProcess server({"--shutdown_timeout=600s"});
  ASSERT_TRUE(server.serving());
  absl::StatusOr<Health> h = server.client().CheckHealth("longenc.v1.Encoder");
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(*h, Health::kServing);
  // Several seconds of work on two cores, admitted within milliseconds.
  std::vector<EmbedRequest> requests;
  for (int i = 0; i < 6; ++i) requests.push_back(IdsRequest(GeneratedDocuments(8, 512, 50 + i)));
  Burst burst;
  std::thread caller([&] { burst = FireBurst(server.client(), requests); });
  absl::SleepFor(absl::Milliseconds(300));
  server.Signal(SIGTERM);
  caller.join();
  for (size_t i = 0; i < requests.size(); ++i) {
    EXPECT_TRUE(burst.status[i].ok()) << i << ": " << burst.status[i].error_message();
    EXPECT_EQ(burst.response[i].embeddings_size(), 8);
  }
  // New calls are refused (draining, or the listener is already closed).
  absl::StatusOr<EmbedResponse> late = server.client().Embed(TextRequest({"too late"}));
  EXPECT_EQ(late.status().code(), absl::StatusCode::kUnavailable) << late.status();
  EXPECT_EQ(server.Wait(), 0);
}

}  // namespace
}  // namespace longenc::client
