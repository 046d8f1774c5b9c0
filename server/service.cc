#include "server/service.h"

#include <algorithm>
#include <chrono>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/wire_format_lite.h"
#include "google/protobuf/stubs/common.h"
#include "absl/synchronization/mutex.h"
#include "server/status_mapping.h"
#include "server/work_pool.h"

namespace longenc::server {
namespace {

using longenc::v1::EmbedRequest;
using longenc::v1::EmbedResponse;

ServiceObserver* NoopObserver() {
  static ServiceObserver* const kNoop = new ServiceObserver();
  return kNoop;
}

// What a failed job's status says about why it never ran.
Rejection RejectionFor(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kResourceExhausted:
      return Rejection::kQueueFull;
    case absl::StatusCode::kUnavailable:
      return Rejection::kShuttingDown;
    case absl::StatusCode::kDeadlineExceeded:
      return Rejection::kDeadlineExceeded;
    case absl::StatusCode::kCancelled:
      return Rejection::kCancelled;
    default:
      return Rejection::kInvalidArgument;
  }
}

bool IsRejection(absl::StatusCode code) {
  return code == absl::StatusCode::kResourceExhausted || code == absl::StatusCode::kUnavailable ||
         code == absl::StatusCode::kDeadlineExceeded || code == absl::StatusCode::kCancelled;
}

}  // namespace

// A unary call that reports its end to the observer exactly once.
class UnaryCall : public grpc::ServerUnaryReactor {
 public:
  UnaryCall(ServiceObserver* observer, std::string_view method,
            absl::Time deadline = absl::InfiniteFuture())
      : observer_(observer), method_(method), start_(absl::Now()), deadline_(deadline) {
    observer_->OnRequestStart(method_);
  }
  void Complete(const absl::Status& status) {
    observer_->OnRequestEnd(method_, status.code(), absl::Now() - start_);
    Finish(ToGrpcStatus(status));
  }
  // Counts the refusal (`why`) and completes the call with `status`.
  void Reject(Rejection why, const absl::Status& status) {
    observer_->OnReject(why);
    Complete(status);
  }
  // gRPC also cancels the call when its deadline passes. Such a call is left to the batcher's
  // deadline check, so it is dropped (and counted) as DEADLINE_EXCEEDED, not as cancelled by
  // the client; the margin covers gRPC's timer firing a little before absl::Now() reaches it.
  void OnCancel() override {
    if (absl::Now() + absl::Milliseconds(5) < deadline_) cancelled_->store(true);
  }
  void OnDone() override { delete this; }

  absl::Time start() const { return start_; }
  const std::shared_ptr<std::atomic<bool>>& cancelled() const { return cancelled_; }

 private:
  ServiceObserver* const observer_;
  const std::string_view method_;
  const absl::Time start_;
  const absl::Time deadline_;
  const std::shared_ptr<std::atomic<bool>> cancelled_ = std::make_shared<std::atomic<bool>>();
};

