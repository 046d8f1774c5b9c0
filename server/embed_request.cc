#include "server/embed_request.h"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "model/chunking.h"
#include "model/prompts.h"

namespace longenc::server {
namespace {

using longenc::v1::EmbedRequest;
using longenc::v1::EmbedResponse;

std::string DocumentLabel(int index, const std::string& id) {
  if (id.empty()) return absl::StrCat("documents[", index, "]");
  return absl::StrCat("documents[", index, "] (id \"", id, "\")");
}

// The request-wide checks of EmbedRequest.chunking (docs/API.md, "Late chunking").
absl::Status CheckChunking(const EmbedRequest& request) {
  const longenc::v1::Chunking& c = request.chunking();
  if (c.spans_size() > 0) {
    if (c.max_tokens() != 0 || c.overlap_tokens() != 0) {
      return absl::InvalidArgumentError(
          "chunking: give max_tokens (with overlap_tokens) or spans, not both");
    }
    if (request.documents_size() != 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          "chunking.spans: the request has ", request.documents_size(),
          " documents; spans are byte offsets into one text, so send one document per request"));
    }
    if (c.spans_size() > kMaxChunksPerRequest) {
      return absl::InvalidArgumentError(absl::StrCat(
          "chunking.spans: ", c.spans_size(), " spans, over the limit of ", kMaxChunksPerRequest,
          " chunks per request: split the document over several requests"));
    }
    return absl::OkStatus();
  }
  if (c.max_tokens() <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "chunking.max_tokens = ", c.max_tokens(), ": must be > 0 (or give chunking.spans)"));
  }
  if (c.overlap_tokens() < 0 || c.overlap_tokens() >= c.max_tokens()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "chunking.overlap_tokens = ", c.overlap_tokens(), ": need 0 <= overlap_tokens < "
        "max_tokens (", c.max_tokens(), ")"));
  }
  return absl::OkStatus();
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
  const model::ModelInfo& info = runtime.backend->info();
  PreparedEmbed p;
  switch (request.pooling()) {
    case longenc::v1::POOLING_UNSPECIFIED:
      p.job.pooling = info.default_pooling;  // the sentence-transformers files' choice
      break;
    case longenc::v1::POOLING_MEAN:
      p.job.pooling = model::Pooling::kMean;
      break;
    case longenc::v1::POOLING_CLS:
      p.job.pooling = model::Pooling::kCls;
      break;
    case longenc::v1::POOLING_LAST_TOKEN:
      p.job.pooling = model::Pooling::kLastToken;
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
  p.job.normalize = request.has_normalize() ? request.normalize() : info.default_normalize;
  absl::StatusOr<const std::string*> prompt =
      model::FindPrompt(info, request.prompt_name(), "prompt_name");
  if (!prompt.ok()) return prompt.status();
  p.job.settings.attention = request.attention();
  p.job.settings.attention_options = request.attention_options();
  p.job.settings.position_mode = request.position_mode();
  if (absl::Status s = runtime.backend->ValidateSettings(p.job.settings); !s.ok()) {
    return absl::InvalidArgumentError(s.message());
  }
  p.attention = request.attention().empty() ? info.default_attention : request.attention();
  p.position_mode =
      request.position_mode().empty() ? info.default_position_mode : request.position_mode();
  p.request_id = request.request_id();
  const bool chunking = request.has_chunking();
  if (chunking) {
    if (absl::Status s = CheckChunking(request); !s.ok()) return s;
    p.job.chunks.resize(n);
    p.chunks.resize(n);
  }
  int64_t total_chunks = 0;

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
    std::vector<std::pair<int32_t, int32_t>> offsets;  // text documents only
    int64_t prompt_tokens = 0;  // the prompt's tokens after the leading special token
    switch (doc.content_case()) {
      case longenc::v1::Document::kText: {
        if (doc.text().empty()) {
          return absl::InvalidArgumentError(
              absl::StrCat(DocumentLabel(i, doc.id()), ": text is empty"));
        }
        const absl::Time t0 = absl::Now();
        // As text-embeddings-inference: the prompt and the text are tokenized as one string.
        absl::StatusOr<tokenizer::Encoding> enc =
            *prompt == nullptr ? runtime.tokenizer->Encode(doc.text())
                               : runtime.tokenizer->Encode(absl::StrCat(**prompt, doc.text()));
        p.tokenization_time += absl::Now() - t0;
        if (!enc.ok()) {
          return absl::InvalidArgumentError(
              absl::StrCat(DocumentLabel(i, doc.id()), ".text: ", enc.status().message()));
        }
        ids = std::move(enc->ids);
        offsets = std::move(enc->offsets);
        if (*prompt != nullptr) {
          const int64_t first = !ids.empty() && ids[0] == runtime.tokenizer->cls_id() ? 1 : 0;
          prompt_tokens =
              model::StripPromptOffsets(static_cast<int64_t>((*prompt)->size()), first, offsets);
        }
        break;
      }
      case longenc::v1::Document::kTokens: {
        if (!request.prompt_name().empty()) {
          return absl::InvalidArgumentError(absl::StrCat(
              "prompt_name '", request.prompt_name(), "' is set and ", DocumentLabel(i, doc.id()),
              " is given as token ids, which are used as given: send the text, or prepend the "
              "prompt's tokens yourself and leave prompt_name empty"));
        }
        if (chunking && request.chunking().spans_size() > 0) {
          return absl::InvalidArgumentError(absl::StrCat(
              "chunking.spans: ", DocumentLabel(i, doc.id()), " is given as token ids and "
              "spans are byte offsets into text: send the text, or use chunking.max_tokens"));
        }
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
    if (chunking) {
      const longenc::v1::Chunking& c = request.chunking();
      // The prompt's tokens, like the special tokens, belong to no chunk.
      model::TokenRange content = model::ContentTokens(ids, runtime.tokenizer->cls_id(), sep);
      content.begin = std::min(content.end, content.begin + prompt_tokens);
      std::vector<model::TokenRange> chunks;
      if (c.spans_size() > 0) {
        std::vector<std::pair<int32_t, int32_t>> spans;
        spans.reserve(c.spans_size());
        for (const longenc::v1::Offset& o : c.spans()) spans.emplace_back(o.start(), o.end());
        absl::StatusOr<std::vector<model::TokenRange>> found = model::SpanChunks(
            offsets, content, static_cast<int64_t>(doc.text().size()), spans);
        if (!found.ok()) {
          return absl::InvalidArgumentError(absl::StrCat("chunking.", found.status().message(),
                                                         " in ", DocumentLabel(i, doc.id())));
        }
        chunks = *std::move(found);
      } else {
        total_chunks += model::CountFixedChunks(content, c.max_tokens(), c.overlap_tokens());
        if (total_chunks > kMaxChunksPerRequest) {
          return absl::InvalidArgumentError(absl::StrCat(
              "chunking.max_tokens = ", c.max_tokens(), ": the request's documents up to ",
              DocumentLabel(i, doc.id()), " make ", total_chunks, " chunks, over the limit of ",
              kMaxChunksPerRequest, " per request: use larger chunks or fewer documents"));
        }
        chunks = model::FixedChunks(content, c.max_tokens(), c.overlap_tokens());
      }
      p.chunks[i].reserve(chunks.size());
      for (const model::TokenRange& r : chunks) {
        p.chunks[i].push_back({r, offsets.empty() ? std::pair<int32_t, int32_t>{0, 0}
                                                  : std::pair<int32_t, int32_t>{
                                                        offsets[r.begin].first,
                                                        offsets[r.end - 1].second}});
      }
      p.num_chunks += static_cast<int64_t>(chunks.size());
      p.job.chunks[i] = std::move(chunks);
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
    if (!p.chunks.empty() && !p.chunks[i].empty()) {
      const std::vector<PreparedEmbed::ChunkSpan>& spans = p.chunks[i];
      const std::vector<float>& vectors = result.chunk_embeddings[static_cast<size_t>(i)];
      e->mutable_chunks()->Reserve(static_cast<int>(spans.size()));
      for (size_t c = 0; c < spans.size(); ++c) {
        longenc::v1::Chunk* chunk = e->add_chunks();
        const float* v = vectors.data() + c * result.dim;
        chunk->mutable_values()->Add(v, v + result.dim);
        chunk->set_token_start(static_cast<int32_t>(spans[c].tokens.begin));
        chunk->set_token_end(static_cast<int32_t>(spans[c].tokens.end));
        chunk->set_char_start(spans[c].bytes.first);
        chunk->set_char_end(spans[c].bytes.second);
      }
    }
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
