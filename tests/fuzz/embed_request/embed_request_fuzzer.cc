// libFuzzer target: the server's handling of an untrusted Embed request before anything is
// queued. Input = 1 byte choosing the service limits + the EmbedRequest wire bytes. Runs what
// the Embed handler runs: DecodeMessage (wire walk for UTF-8, then protobuf parse) and
// EncoderService::Prepare (validation and tokenization) with the real tokenizer and a stub
// backend (the real backend's ValidateSettings needs LibTorch). It must never crash, and every
// request it accepts must be a job the batcher and model can take: one sequence per document,
// each non-empty, within max_tokens_per_document, ids inside the vocabulary. And invalid UTF-8
// must be caught by DecodeMessage itself (an error naming the field): if it reaches protobuf's
// parser, the client gets a generic error and the server logs a libprotobuf ERROR line per
// request, a log flood any client can cause.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "grpcpp/grpcpp.h"
#include "google/protobuf/stubs/logging.h"
#include "grpcpp/impl/grpc_library.h"
#include "longenc/v1/encoder.pb.h"
#include "model/backend.h"
#include "model/tokenizer/wordpiece.h"
#include "server/runtime.h"
#include "server/service.h"
#include "server/wire_format.h"

namespace {

// The service only asks a backend for info() and ValidateSettings() while preparing.
class StubBackend : public longenc::model::Backend {
 public:
  explicit StubBackend(int64_t vocab_size) {
    info_.model_name = "fuzz";
    info_.embedding_dim = 4;
    info_.max_positions = 512;
    info_.max_tokens_per_document = 131072;
    info_.vocab_size = vocab_size;
    info_.attention_variants = {"full", "yoso"};
    info_.default_attention = "full";
    info_.position_modes = {"chunk"};
    info_.default_position_mode = "chunk";
  }
  const longenc::model::ModelInfo& info() const override { return info_; }
  absl::Status ValidateSettings(const longenc::model::EncodeSettings& s) const override {
    if (!s.attention.empty() && s.attention != "full" && s.attention != "yoso") {
      return absl::InvalidArgumentError("attention: unknown variant");
    }
    if (!s.position_mode.empty() && s.position_mode != "chunk") {
      return absl::InvalidArgumentError("position_mode: unknown mode");
    }
    return absl::OkStatus();
  }
  absl::StatusOr<longenc::model::BatchResult> Embed(const longenc::model::Batch&) override {
    std::abort();  // never reached: nothing is submitted
  }

 private:
  longenc::model::ModelInfo info_;
};

const longenc::tokenizer::WordPieceTokenizer& Tokenizer() {
  static const auto* tokenizer = [] {
    const char* dir = std::getenv("LONGENC_MODEL_DIR");
    auto loaded = longenc::tokenizer::WordPieceTokenizer::FromModelDir(
        dir ? dir : LONGENC_DEFAULT_MODEL_DIR);
    if (!loaded.ok()) std::abort();
    return new longenc::tokenizer::WordPieceTokenizer(*std::move(loaded));
  }();
  return *tokenizer;
}

// Installed once: protobuf's parser complaining about UTF-8 means DecodeMessage missed it.
void AbortOnParserUtf8Error(google::protobuf::LogLevel level, const char* filename, int line,
                            const std::string& message) {
  std::fprintf(stderr, "[libprotobuf %s:%d] %s\n", filename, line, message.c_str());
  if (message.find("invalid UTF-8") != std::string::npos) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using longenc::server::EncoderService;
  if (size < 1) return 0;
  // The smallest limits the flags allow, small ones that truncation and the document limit
  // hit often, and the defaults.
  static constexpr int64_t kMaxTokens[] = {3, 8, 64, 131072};
  static constexpr int64_t kMaxDocuments[] = {1, 4, 256, 256};
  longenc::server::ServiceLimits limits;
  limits.max_tokens_per_document = kMaxTokens[data[0] & 3];
  limits.max_documents_per_request = kMaxDocuments[(data[0] >> 2) & 3];

  static grpc::internal::GrpcLibraryInitializer grpc_initializer;  // ByteBuffer needs grpc
  static google::protobuf::LogHandler* const previous_handler =
      google::protobuf::SetLogHandler(&AbortOnParserUtf8Error);
  (void)previous_handler;
  static StubBackend* backend = new StubBackend(Tokenizer().vocab_size());
  const EncoderService service(limits, /*observer=*/nullptr);
  longenc::server::Runtime runtime;
  runtime.backend = backend;
  runtime.tokenizer = &Tokenizer();

  grpc::Slice slice(data + 1, size - 1);
  const grpc::ByteBuffer buffer(&slice, 1);
  longenc::v1::EmbedRequest request;
  if (!longenc::server::DecodeMessage(buffer, &request).ok()) return 0;

  longenc::server::Rejection rejection;
  auto prepared = service.Prepare(request, runtime, &rejection);
  if (!prepared.ok()) {
    if (prepared.status().code() != absl::StatusCode::kInvalidArgument) std::abort();
    return 0;
  }
  const auto& job = prepared->job;
  const size_t n = static_cast<size_t>(request.documents_size());
  if (n == 0 || static_cast<int64_t>(n) > limits.max_documents_per_request) std::abort();
  if (job.documents.size() != n || prepared->num_tokens.size() != n ||
      prepared->truncated.size() != n || prepared->ids.size() != n) {
    std::abort();
  }
  for (size_t i = 0; i < n; ++i) {
    const auto& ids = job.documents[i];
    if (ids.empty() || static_cast<int64_t>(ids.size()) > limits.max_tokens_per_document) {
      std::abort();
    }
    if (prepared->num_tokens[i] != static_cast<int32_t>(ids.size())) std::abort();
    for (int32_t id : ids) {
      if (id < 0 || id >= Tokenizer().vocab_size()) std::abort();
    }
  }
  return 0;
}