namespace {

std::string DocumentLabel(int index, const std::string& id) {
  if (id.empty()) return absl::StrCat("documents[", index, "]");
  return absl::StrCat("documents[", index, "] (id \"", id, "\")");
}

// EmbedStream: one response per request, in order. The reactor decides what to do under its
// lock and calls into gRPC after releasing it, so a reaction that runs inline cannot deadlock.
class StreamCall : public grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  StreamCall(EncoderService* service, grpc::CallbackServerContext* context)
      : service_(service),
        observer_(service->observer() ? service->observer() : NoopObserver()),
        deadline_(CallDeadline(*context)),
        start_(absl::Now()) {
    observer_->OnRequestStart("EmbedStream");
    reading_ = true;
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      Actions a;
      {
        absl::MutexLock lock(&mu_);
        reading_ = false;
        reads_done_ = true;
        a = DecideLocked();
      }
      Act(a);
      return;
    }
    // Reads are serialized: the next read starts only once this message is prepared. A
    // message that arrives after the stream failed (it was already pipelined) is dropped: the
    // reactor may finish at any time then, and nothing may capture it any more.
    bool dropped = false;
    Actions a;
    {
      absl::MutexLock lock(&mu_);
      dropped = !status_.ok() || finished_;
      if (dropped) {
        reading_ = false;
        a = DecideLocked();
      } else {
        preparing_ = true;
      }
    }
    if (dropped) {
      Act(a);
      return;
    }
    auto raw = std::make_shared<grpc::ByteBuffer>();
    raw->Swap(&request_);
    service_->pool().Schedule([this, raw] { PrepareAndSubmit(*raw); });
  }

  // On a WorkPool thread: decode, validate, tokenize and submit one message.
  void PrepareAndSubmit(const grpc::ByteBuffer& raw) {
    EmbedRequest request;
    Rejection why = Rejection::kInvalidArgument;
    absl::StatusOr<EncoderService::Prepared> prepared = absl::UnknownError("not prepared");
    absl::StatusOr<Runtime> runtime = service_->Acquire(&why);
    absl::Status decoded = DecodeMessage(raw, &request);
    const std::string request_id = request.request_id();
    if (runtime.ok() && decoded.ok()) prepared = service_->Prepare(request, *runtime, &why);
    absl::Status status =
        !runtime.ok() ? runtime.status() : !decoded.ok() ? decoded : prepared.status();
    auto slot = std::make_shared<Slot>();
    bool submit = false;
    if (status.ok()) {
      observer_->OnTokenization(prepared->tokenization_time);
      slot->prepared = std::move(*prepared);
      absl::MutexLock lock(&mu_);
      // The stream may have failed (cancelled) while this message was prepared.
      if (status_.ok()) {
        slots_.push_back(slot);
        ++inflight_;  // from here the reactor cannot finish before the job's callback
        submit = true;
      }
    }
    if (submit) {
      batching::Job job = std::move(slot->prepared.job);
      job.deadline = deadline_;
      job.cancelled = cancelled_;
      job.done = [this, slot](absl::StatusOr<batching::JobResult> result) {
        OnJobDone(slot, std::move(result));
      };
      status = runtime->batcher->Submit(std::move(job));
      if (status.ok()) {
        for (size_t i = 0; i < slot->prepared.num_tokens.size(); ++i) {
          observer_->OnDocument(slot->prepared.num_tokens[i], slot->prepared.truncated[i]);
        }
      } else {
        absl::MutexLock lock(&mu_);
        --inflight_;
        slots_.pop_back();
      }
    }
    Actions a;
    {
      absl::MutexLock lock(&mu_);
      reading_ = false;
      preparing_ = false;
      if (!status.ok()) {
        observer_->OnReject(IsRejection(status.code()) ? RejectionFor(status.code()) : why);
        const std::string label =
            request_id.empty() ? "" : absl::StrCat(" (request_id \"", request_id, "\")");
        FailLocked(absl::Status(status.code(), absl::StrCat("EmbedStream message ", next_index_,
                                                            label, ": ", status.message())));
      }
      ++next_index_;
      a = DecideLocked();
    }
    Act(a);
  }

  void OnWriteDone(bool ok) override {
    Actions a;
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      slots_.pop_front();
      if (!ok) FailLocked(absl::CancelledError("client stopped reading the stream"));
      a = DecideLocked();
    }
    Act(a);
  }

  void OnCancel() override {
    cancelled_->store(true);
    Actions a;
    {
      absl::MutexLock lock(&mu_);
      FailLocked(absl::CancelledError("stream cancelled by the client"));
      a = DecideLocked();
    }
    Act(a);
  }

  void OnDone() override { delete this; }

 private:
  struct Slot {
    EncoderService::Prepared prepared;
    grpc::ByteBuffer response;
    bool ready = false;
  };
  struct Actions {
    bool read = false;
    grpc::ByteBuffer* write = nullptr;
    bool finish = false;
    absl::Status status;
  };

  void OnJobDone(const std::shared_ptr<Slot>& slot, absl::StatusOr<batching::JobResult> result) {
    if (result.ok()) {
      observer_->OnQueueTime(result->queue_time);
      EmbedResponse response;
      EncoderService::FillResponse(slot->prepared, *result, absl::Now() - start_, &response);
      bool own = false;
      (void)grpc::SerializationTraits<EmbedResponse>::Serialize(response, &slot->response, &own);
    } else if (IsRejection(result.status().code())) {
      observer_->OnReject(RejectionFor(result.status().code()));
    }
    Actions a;
    {
      absl::MutexLock lock(&mu_);
      --inflight_;
      slot->ready = true;
      if (!result.ok()) FailLocked(result.status());
      a = DecideLocked();
    }
    Act(a);
  }

  void FailLocked(absl::Status status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!status_.ok()) return;  // the first error wins
    status_ = std::move(status);
    cancelled_->store(true);    // queued messages of this stream need not run any more
  }

  Actions DecideLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Actions a;
    if (finished_) return a;
    if (status_.ok()) {
      if (!writing_ && !slots_.empty() && slots_.front()->ready) {
        writing_ = true;
        a.write = &slots_.front()->response;
      }
      if (!reading_ && !reads_done_ &&
          static_cast<int64_t>(slots_.size()) < service_->limits().stream_window) {
        reading_ = true;
        a.read = true;
      }
      if (reads_done_ && slots_.empty() && !writing_ && a.write == nullptr) {
        finished_ = a.finish = true;
        a.status = absl::OkStatus();
      }
    } else if (inflight_ == 0 && !writing_ && !preparing_) {
      // The callbacks of in-flight jobs and a message being prepared point at this reactor:
      // finish only once they are back.
      finished_ = a.finish = true;
      a.status = status_;
    }
    return a;
  }

  void Act(const Actions& a) {
    if (a.write != nullptr) StartWrite(a.write);
    if (a.read) StartRead(&request_);
    if (a.finish) {
      observer_->OnRequestEnd("EmbedStream", a.status.code(), absl::Now() - start_);
      Finish(ToGrpcStatus(a.status));
    }
  }

  EncoderService* const service_;
  ServiceObserver* const observer_;
  const absl::Time deadline_;
  const absl::Time start_;
  const std::shared_ptr<std::atomic<bool>> cancelled_ = std::make_shared<std::atomic<bool>>();
  grpc::ByteBuffer request_;
  int64_t next_index_ = 0;  // index of the message in request_ (reads are serialized)

  absl::Mutex mu_;
  std::deque<std::shared_ptr<Slot>> slots_ ABSL_GUARDED_BY(mu_);  // read, not yet written
  int64_t inflight_ ABSL_GUARDED_BY(mu_) = 0;                     // submitted, not yet done
  bool reading_ ABSL_GUARDED_BY(mu_) = false;    // a read is outstanding or being prepared
  bool preparing_ ABSL_GUARDED_BY(mu_) = false;  // a WorkPool task holds this reactor
  bool reads_done_ ABSL_GUARDED_BY(mu_) = false;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status status_ ABSL_GUARDED_BY(mu_);
};

