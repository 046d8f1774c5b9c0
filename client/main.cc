// `longenc`: the command-line client of longenc-server.
//
//   longenc embed [TEXT ...]        texts as arguments, --file per document, --jsonl, or stdin lines
//   longenc tokenize [TEXT ...]     token ids and byte offsets
//   longenc info                    model, attention variants, device, limits (JSON)
//   longenc health                  SERVING / NOT_SERVING
//   longenc bench                   closed- or open-loop load with latency percentiles
//
// Exit codes (docs/API.md): 0 ok, 1 unexpected failure, 2 usage error, 3 input error,
// 4 server unreachable / unavailable / deadline exceeded, 5 request rejected by the server,
// 6 health not serving, 130 embed interrupted (Ctrl-C; the resume command is printed).
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <string>
#include <system_error>
#include <unordered_set>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "common/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/batch_embed.h"
#include "client/bench.h"
#include "client/client.h"
#include "client/embed_input.h"
#include "client/embed_report.h"
#include "client/output.h"
#include "client/resume.h"
#include "google/protobuf/util/json_util.h"
#include "nlohmann/json.hpp"

ABSL_FLAG(std::string, server, "127.0.0.1:50051",
          "Server address: HOST:PORT, several comma-separated (round robin), a DNS name whose "
          "addresses are balanced round robin, or a gRPC target (dns:///, ipv4:, unix:).");
ABSL_FLAG(bool, tls, false,
          "Connect with TLS, trusting the system's CA roots (implied by --tls_ca, --tls_cert).");
ABSL_FLAG(std::string, tls_ca, "",
          "TLS: PEM file of the CA that signed the server's certificate (implies --tls).");
ABSL_FLAG(std::string, tls_cert, "",
          "Mutual TLS: this client's certificate chain (PEM); needs --tls_key.");
ABSL_FLAG(std::string, tls_key, "", "Mutual TLS: the private key (PEM) of --tls_cert.");
ABSL_FLAG(std::string, tls_server_name, "",
          "TLS: the name to check the server's certificate against, when it differs from the "
          "host of --server (e.g. connecting by IP to a certificate for a DNS name).");
ABSL_FLAG(std::string, api_key, "",
          "API key, sent as 'authorization: Bearer KEY'. Empty: $LONGENC_API_KEY (keeps the key "
          "out of shell history and ps).");
ABSL_FLAG(absl::Duration, timeout, absl::Seconds(120),
          "Deadline of each call (e.g. 30s, 5m); embed: of each attempt of each batch (a batch "
          "over it is split in halves).");
ABSL_FLAG(std::string, format, "jsonl",
          "Output of embed: json (one array), jsonl (one object a line), npy (float32 [N, dim]); "
          "with --chunk/--spans one row per chunk: {id, chunk, chunks, token_start, token_end, "
          "char_start, char_end, embedding}, or for npy the vectors in FILE and the other fields "
          "in FILE.rows.jsonl (npy then needs --output); bench: text or json.");
ABSL_FLAG(std::string, output, "-",
          "Output file of embed ('-' = stdout). Written in input order as batches finish; "
          "npy rows of failed documents are NaN.");
ABSL_FLAG(std::vector<std::string>, file, {},
          "embed: files whose whole content is one document each (comma-separated).");
ABSL_FLAG(std::string, jsonl, "",
          "embed: JSONL file ('-' = stdin) of {\"text\": ...} or {\"token_ids\": [...]} with an "
          "optional \"id\" per line (default id: the document's position). Read a line at a "
          "time; a line that cannot be read fails in its place and the run goes on.");
ABSL_FLAG(int64_t, chunk, 0,
          "embed: late chunks of this many content tokens (EmbedRequest.chunking.max_tokens): "
          "the output has one row per chunk instead of one per document (see --format). 0 = "
          "document embeddings only.");
ABSL_FLAG(int64_t, overlap, 0,
          "embed: with --chunk, tokens each chunk shares with the one before it "
          "(0 <= overlap < chunk).");
ABSL_FLAG(bool, spans, false,
          "embed: late chunks over the caller's spans: every --jsonl line is {\"text\": ..., "
          "\"spans\": [[start, end], ...]} (UTF-8 byte offsets into the text, ordered); one "
          "row per span, each document sent alone.");
ABSL_FLAG(std::string, prompt_name, "",
          "embed: the model's prompt to prepend to every text (GetInfo.prompts; empty = the "
          "model's default_prompt_name, if any).");
ABSL_FLAG(std::string, pooling, "model",
          "model (the server's model decides: its sentence-transformers pooling, else mean), "
          "mean, cls or last.");
