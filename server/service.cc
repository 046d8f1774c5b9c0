#include "server/service.h"

#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/embed_request.h"
#include "server/reactors.h"
#include "server/status_mapping.h"
#include "server/wire_format.h"
#include "server/work_pool.h"

namespace longenc::server {
namespace {

using longenc::v1::EmbedRequest;
using longenc::v1::EmbedResponse;

// The start shared by the unary calls that take raw bytes (Embed, Tokenize): the runtime
// (UNAVAILABLE while loading or draining) and the decoded request (INVALID_ARGUMENT naming the
// field). On failure `call` is rejected and completed, and the result is empty.
std::optional<Runtime> BeginUnary(const EncoderService& service, UnaryCall* call,
                                  const grpc::ByteBuffer& raw_request,
                                  google::protobuf::Message* request) {
  Rejection why = Rejection::kInvalidArgument;
  absl::StatusOr<Runtime> runtime = service.Acquire(&why);
  if (!runtime.ok()) {
    call->Reject(why, runtime.status());
    return std::nullopt;
  }
  if (absl::Status s = DecodeMessage(raw_request, request); !s.ok()) {
    call->Reject(Rejection::kInvalidArgument, s);
    return std::nullopt;
  }
  return *std::move(runtime);
}

}  // namespace

EncoderService::EncoderService(const ServiceLimits& limits, ServiceObserver* observer)
    : limits_(limits),
      observer_(observer != nullptr ? observer : NoopObserver()),
      pool_(std::make_unique<WorkPool>(static_cast<int>(limits.prepare_threads))) {}

EncoderService::~EncoderService() = default;

void EncoderService::Attach(const Runtime& runtime) {
  runtime_ = runtime;
  attached_.store(true);
}

void EncoderService::SetDraining() { draining_.store(true); }

absl::StatusOr<Runtime> EncoderService::Acquire(Rejection* rejection) const {
  if (draining_.load()) {
    *rejection = Rejection::kShuttingDown;
    return absl::UnavailableError("server is draining (shutting down); retry elsewhere");
  }
  if (!attached_.load()) {
    *rejection = Rejection::kShuttingDown;
    return absl::UnavailableError("model is loading; retry when health reports SERVING");
  }
  return runtime_;
}

absl::StatusOr<PreparedEmbed> EncoderService::Prepare(const EmbedRequest& request,
                                                      const Runtime& runtime,
                                                      Rejection* rejection) const {
  return PrepareEmbed(request, runtime, limits_, rejection);
}

grpc::ServerUnaryReactor* EncoderService::Embed(grpc::CallbackServerContext* context,
                                                const grpc::ByteBuffer* raw_request,
                                                grpc::ByteBuffer* raw_response) {
  const absl::Time deadline = CallDeadline(*context);
  auto* call = new UnaryCall(observer_, "Embed", deadline);
  // The request and response buffers live until the call finishes.
  pool_->Schedule([this, call, raw_request, raw_response, deadline] {
    EmbedOnPool(call, *raw_request, raw_response, deadline);
  });
  return call;
}

void EncoderService::EmbedOnPool(UnaryCall* call, const grpc::ByteBuffer& raw_request_ref,
                                 grpc::ByteBuffer* raw_response, absl::Time deadline) {
  const grpc::ByteBuffer* raw_request = &raw_request_ref;
  EmbedRequest request;
  const std::optional<Runtime> runtime = BeginUnary(*this, call, *raw_request, &request);
  if (!runtime) return;
  if (deadline <= absl::Now()) {
    call->Reject(Rejection::kDeadlineExceeded,
                 absl::DeadlineExceededError("deadline expired before the request was read"));
    return;
  }
  Rejection why = Rejection::kInvalidArgument;
  absl::StatusOr<PreparedEmbed> prepared = PrepareEmbed(request, *runtime, limits_, &why);
  if (!prepared.ok()) {
    call->Reject(why, prepared.status());
    return;
  }
  observer_->OnTokenization(prepared->tokenization_time);
  auto p = std::make_shared<PreparedEmbed>(std::move(*prepared));
  batching::Job job = std::move(p->job);
  job.deadline = deadline;
  job.cancelled = call->cancelled();
  ServiceObserver* observer = observer_;
  job.done = [observer, call, p, raw_response](absl::StatusOr<batching::JobResult> result) {
    if (!result.ok()) {
      if (IsRejection(result.status().code())) {
        observer->OnReject(RejectionFor(result.status().code()));
      }
      call->Complete(result.status());
      return;
    }
    observer->OnQueueTime(result->queue_time);
    EmbedResponse response;
    FillEmbedResponse(*p, *result, absl::Now() - call->start(), &response);
    bool own = false;
    (void)grpc::SerializationTraits<EmbedResponse>::Serialize(response, raw_response, &own);
    call->Complete(absl::OkStatus());
  };
  const absl::Status submitted = runtime->batcher->Submit(std::move(job));
  if (!submitted.ok()) {
    call->Reject(RejectionFor(submitted.code()), submitted);
    return;
  }
  for (size_t i = 0; i < p->num_tokens.size(); ++i) {
    observer_->OnDocument(p->num_tokens[i], p->truncated[i]);
  }
  if (p->num_chunks > 0) observer_->OnChunks(p->num_chunks);
}

grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* EncoderService::EmbedStream(
    grpc::CallbackServerContext* context) {
  return NewStreamCall(this, context);
}

grpc::ServerUnaryReactor* EncoderService::Tokenize(grpc::CallbackServerContext* context,
                                                   const grpc::ByteBuffer* raw_request,
                                                   grpc::ByteBuffer* raw_response) {
  auto* call = new UnaryCall(observer_, "Tokenize");
  pool_->Schedule([this, call, raw_request, raw_response] {
    TokenizeOnPool(call, *raw_request, raw_response);
  });
  return call;
}

void EncoderService::TokenizeOnPool(UnaryCall* call, const grpc::ByteBuffer& raw_request_ref,
                                    grpc::ByteBuffer* raw_response) {
  const grpc::ByteBuffer* raw_request = &raw_request_ref;
  longenc::v1::TokenizeRequest request;
  const std::optional<Runtime> runtime = BeginUnary(*this, call, *raw_request, &request);
  if (!runtime) return;
  if (request.texts_size() == 0) {
    call->Reject(Rejection::kInvalidArgument,
                 absl::InvalidArgumentError("TokenizeRequest.texts is empty: send at least one"));
    return;
  }
  if (request.texts_size() > limits_.max_documents_per_request) {
    call->Reject(Rejection::kTooManyDocuments,
                 absl::InvalidArgumentError(absl::StrCat(
                     "TokenizeRequest has ", request.texts_size(), " texts; the limit is ",
                     limits_.max_documents_per_request, " (--max_documents_per_request)")));
    return;
  }
  longenc::v1::TokenizeResponse response;
  const absl::Time t0 = absl::Now();
  for (int i = 0; i < request.texts_size(); ++i) {
    absl::StatusOr<tokenizer::Encoding> enc = runtime->tokenizer->Encode(request.texts(i));
    if (!enc.ok()) {
      call->Reject(Rejection::kInvalidArgument,
                   absl::InvalidArgumentError(
                       absl::StrCat("texts[", i, "]: ", enc.status().message())));
      return;
    }
    longenc::v1::TokenizedText* out = response.add_results();
    out->mutable_ids()->Add(enc->ids.begin(), enc->ids.end());
    for (const auto& [begin, end] : enc->offsets) {
      longenc::v1::Offset* o = out->add_offsets();
      o->set_start(begin);
      o->set_end(end);
    }
  }
  observer_->OnTokenization(absl::Now() - t0);
  bool own = false;
  (void)grpc::SerializationTraits<longenc::v1::TokenizeResponse>::Serialize(response,
                                                                             raw_response, &own);
  call->Complete(absl::OkStatus());
}

grpc::ServerUnaryReactor* EncoderService::GetInfo(grpc::CallbackServerContext* context,
                                                  const longenc::v1::GetInfoRequest* request,
                                                  longenc::v1::GetInfoResponse* response) {
  auto* call = new UnaryCall(observer_, "GetInfo");
  Rejection why = Rejection::kInvalidArgument;
  absl::StatusOr<Runtime> runtime = Acquire(&why);
  if (!runtime.ok()) {
    call->Reject(why, runtime.status());
    return call;
  }
  const model::ModelInfo& info = runtime->backend->info();
  response->set_model_name(info.model_name);
  response->set_model_version(info.version);
  response->set_embedding_dim(info.embedding_dim);
  response->set_max_positions(info.max_positions);
  response->set_vocab_size(info.vocab_size);
  for (const std::string& v : info.attention_variants) response->add_attention_variants(v);
  for (const std::string& p : info.attention_presets) response->add_attention_presets(p);
  response->set_default_attention(info.default_attention);
  response->set_default_attention_options(info.default_attention_options);
  for (const std::string& m : info.position_modes) response->add_position_modes(m);
  response->set_default_position_mode(info.default_position_mode);
  response->set_device(info.device);
  response->set_dtype(info.dtype);
  response->set_server_version(LONGENC_VERSION);
  for (const auto& [name, text] : info.prompts) {
    longenc::v1::Prompt* prompt = response->add_prompts();
    prompt->set_name(name);
    prompt->set_text(text);
  }
  response->set_default_prompt_name(info.default_prompt_name);
  response->set_default_pooling(
      info.default_pooling == model::Pooling::kCls         ? longenc::v1::POOLING_CLS
      : info.default_pooling == model::Pooling::kLastToken ? longenc::v1::POOLING_LAST_TOKEN
                                                           : longenc::v1::POOLING_MEAN);
  response->set_default_normalize(info.default_normalize);
  response->set_max_seq_length(info.max_seq_length);
  longenc::v1::Limits* limits = response->mutable_limits();
  limits->set_max_batch_tokens(limits_.max_batch_tokens);
  limits->set_max_documents_per_request(limits_.max_documents_per_request);
  limits->set_max_tokens_per_document(limits_.max_tokens_per_document);
  limits->set_max_exact_tokens(
      info.max_exact_tokens > 0 ? std::min(info.max_exact_tokens, limits_.max_tokens_per_document)
                                : limits_.max_tokens_per_document);
  limits->set_max_message_bytes(limits_.max_message_bytes);
  limits->set_max_queue_documents(limits_.max_queue_documents);
  limits->set_max_batch_delay_us(absl::ToInt64Microseconds(limits_.max_batch_delay));
  call->Complete(absl::OkStatus());
  return call;
}

}  // namespace longenc::server