// Walks the wire format of `bytes` as message `d` and checks every string field for UTF-8.
// Whatever it cannot walk is malformed: refused here, never handed to the parser (which would
// log every invalid string it meets: a log flood any client could cause).
absl::Status CheckStrings(std::string_view bytes, const google::protobuf::Descriptor* d,
                          const std::string& path) {
  using google::protobuf::internal::WireFormatLite;
  google::protobuf::io::CodedInputStream in(reinterpret_cast<const uint8_t*>(bytes.data()),
                                            static_cast<int>(bytes.size()));
  auto malformed = [&] {
    return absl::InvalidArgumentError(absl::StrCat("malformed protobuf in ",
                                                   path.empty() ? d->full_name() : path,
                                                   " at byte ", in.CurrentPosition()));
  };
  absl::flat_hash_map<int, int> seen;  // occurrences of each repeated field
  while (true) {
    const uint32_t tag = in.ReadTag();
    if (tag == 0) {
      const bool at_end = in.CurrentPosition() == static_cast<int>(bytes.size());
      return at_end ? absl::OkStatus() : malformed();
    }
    const int number = static_cast<int>(tag >> 3);
    if (WireFormatLite::GetTagWireType(tag) != WireFormatLite::WIRETYPE_LENGTH_DELIMITED) {
      // Varints, fixed-width values and (deprecated) groups hold no string of ours.
      if (!WireFormatLite::SkipField(&in, tag)) return malformed();
      continue;
    }
    uint32_t len;
    if (!in.ReadVarint32(&len)) return malformed();
    const int pos = in.CurrentPosition();
    if (len > bytes.size() - static_cast<size_t>(pos)) return malformed();
    const std::string_view sub = bytes.substr(static_cast<size_t>(pos), len);
    in.Skip(static_cast<int>(len));
    const google::protobuf::FieldDescriptor* f = d->FindFieldByNumber(number);
    if (f == nullptr) continue;
    std::string name = path + f->name();
    if (f->is_repeated()) absl::StrAppend(&name, "[", seen[number]++, "]");
    if (f->type() == google::protobuf::FieldDescriptor::TYPE_STRING &&
        !google::protobuf::internal::IsStructurallyValidUTF8(sub.data(),
                                                             static_cast<int>(sub.size()))) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, " is not valid UTF-8 (string fields must be UTF-8)"));
    }
    if (f->type() == google::protobuf::FieldDescriptor::TYPE_MESSAGE) {
      RETURN_IF_ERROR(CheckStrings(sub, f->message_type(), name + "."));
    }
  }
}

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