ABSL_FLAG(std::string, normalize, "model",
          "model (the server's model decides: normalised unless its sentence-transformers files "
          "have no Normalize module), true or false: L2-normalise the embeddings.");
ABSL_FLAG(bool, truncate, false,
          "Truncate documents over the server's token limit instead of failing.");
ABSL_FLAG(std::string, attention, "", "Attention variant (empty = server default).");
ABSL_FLAG(std::string, attention_options, "", "Options of the variant, key=value,...");
ABSL_FLAG(std::string, position_mode, "", "Long-document mode (empty = server default).");
ABSL_FLAG(int64_t, batch_documents, 16,
          "embed: at most this many documents per call (lowered to the server's "
          "max_documents_per_request).");
ABSL_FLAG(int64_t, batch_tokens, 16384,
          "embed: at most about this many tokens per call (text counted as UTF-8 bytes / 3 + 2, "
          "token_ids exactly); a longer document is a call of its own.");
ABSL_FLAG(int, in_flight, 2, "embed: calls (batches) in flight at once.");
ABSL_FLAG(int, retries, 5,
          "embed: retries of a batch refused with UNAVAILABLE or RESOURCE_EXHAUSTED, waiting "
          "--backoff, then twice as long each time (at most 30s), with random jitter, or as long "
          "as the server's grpc-retry-pushback-ms asks.");
ABSL_FLAG(absl::Duration, backoff, absl::Milliseconds(500), "embed: wait before the first retry.");
ABSL_FLAG(bool, resume, false,
          "embed: continue an earlier run into the same --output (jsonl or npy): documents "
          "already there are skipped (jsonl: by id; npy: rows that are not NaN), the rest are "
          "embedded (jsonl: appended; npy: written into their rows).");
ABSL_FLAG(std::string, progress, "auto",
          "Progress of embed on stderr (documents done / total, failed, tokens/s): auto (when "
          "stderr is a terminal and there are 64 documents or more), always, never.");
ABSL_FLAG(std::string, service, "", "health: service name to check ('' = whole server).");
ABSL_FLAG(int, concurrency, 1, "bench: calls in flight (closed loop).");
ABSL_FLAG(double, rate, 0, "bench: calls per second (open loop when > 0).");
ABSL_FLAG(int64_t, requests, 200, "bench: calls to make (0 = until --duration).");
ABSL_FLAG(absl::Duration, duration, absl::ZeroDuration(), "bench: stop starting calls after.");
ABSL_FLAG(int64_t, warmup, 4, "bench: unmeasured calls before the run.");
ABSL_FLAG(std::vector<std::string>, length, {"512"},
          "bench: tokens per generated document ([CLS] and [SEP] included); a list "
          "(e.g. 128,512,4096) mixes lengths, cycled through.");
ABSL_FLAG(int, docs_per_request, 1, "bench: documents per call.");
ABSL_FLAG(std::string, bench_file, "",
          "bench: documents from this file (one text per line, tokenized by the server) instead "
          "of generated ones.");
ABSL_FLAG(uint64_t, seed, 1, "bench: seed of the generated documents.");

