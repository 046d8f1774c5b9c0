#include "server/flags.h"

#include <cstdlib>
#include <string>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

ABSL_DECLARE_FLAG(int64_t, max_queue);
ABSL_DECLARE_FLAG(std::string, model_dir);

namespace longenc::server {
namespace {

using ::testing::HasSubstr;

ServerOptions Valid() {
  ServerOptions o;
  o.model_dir = "/tmp";
  return o;
}

std::string Error(const ServerOptions& o) {
  const absl::Status s = ValidateOptions(o);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  return std::string(s.message());
}

TEST(ServerFlags, DefaultsAreValid) { EXPECT_TRUE(ValidateOptions(Valid()).ok()); }

TEST(ServerFlags, DefaultsSuitLongDocuments) {
  const ServerOptions o;
  EXPECT_EQ(o.max_tokens_per_document, 131072);
  EXPECT_EQ(o.max_batch_tokens, 16384);
  EXPECT_EQ(o.max_message_bytes, 64 << 20);
  EXPECT_EQ(o.metrics_address, "0.0.0.0:9464");
}

TEST(ServerFlags, ErrorsNameTheFlag) {
  ServerOptions o = Valid();
  o.port = 70000;
  EXPECT_THAT(Error(o), HasSubstr("--port=70000"));
  o = Valid();
  o.device = "tpu";
  EXPECT_THAT(Error(o), HasSubstr("--device=tpu"));
  o = Valid();
  o.device = "cuda:x";
  EXPECT_THAT(Error(o), HasSubstr("--device=cuda:x"));
  o = Valid();
  o.threads = -1;
  EXPECT_THAT(Error(o), HasSubstr("--threads=-1"));
  o = Valid();
  o.max_batch_tokens = 0;
  EXPECT_THAT(Error(o), HasSubstr("--max_batch_tokens=0"));
  o = Valid();
  o.max_batch_delay = absl::Milliseconds(-1);
  EXPECT_THAT(Error(o), HasSubstr("--max_batch_delay"));
  o = Valid();
  o.max_documents_per_request = 0;
  EXPECT_THAT(Error(o), HasSubstr("--max_documents_per_request=0"));
  o = Valid();
  o.max_tokens_per_document = 2;
  EXPECT_THAT(Error(o), HasSubstr("--max_tokens_per_document=2"));
  o = Valid();
  o.max_message_bytes = 100;
  EXPECT_THAT(Error(o), HasSubstr("--max_message_bytes=100"));
  o = Valid();
  o.attention = "";
  EXPECT_THAT(Error(o), HasSubstr("--attention="));
  o = Valid();
  o.stream_window = 0;
  EXPECT_THAT(Error(o), HasSubstr("--stream_window=0"));
  o = Valid();
  o.metrics_address = "localhost";
  EXPECT_THAT(Error(o), HasSubstr("--metrics_address=localhost"));
  o = Valid();
  o.model_dir = "/nonexistent/model";
  EXPECT_THAT(Error(o), HasSubstr("--model_dir=/nonexistent/model"));
}

TEST(ServerFlags, QueueMustHoldAFullRequest) {
  ServerOptions o = Valid();
  o.max_documents_per_request = 64;
  o.max_queue = 63;
  EXPECT_THAT(Error(o), HasSubstr("--max_queue=63: must be >= --max_documents_per_request (64)"));
  o.max_queue = 64;
  EXPECT_TRUE(ValidateOptions(o).ok());
}

TEST(ServerFlags, MetricsPortZeroIsAllowed) {
  ServerOptions o = Valid();
  o.metrics_address = "0.0.0.0:0";
  EXPECT_TRUE(ValidateOptions(o).ok());
}

TEST(ServerFlags, TokensPerDocumentMayNotExceedTheModel) {
  ServerOptions o = Valid();
  model::ModelInfo info;
  info.max_tokens_per_document = 8192;
  o.max_tokens_per_document = 8192;
  EXPECT_TRUE(ValidateAgainstModel(o, info).ok());
  o.max_tokens_per_document = 8193;
  const absl::Status s = ValidateAgainstModel(o, info);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("--max_tokens_per_document=8193: exceeds what the model accepts (8192"));
}

TEST(ServerFlags, FlagsBecomeOptions) {
  absl::SetFlag(&FLAGS_max_queue, 4096);
  absl::SetFlag(&FLAGS_model_dir, std::string("/tmp"));
  absl::StatusOr<ServerOptions> o = OptionsFromFlags();
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->max_queue, 4096);
  EXPECT_EQ(o->model_dir, "/tmp");
  EXPECT_EQ(ToBatcherOptions(*o).max_queue_documents, 4096);
  EXPECT_EQ(ToBackendOptions(*o).max_tokens_per_document, 131072);
  absl::SetFlag(&FLAGS_max_queue, 0);
  EXPECT_THAT(std::string(OptionsFromFlags().status().message()), HasSubstr("--max_queue=0"));
}

TEST(ServerFlags, EmptyModelDirFallsBackToEnvironment) {
  absl::SetFlag(&FLAGS_max_queue, 1024);
  absl::SetFlag(&FLAGS_model_dir, std::string(""));
  setenv("LONGENC_MODEL_DIR", "/tmp", 1);
  absl::StatusOr<ServerOptions> o = OptionsFromFlags();
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->model_dir, "/tmp");
  unsetenv("LONGENC_MODEL_DIR");
  EXPECT_EQ(model::DefaultModelDir(), LONGENC_DEFAULT_MODEL_DIR);
}

}  // namespace
}  // namespace longenc::server