absl::Status DecodeMessage(const grpc::ByteBuffer& buffer, google::protobuf::Message* message) {
  std::vector<grpc::Slice> slices;
  if (!buffer.Dump(&slices).ok()) return absl::InternalError("cannot read the request bytes");
  std::string bytes;
  bytes.reserve(buffer.Length());
  for (const grpc::Slice& s : slices) {
    bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  if (absl::Status s = CheckStrings(bytes, message->GetDescriptor(), ""); !s.ok()) return s;
  if (!message->ParseFromString(bytes)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the request is not a valid ", message->GetDescriptor()->full_name(), " message"));
  }
  return absl::OkStatus();
}

absl::Time CallDeadline(const grpc::CallbackServerContext& context) {
  const std::chrono::system_clock::time_point d = context.deadline();
  if (d >= std::chrono::system_clock::time_point::max() - std::chrono::hours(24 * 365)) {
    return absl::InfiniteFuture();
  }
  return absl::FromChrono(d);
}

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

absl::StatusOr<EncoderService::Prepared> EncoderService::Prepare(const EmbedRequest& request,
                                                                 const Runtime& runtime,
                                                                 Rejection* rejection) const {
  *rejection = Rejection::kInvalidArgument;
  const int n = request.documents_size();
  if (n == 0) {
    return absl::InvalidArgumentError("EmbedRequest.documents is empty: send at least one");
  }
  if (n > limits_.max_documents_per_request) {
    *rejection = Rejection::kTooManyDocuments;
    return absl::InvalidArgumentError(absl::StrCat(
        "EmbedRequest has ", n, " documents; the limit is ", limits_.max_documents_per_request,
        " (--max_documents_per_request, GetInfo.limits): split the request"));
  }
  Prepared p;
  switch (request.pooling()) {
    case longenc::v1::POOLING_UNSPECIFIED:
    case longenc::v1::POOLING_MEAN:
      p.job.pooling = model::Pooling::kMean;
      break;
    case longenc::v1::POOLING_CLS:
      p.job.pooling = model::Pooling::kCls;
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("pooling: unknown value ", static_cast<int>(request.pooling())));
  }
  const int over_limit = request.over_limit();
  if (over_limit != longenc::v1::OVER_LIMIT_UNSPECIFIED &&
      over_limit != longenc::v1::OVER_LIMIT_ERROR &&
      over_limit != longenc::v1::OVER_LIMIT_TRUNCATE) {
    return absl::InvalidArgumentError(absl::StrCat("over_limit: unknown value ", over_limit));
  }
  const bool truncate = over_limit == longenc::v1::OVER_LIMIT_TRUNCATE;
  p.job.normalize = request.has_normalize() ? request.normalize() : true;
  p.job.settings.attention = request.attention();
  p.job.settings.attention_options = request.attention_options();
  p.job.settings.position_mode = request.position_mode();
  if (absl::Status s = runtime.backend->ValidateSettings(p.job.settings); !s.ok()) {
    return absl::InvalidArgumentError(s.message());
  }
  const model::ModelInfo& info = runtime.backend->info();
  p.attention = request.attention().empty() ? info.default_attention : request.attention();
  p.position_mode =
      request.position_mode().empty() ? info.default_position_mode : request.position_mode();
  p.request_id = request.request_id();

  const int64_t vocab = info.vocab_size > 0 ? info.vocab_size : runtime.tokenizer->vocab_size();
  // Exact attention has its own, lower limit (its cost grows with the square of the length).
  const int64_t max_tokens =
      std::min(limits_.max_tokens_per_document, runtime.backend->MaxTokens(p.job.settings));
  const bool exact_limit = max_tokens < limits_.max_tokens_per_document;
  const int32_t sep = runtime.tokenizer->sep_id();
  p.job.documents.reserve(n);
  for (int i = 0; i < n; ++i) {
    const longenc::v1::Document& doc = request.documents(i);
    std::vector<int32_t> ids;
    switch (doc.content_case()) {
      case longenc::v1::Document::kText: {
        if (doc.text().empty()) {
          return absl::InvalidArgumentError(
              absl::StrCat(DocumentLabel(i, doc.id()), ": text is empty"));
        }
        const absl::Time t0 = absl::Now();
        absl::StatusOr<tokenizer::Encoding> enc = runtime.tokenizer->Encode(doc.text());
        p.tokenization_time += absl::Now() - t0;
        if (!enc.ok()) {
          return absl::InvalidArgumentError(
              absl::StrCat(DocumentLabel(i, doc.id()), ".text: ", enc.status().message()));
        }
        ids = std::move(enc->ids);
        break;
      }
      case longenc::v1::Document::kTokens: {
        const auto& in = doc.tokens().ids();
        if (in.empty()) {
          return absl::InvalidArgumentError(
              absl::StrCat(DocumentLabel(i, doc.id()), ": tokens.ids is empty"));
        }
        for (int j = 0; j < in.size(); ++j) {
          if (in[j] < 0 || in[j] >= vocab) {
            return absl::InvalidArgumentError(
                absl::StrCat(DocumentLabel(i, doc.id()), ".tokens.ids[", j, "] = ", in[j],
                             " is outside the vocabulary [0, ", vocab, ")"));
          }
        }
        ids.assign(in.begin(), in.end());
        break;
      }
      default:
        return absl::InvalidArgumentError(absl::StrCat(
            DocumentLabel(i, doc.id()), ": empty document (neither text nor tokens is set)"));
    }
    bool truncated = false;
    if (static_cast<int64_t>(ids.size()) > max_tokens) {
      if (!truncate) {
        *rejection = Rejection::kDocumentTooLong;
        if (exact_limit) {
          return absl::InvalidArgumentError(absl::StrCat(
              DocumentLabel(i, doc.id()), " has ", ids.size(), " tokens; attention \"",
              p.attention, "\" (exact, cost grows with the square of the length) accepts at "
              "most ", max_tokens, " (--max_exact_tokens, GetInfo.limits.max_exact_tokens). "
              "The linear-cost variants (clustered, iclustered, yoso, cast) accept up to ",
              limits_.max_tokens_per_document, "; or set over_limit=OVER_LIMIT_TRUNCATE"));
        }
        return absl::InvalidArgumentError(absl::StrCat(
            DocumentLabel(i, doc.id()), " has ", ids.size(), " tokens, over the limit of ",
            max_tokens, " (--max_tokens_per_document, GetInfo.limits): set "
            "over_limit=OVER_LIMIT_TRUNCATE to keep the first ", max_tokens,
            " or split the document"));
      }
      // Keep the head and, when the document ended with [SEP], end it with [SEP] again.
      const bool ends_with_sep = ids.back() == sep;
      ids.resize(static_cast<size_t>(max_tokens));
      if (ends_with_sep) ids.back() = sep;
      truncated = true;
    }
    p.num_tokens.push_back(static_cast<int32_t>(ids.size()));
    p.truncated.push_back(truncated);
    p.ids.push_back(doc.id());
    p.job.documents.push_back(std::move(ids));
  }
  return p;
}