namespace longenc::client {
namespace {

enum Exit { kOk = 0, kFailure = 1, kUsage = 2, kInput = 3, kUnreachable = 4, kRejected = 5,
            kNotServing = 6, kInterrupted = 130 };

// The exit code of a failed call.
int ExitCode(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
      return kUnreachable;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kResourceExhausted:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kUnimplemented:
    case absl::StatusCode::kUnauthenticated:
    case absl::StatusCode::kPermissionDenied:
      return kRejected;
    default:
      return kFailure;
  }
}

int Report(const absl::Status& s, const std::string& what) {
  std::fprintf(stderr, "longenc: %s: %s: %s\n", what.c_str(),
               absl::StatusCodeToString(s.code()).c_str(), std::string(s.message()).c_str());
  return ExitCode(s);
}

int InputError(const std::string& message) {
  std::fprintf(stderr, "longenc: input: %s\n", message.c_str());
  return kInput;
}

// A channel that cannot be set up: a bad flag or file is a usage error (2), not the server's.
int ConnectFailed(const absl::Status& s) {
  if (s.code() != absl::StatusCode::kInvalidArgument) return Report(s, "connect");
  std::fprintf(stderr, "longenc: %s\n", std::string(s.message()).c_str());
  return kUsage;
}

absl::StatusOr<std::unique_ptr<Client>> Connect(bool skip_unhealthy = true) {
  ConnectOptions o;
  o.skip_unhealthy = skip_unhealthy;
  o.servers = absl::GetFlag(FLAGS_server);
  o.timeout = absl::GetFlag(FLAGS_timeout);
  o.tls = absl::GetFlag(FLAGS_tls);
  o.tls_ca = absl::GetFlag(FLAGS_tls_ca);
  o.tls_cert = absl::GetFlag(FLAGS_tls_cert);
  o.tls_key = absl::GetFlag(FLAGS_tls_key);
  o.tls_server_name = absl::GetFlag(FLAGS_tls_server_name);
  o.api_key = absl::GetFlag(FLAGS_api_key);
  if (o.api_key.empty()) {
    const char* env = std::getenv("LONGENC_API_KEY");
    if (env != nullptr) o.api_key = env;
  }
  return Client::Connect(o);
}

absl::StatusOr<longenc::v1::EmbedRequest> RequestOptions() {
  longenc::v1::EmbedRequest r;
  const std::string pooling = absl::GetFlag(FLAGS_pooling);
  if (pooling == "mean") {
    r.set_pooling(longenc::v1::POOLING_MEAN);
  } else if (pooling == "cls") {
    r.set_pooling(longenc::v1::POOLING_CLS);
  } else if (pooling == "last") {
    r.set_pooling(longenc::v1::POOLING_LAST_TOKEN);
  } else if (pooling != "model") {
    return absl::InvalidArgumentError(
        absl::StrCat("--pooling=", pooling, ": model, mean, cls or last"));
  }
  const std::string normalize = absl::GetFlag(FLAGS_normalize);
  if (normalize == "true" || normalize == "false") {
    r.set_normalize(normalize == "true");
  } else if (normalize != "model") {
    return absl::InvalidArgumentError(
        absl::StrCat("--normalize=", normalize, ": model, true or false"));
  }
  if (absl::GetFlag(FLAGS_truncate)) r.set_over_limit(longenc::v1::OVER_LIMIT_TRUNCATE);
  r.set_attention(absl::GetFlag(FLAGS_attention));
  r.set_attention_options(absl::GetFlag(FLAGS_attention_options));
  r.set_position_mode(absl::GetFlag(FLAGS_position_mode));
  r.set_prompt_name(absl::GetFlag(FLAGS_prompt_name));
  const int64_t chunk = absl::GetFlag(FLAGS_chunk), overlap = absl::GetFlag(FLAGS_overlap);
  if (chunk < 0 || chunk > std::numeric_limits<int32_t>::max()) {
    return absl::InvalidArgumentError(absl::StrCat("--chunk=", chunk, ": must be >= 0"));
  }
  if (overlap != 0 && (chunk == 0 || overlap < 0 || overlap >= chunk)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--overlap=", overlap, ": needs --chunk and 0 <= overlap < chunk (", chunk, ")"));
  }
  if (chunk > 0 && absl::GetFlag(FLAGS_spans)) {
    return absl::InvalidArgumentError("--chunk and --spans: give one of them");
  }
  if (chunk > 0) {
    r.mutable_chunking()->set_max_tokens(static_cast<int32_t>(chunk));
    r.mutable_chunking()->set_overlap_tokens(static_cast<int32_t>(overlap));
  }
  return r;
}

// Set by the first SIGINT/SIGTERM during embed: the run stops after the calls in flight and
// says how to resume; the handler resets itself, so a second one ends the process at once.
std::atomic<bool> interrupted{false};

void OnInterrupt(int) {
  interrupted = true;
  constexpr char kMessage[] =
      "\nlongenc: interrupted: finishing the calls in flight (again to quit at once)\n";
  (void)!write(2, kMessage, sizeof kMessage - 1);
}

void CatchInterrupts() {
  struct sigaction action = {};
  action.sa_handler = OnInterrupt;
  action.sa_flags = SA_RESETHAND;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
}

// Where embed writes: a new file (or stdout), or with --resume the earlier output, whose
// documents `input` then skips.
struct EmbedOutput {
  std::ofstream file;
  std::fstream npy_file;
  std::ofstream sidecar;  // chunk rows in npy: the rows' metadata
  std::unique_ptr<EmbeddingWriter> writer;
};

// --chunk/--spans: one row per chunk (common/chunk_rows.h). npy rows are appended as documents
// finish (the header is rewritten each time), so the output must be a file; --resume keeps the
// whole documents already written and embeds the others.
absl::Status OpenChunkOutput(const std::string& format, const std::string& output, bool resume,
                             int64_t dim, EmbedInput& input, EmbedOutput* out) {
  const auto skip = [&input](std::unordered_set<std::string> ids) {
    input.SetSkip([ids = std::move(ids)](const InputDocument& d) {
      return d.input_error.ok() && ids.count(d.document.id()) > 0;
    });
  };
  if (format == "npy") {  // to a file (checked by Embed)
    const std::string sidecar = ChunkRowsSidecar(output);
    int64_t rows = 0;
    std::error_code ec;
    if (resume && std::filesystem::exists(output, ec)) {
      absl::StatusOr<ChunkRowsResume> r = PrepareNpyChunkResume(output);
      if (!r.ok()) return r.status();
      if (r->dim != dim) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--resume: ", output, " has rows of width ", r->dim, ", the server's are ", dim));
      }
      rows = r->rows;
      skip(std::move(r->ids));
      out->npy_file.open(output, std::ios::binary | std::ios::in | std::ios::out);
      out->sidecar.open(sidecar, std::ios::binary | std::ios::app);
    } else {
      out->npy_file.open(output,
                         std::ios::binary | std::ios::in | std::ios::out | std::ios::trunc);
      out->sidecar.open(sidecar, std::ios::binary | std::ios::trunc);
    }
    if (!out->npy_file || !out->sidecar) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot write --output ", output, " and ", sidecar));
    }
    out->writer = NewChunkRowsWriter(
        NewNpyChunkRowWriter(&out->npy_file, &out->sidecar, dim, rows));
    return absl::OkStatus();
  }
  if (resume) {
    absl::StatusOr<ChunkRowsResume> r = PrepareJsonlChunkResume(output);
    if (!r.ok()) return r.status();
    skip(std::move(r->ids));
    out->file.open(output, std::ios::binary | std::ios::app);
  } else if (output != "-") {
    out->file.open(output, std::ios::binary | std::ios::trunc);
  }
  if (output != "-" && !out->file) {
    return absl::InvalidArgumentError("cannot write --output " + output);
  }
  absl::StatusOr<std::unique_ptr<ChunkRowWriter>> rows = NewChunkRowWriter(
      format, output == "-" ? static_cast<std::ostream*>(&std::cout) : &out->file);
  if (!rows.ok()) return rows.status();
  out->writer = NewChunkRowsWriter(std::move(*rows));
  return absl::OkStatus();
}

