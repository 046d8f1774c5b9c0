#include "server/embed_request.h"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace longenc::server {
namespace {

using longenc::v1::EmbedRequest;
using longenc::v1::EmbedResponse;

std::string DocumentLabel(int index, const std::string& id) {
  if (id.empty()) return absl::StrCat("documents[", index, "]");
  return absl::StrCat("documents[", index, "] (id \"", id, "\")");
}

}  // namespace

absl::StatusOr<PreparedEmbed> PrepareEmbed(const EmbedRequest& request, const Runtime& runtime,
                                           const ServiceLimits& limits, Rejection* rejection) {
  *rejection = Rejection::kInvalidArgument;
  const int n = request.documents_size();
  if (n == 0) {
    return absl::InvalidArgumentError("EmbedRequest.documents is empty: send at least one");
  }
  if (n > limits.max_documents_per_request) {
    *rejection = Rejection::kTooManyDocuments;
    return absl::InvalidArgumentError(absl::StrCat(
        "EmbedRequest has ", n, " documents; the limit is ", limits.max_documents_per_request,
        " (--max_documents_per_request, GetInfo.limits): split the request"));
  }
  PreparedEmbed p;
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
      std::min(limits.max_tokens_per_document, runtime.backend->MaxTokens(p.job.settings));
  const bool exact_limit = max_tokens < limits.max_tokens_per_document;
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
              limits.max_tokens_per_document, "; or set over_limit=OVER_LIMIT_TRUNCATE"));
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

void FillEmbedResponse(const PreparedEmbed& p, const batching::JobResult& result,
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

}  // namespace longenc::server