void EncoderService::FillResponse(const Prepared& p, const batching::JobResult& result,
                                  absl::Duration total, EmbedResponse* response) {
  const int64_t n = static_cast<int64_t>(p.num_tokens.size());
  int64_t tokens = 0, truncated = 0;
  response->mutable_embeddings()->Reserve(static_cast<int>(n));
  for (int64_t i = 0; i < n; ++i) {
    longenc::v1::Embedding* e = response->add_embeddings();
    const float* row = result.embeddings.data() + i * result.dim;
    e->mutable_values()->Add(row, row + result.dim);
    e->set_num_tokens(p.num_tokens[i]);
    e->set_truncated(p.truncated[i]);
    e->set_id(p.ids[i]);
    tokens += p.num_tokens[i];
    truncated += p.truncated[i] ? 1 : 0;
  }
  response->set_request_id(p.request_id);
  response->set_attention(p.attention);
  response->set_position_mode(p.position_mode);
  longenc::v1::Usage* usage = response->mutable_usage();
  usage->set_documents(n);
  usage->set_tokens(tokens);
  usage->set_truncated_documents(truncated);
  longenc::v1::Timing* timing = response->mutable_timing();
  timing->set_tokenization_us(absl::ToInt64Microseconds(p.tokenization_time));
  timing->set_queue_us(absl::ToInt64Microseconds(result.queue_time));
  timing->set_inference_us(absl::ToInt64Microseconds(result.inference_time));
  timing->set_total_us(absl::ToInt64Microseconds(total));
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
  absl::StatusOr<Prepared> prepared = Prepare(request, *runtime, &why);
  if (!prepared.ok()) {
    call->Reject(why, prepared.status());
    return;
  }
  observer_->OnTokenization(prepared->tokenization_time);
  auto p = std::make_shared<Prepared>(std::move(*prepared));
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
    FillResponse(*p, *result, absl::Now() - call->start(), &response);
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
}

grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* EncoderService::EmbedStream(
    grpc::CallbackServerContext* context) {
  return new StreamCall(this, context);
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