absl::Status OpenOutput(const std::string& format, const std::string& output, bool resume,
                        int64_t dim, EmbedInput& input, EmbedOutput* out) {
  if (resume && format == "jsonl") {
    absl::StatusOr<std::unordered_set<std::string>> ids = PrepareJsonlResume(output);
    if (!ids.ok()) return ids.status();
    input.SetSkip([ids = std::move(*ids)](const InputDocument& d) {
      return d.input_error.ok() && ids.count(d.document.id()) > 0;
    });
    out->file.open(output, std::ios::binary | std::ios::app);
  } else if (resume) {
    absl::StatusOr<NpyResume> npy = PrepareNpyResume(output);
    if (!npy.ok()) return npy.status();
    if (npy->rows != input.total() || npy->dim != dim) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--resume: ", output, " holds [", npy->rows, ", ", npy->dim, "] but this input has ",
          input.total(), " documents of width ", dim, ": not an output of this command"));
    }
    input.SetSkip([missing = npy->missing](const InputDocument& d) {
      return !missing[static_cast<size_t>(d.index)];
    });
    out->npy_file.open(output, std::ios::binary | std::ios::in | std::ios::out);
    if (!out->npy_file) return absl::InvalidArgumentError("cannot write --output " + output);
    out->writer = NewNpyPatcher(&out->npy_file, npy->data_offset, npy->rows, npy->dim);
    return absl::OkStatus();
  } else if (output != "-") {
    out->file.open(output, std::ios::binary | std::ios::trunc);
  }
  if (output != "-" && !out->file) {
    return absl::InvalidArgumentError("cannot write --output " + output);
  }
  absl::StatusOr<std::unique_ptr<EmbeddingWriter>> w = NewEmbeddingWriter(
      format, output == "-" ? static_cast<std::ostream*>(&std::cout) : &out->file,
      input.total(), dim);
  if (!w.ok()) return w.status();
  out->writer = std::move(*w);
  return absl::OkStatus();
}

int Embed(const std::vector<std::string>& args, const std::vector<std::string>& argv) {
  const std::string format = absl::GetFlag(FLAGS_format);
  if (format != "json" && format != "jsonl" && format != "npy") {
    std::fprintf(stderr, "longenc: --format=%s: embed writes json, jsonl or npy\n",
                 format.c_str());
    return kUsage;
  }
  absl::StatusOr<longenc::v1::EmbedRequest> options = RequestOptions();
  if (!options.ok()) {
    std::fprintf(stderr, "longenc: %s\n", std::string(options.status().message()).c_str());
    return kUsage;
  }
  const std::string output = absl::GetFlag(FLAGS_output);
  const bool resume = absl::GetFlag(FLAGS_resume);
  if (resume && (output == "-" || format == "json")) {
    std::fprintf(stderr, "longenc: --resume continues an --output file of format jsonl or npy\n");
    return kUsage;
  }
  BatchOptions batch;
  batch.max_documents = absl::GetFlag(FLAGS_batch_documents);
  batch.max_tokens = absl::GetFlag(FLAGS_batch_tokens);
  batch.in_flight = absl::GetFlag(FLAGS_in_flight);
  batch.retries = absl::GetFlag(FLAGS_retries);
  batch.backoff = absl::GetFlag(FLAGS_backoff);
  batch.interrupted = &interrupted;
  if (batch.max_documents < 1 || batch.max_tokens < 1 || batch.in_flight < 1 ||
      batch.retries < 0 || batch.backoff < absl::ZeroDuration()) {
    std::fprintf(stderr,
                 "longenc: --batch_documents, --batch_tokens and --in_flight must be >= 1, "
                 "--retries and --backoff >= 0\n");
    return kUsage;
  }
  const bool chunk_rows = options->has_chunking() || absl::GetFlag(FLAGS_spans);
  InputSpec spec;
  spec.texts = args;
  spec.files = absl::GetFlag(FLAGS_file);
  spec.jsonl = absl::GetFlag(FLAGS_jsonl);
  spec.need_total = format == "npy" && !chunk_rows;
  spec.spans = absl::GetFlag(FLAGS_spans);
  if (spec.spans && spec.jsonl.empty()) {
    std::fprintf(stderr, "longenc: --spans reads each document's spans from --jsonl lines\n");
    return kUsage;
  }
  if (chunk_rows && format == "npy" && output == "-") {
    std::fprintf(stderr,
                 "longenc: --format=npy with --chunk/--spans writes a file: give --output=FILE "
                 "(the vectors; the rows' ids and offsets go to FILE.rows.jsonl)\n");
    return kUsage;
  }
  absl::StatusOr<std::unique_ptr<EmbedInput>> opened = EmbedInput::Open(spec);
  if (!opened.ok()) return InputError(std::string(opened.status().message()));
  EmbedInput& input = **opened;
  if (input.total() == 0) return InputError("no documents (give texts, --file, --jsonl or stdin)");

  auto client = Connect();
  if (!client.ok()) return ConnectFailed(client.status());
  // The width of the rows and the server's limits; retried like a batch (a server starting up).
  absl::StatusOr<longenc::v1::GetInfoResponse> info = (*client)->GetInfo();
  for (int attempt = 0; !info.ok() && IsRetryable(info.status().code()) && attempt < batch.retries;
       ++attempt) {
    absl::SleepFor(RetryDelay(batch, attempt, absl::ZeroDuration(), 0.5));
    info = (*client)->GetInfo();
  }
  if (!info.ok()) return Report(info.status(), "info");
  if (info->limits().max_documents_per_request() > 0) {
    batch.max_documents = std::min(batch.max_documents, info->limits().max_documents_per_request());
  }

  EmbedOutput out;
  if (absl::Status s = chunk_rows ? OpenChunkOutput(format, output, resume,
                                                    info->embedding_dim(), input, &out)
                                   : OpenOutput(format, output, resume, info->embedding_dim(),
                                                input, &out);
      !s.ok()) {
    return InputError(std::string(s.message()));
  }
  EmbeddingWriter* writer = out.writer.get();

  // The first document read ahead: an empty stdin is an input error.
  InputDocument first;
  const bool has_first = input.Next(&first);
  const std::string progress_flag = absl::GetFlag(FLAGS_progress);
  Progress progress(progress_flag == "always" ||
                        (progress_flag == "auto" && isatty(2) &&
                         (input.total() < 0 || input.total() >= 64)),
                    input.total());
  int64_t done = 0, failed = 0, tokens = 0, own_failures = 0;
  LineRanges failed_lines;
  std::vector<std::string> failed_other;  // arguments and files
  std::vector<std::string> messages;      // the first few reasons
  constexpr size_t kMaxMessages = 10;
  auto sink = [&](const InputDocument& d,
                  const absl::StatusOr<longenc::v1::Embedding>& e) -> absl::Status {
    absl::Status s = e.ok() ? writer->Write(d.index, *e) : writer->Fail(d.index);
    ++done;
    if (e.ok()) {
      tokens += e->num_tokens();
    } else {
      ++failed;
      if (input.IsLine(d)) {
        failed_lines.Add(d.line);
      } else {
        failed_other.push_back(input.Where(d));
      }
      // What stopped the run is said once, below; rejections and bad lines one by one.
      const bool own = !d.input_error.ok() || IsDocumentRejection(e.status().code());
      if (own) ++own_failures;
      if (own && messages.size() < kMaxMessages) {
        const std::string code = d.input_error.ok()
                                     ? absl::StatusCodeToString(e.status().code()) + ": "
                                     : std::string("input: ");
        messages.push_back(absl::StrCat(input.Where(d), ": ", code, e.status().message()));
      }
    }
    progress.Update(done, input.skipped(), failed, tokens);
    return s;
  };
  bool first_pending = has_first;
  auto next = [&](InputDocument* d) {
    if (first_pending) {
      *d = std::move(first);
      first_pending = false;
      return true;
    }
    return input.Next(d);
  };
  EmbedCall call = [&client](const longenc::v1::EmbedRequest& request) {
    CallOutcome outcome;
    outcome.response = (*client)->Embed(request, &outcome.retry_after);
    return outcome;
  };
  CatchInterrupts();
  const BatchSummary summary = EmbedInBatches(next, *options, call, batch, sink);
  absl::Status finished = writer->Finish();
  progress.Update(done, input.skipped(), failed, tokens, /*last=*/true);
  if (!has_first && input.skipped() == 0) {
    return InputError("no documents (give texts, --file, --jsonl or stdin)");
  }

  if (summary.max_documents < batch.max_documents || summary.max_tokens < batch.max_tokens) {
    std::fprintf(stderr,
                 "longenc: embed: batches exceeded --timeout and were cut to %lld documents / "
                 "%lld tokens (raise --timeout or lower --batch_documents, --batch_tokens)\n",
                 static_cast<long long>(summary.max_documents),
                 static_cast<long long>(summary.max_tokens));
  }
  if (summary.retries > 0) {
    std::fprintf(stderr, "longenc: embed: %lld retries (UNAVAILABLE or RESOURCE_EXHAUSTED)\n",
                 static_cast<long long>(summary.retries));
  }
  // What failed and how to go on.
  for (const std::string& m : messages) std::fprintf(stderr, "longenc: embed: %s\n", m.c_str());
  if (own_failures > static_cast<int64_t>(messages.size())) {
    std::fprintf(stderr, "longenc: embed: ... and %lld more failed documents\n",
                 static_cast<long long>(own_failures - messages.size()));
  }
  const bool stopped = !summary.stop.ok();
  if (stopped) {
    std::string why(summary.stop.message());
    if (summary.stop.code() == absl::StatusCode::kDeadlineExceeded) {
      why += " (one document took longer than --timeout: raise it)";
    }
    std::fprintf(stderr, "longenc: embed: stopped: %s: %s\n",
                 absl::StatusCodeToString(summary.stop.code()).c_str(), why.c_str());
  }
  const bool unsent = stopped && summary.first_unsent_index >= 0;
  InputDocument first_unsent;
  first_unsent.index = summary.first_unsent_index;
  first_unsent.line = summary.first_unsent_line;
  if (unsent && input.IsLine(first_unsent)) {
    failed_lines.AddFrom(first_unsent.line);
  } else if (unsent) {  // an argument or --file: it and everything after it
    failed_other.push_back(absl::StrCat(input.Where(first_unsent), " and all after it"));
  }
  if (failed > 0 || unsent) {
    std::vector<std::string> where = failed_other;
    if (!failed_lines.empty()) {
      where.push_back(absl::StrCat(input.line_source(), " lines ", failed_lines.ToString()));
    }
    std::fprintf(stderr, "longenc: embed: %lld embedded, %lld failed%s; not embedded: %s\n",
                 static_cast<long long>(done - failed), static_cast<long long>(failed),
                 unsent ? ", the rest not sent" : "",
                 absl::StrJoin(where, "; ").c_str());
    if (output == "-") {
      std::fprintf(stderr,
                   "longenc: embed: to be able to resume, write to a file: --output=FILE "
                   "(then the same command with --resume embeds only what FILE lacks)\n");
    } else if (format == "json") {
      std::fprintf(stderr,
                   "longenc: embed: json output cannot be resumed; use --format=jsonl or npy\n");
    } else {
      std::fprintf(stderr, "longenc: embed: to resume (embeds only what %s lacks):\n  %s\n",
                   output.c_str(), ResumeCommand(argv).c_str());
      if (!absl::GetFlag(FLAGS_api_key).empty()) {
        std::fprintf(stderr, "  (--api_key left out: give it through $LONGENC_API_KEY)\n");
      }
    }
  }
  if (!finished.ok() && summary.stop.code() != absl::StatusCode::kDataLoss) {
    return Report(finished, "output");
  }
  if (stopped) {
    if (summary.stop.code() == absl::StatusCode::kCancelled) return kInterrupted;
    // DATA_LOSS: the output could not be written (said above).
    return summary.stop.code() == absl::StatusCode::kDataLoss ? kFailure : ExitCode(summary.stop);
  }
  if (summary.rejected > 0) return kRejected;
  if (failed > 0) return kInput;
  return kOk;
}

int Tokenize(const std::vector<std::string>& args) {
  std::vector<std::string> texts = args;
  if (texts.empty()) {
    std::string line;
    while (std::getline(std::cin, line)) texts.push_back(line);
  }
  for (size_t i = 0; i < texts.size(); ++i) {
    size_t bad = 0;
    if (!IsValidUtf8(texts[i], &bad)) {
      return InputError(absl::StrCat("text ", i + 1, " is not valid UTF-8 (byte ", bad, ")"));
    }
  }
  if (texts.empty()) return InputError("no texts (give them as arguments or on stdin)");
  auto client = Connect();
  if (!client.ok()) return ConnectFailed(client.status());
  absl::StatusOr<longenc::v1::TokenizeResponse> r = (*client)->Tokenize(texts);
  if (!r.ok()) return Report(r.status(), "tokenize");
  for (const auto& t : r->results()) {
    nlohmann::json j;
    j["ids"] = std::vector<int32_t>(t.ids().begin(), t.ids().end());
    nlohmann::json offsets = nlohmann::json::array();
    for (const auto& o : t.offsets()) offsets.push_back({o.start(), o.end()});
    j["offsets"] = offsets;
    std::cout << j.dump() << "\n";
  }
  return kOk;
}

int Info() {
  auto client = Connect();
  if (!client.ok()) return ConnectFailed(client.status());
  absl::StatusOr<longenc::v1::GetInfoResponse> info = (*client)->GetInfo();
  if (!info.ok()) return Report(info.status(), "info");
  std::string json;
  google::protobuf::util::JsonPrintOptions o;
  o.add_whitespace = true;
  o.preserve_proto_field_names = true;
  o.always_print_primitive_fields = true;
  (void)google::protobuf::util::MessageToJsonString(*info, &json, o);
  std::cout << json;
  return kOk;
}

int HealthCommand() {
  auto client = Connect(/*skip_unhealthy=*/false);
  if (!client.ok()) return ConnectFailed(client.status());
  absl::StatusOr<Health> h = (*client)->CheckHealth(absl::GetFlag(FLAGS_service));
  if (!h.ok()) return Report(h.status(), "health");
  const char* name = *h == Health::kServing      ? "SERVING"
                     : *h == Health::kNotServing ? "NOT_SERVING"
                                                 : "UNKNOWN";
  std::cout << name << "\n";
  return *h == Health::kServing ? kOk : kNotServing;
}

int Bench() {
  BenchOptions o;
  o.concurrency = absl::GetFlag(FLAGS_concurrency);
  o.rate = absl::GetFlag(FLAGS_rate);
  o.requests = absl::GetFlag(FLAGS_requests);
  o.duration = absl::GetFlag(FLAGS_duration);
  o.warmup = absl::GetFlag(FLAGS_warmup);
  o.docs_per_request = absl::GetFlag(FLAGS_docs_per_request);
  absl::StatusOr<longenc::v1::EmbedRequest> options = RequestOptions();
  if (!options.ok()) {
    std::fprintf(stderr, "longenc: %s\n", std::string(options.status().message()).c_str());
    return kUsage;
  }
  o.options = *options;
  auto client = Connect();
  if (!client.ok()) return ConnectFailed(client.status());
  const std::string bench_file = absl::GetFlag(FLAGS_bench_file);
  if (!bench_file.empty()) {
    // Tokenize the file's lines once through the server, so calls carry ids like generated ones.
    std::ifstream in(bench_file);
    if (!in) return InputError(absl::StrCat("cannot read --bench_file ", bench_file));
    std::vector<std::string> lines;
    std::string line;
    while (std::getline(in, line)) {
      if (!line.empty()) lines.push_back(line);
    }
    for (size_t i = 0; i < lines.size(); i += 64) {
      std::vector<std::string> chunk(lines.begin() + i,
                                     lines.begin() + std::min(lines.size(), i + 64));
      absl::StatusOr<longenc::v1::TokenizeResponse> t = (*client)->Tokenize(chunk);
      if (!t.ok()) return Report(t.status(), "tokenize --bench_file");
      for (const auto& r : t->results()) o.documents.emplace_back(r.ids().begin(), r.ids().end());
    }
  } else {
    const std::vector<std::string> lengths = absl::GetFlag(FLAGS_length);
    for (size_t i = 0; i < lengths.size(); ++i) {
      int64_t length = 0;
      if (!absl::SimpleAtoi(lengths[i], &length) || length < 2) {
        std::fprintf(stderr, "longenc: --length=%s: lengths must be integers >= 2\n",
                     lengths[i].c_str());
        return kUsage;
      }
      // 64 documents per length, interleaved so that consecutive calls mix lengths.
      const auto docs = GeneratedDocuments(64, length, absl::GetFlag(FLAGS_seed) + i);
      for (size_t k = 0; k < docs.size(); ++k) {
        o.documents.insert(o.documents.begin() + std::min(o.documents.size(), k * (i + 1) + i),
                           docs[k]);
      }
    }
  }
  absl::StatusOr<BenchResult> r = RunBench(**client, o);
  if (!r.ok()) return Report(r.status(), "bench");
  const std::string format = absl::GetFlag(FLAGS_format);
  std::cout << (format == "json" ? BenchReportJson(o, *r) + "\n" : BenchReport(o, *r));
  return r->ok == r->requests ? kOk : kRejected;
}

int Run(int argc, char** argv) {
  InstallUsage(
      "longenc",
      "longenc: client of longenc-server.\n"
      "  longenc embed [TEXT ...]   (or --file, --jsonl, stdin lines) -> --format json|jsonl|npy\n"
      "      Sent in batches (--batch_documents, --batch_tokens), --in_flight at once, each with\n"
      "      its own --timeout, retried (--retries, --backoff) on UNAVAILABLE and\n"
      "      RESOURCE_EXHAUSTED, split in halves on DEADLINE_EXCEEDED; results written in\n"
      "      input order as batches finish. A document the server rejects (or an unreadable\n"
      "      line) fails alone and the run goes on; any other error stops it (Ctrl-C too:\n"
      "      the calls in flight finish). Failed lines are listed on stderr with the command that\n"
      "      resumes the run (--resume: embeds only what --output lacks). Exit code != 0 when\n"
      "      any document failed.\n"
      "      Late chunks: --chunk=256 --overlap=32 (fixed-size chunks of content tokens) or\n"
      "      --spans (per-line \"spans\": [[start, end], ...] byte ranges of the text) write one\n"
      "      row per chunk: id, chunk, chunks, token_start, token_end, char_start, char_end,\n"
      "      embedding (npy: vectors in --output, the rest in --output.rows.jsonl); each chunk\n"
      "      is pooled from the one pass over its whole document (docs/API.md, Late chunking).\n"
      "  longenc tokenize [TEXT ...]\n"
      "  longenc info\n"
      "  longenc health\n"
      "  longenc bench [--concurrency=C | --rate=R] [--requests=N] [--duration=D]\n"
      "Exit codes: 0 ok, 1 failure, 2 usage, 3 input, 4 server unreachable/unavailable/"
      "deadline, 5 rejected by the server, 6 not serving, 130 embed interrupted (Ctrl-C: the\n"
      "calls in flight finish and the resume command is printed; a second Ctrl-C quits).",
      {"client/main.cc"});
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  if (rest.size() < 2) {
    std::fprintf(stderr, "%s\n", absl::ProgramUsageMessage().data());
    return kUsage;
  }
  const std::string command = rest[1];
  const std::vector<std::string> args(rest.begin() + 2, rest.end());
  if (command == "embed") return Embed(args, std::vector<std::string>(argv, argv + argc));
  if (command == "tokenize") return Tokenize(args);
  if (command == "info") return Info();
  if (command == "health") return HealthCommand();
  if (command == "bench") return Bench();
  std::fprintf(stderr, "longenc: unknown command '%s' (embed, tokenize, info, health, bench)\n",
               command.c_str());
  return kUsage;
}

}  // namespace
}  // namespace longenc::client

int main(int argc, char** argv) { return longenc::client::Run(argc, argv); }
