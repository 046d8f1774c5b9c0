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
// 6 health not serving.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "common/usage.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "client/bench.h"
#include "client/client.h"
#include "client/output.h"
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
ABSL_FLAG(absl::Duration, timeout, absl::Seconds(120), "Deadline of each call (e.g. 30s, 5m).");
ABSL_FLAG(std::string, format, "jsonl",
          "Output of embed: json (one array), jsonl (one object a line), npy (float32 [N, dim]); "
          "bench: text or json.");
ABSL_FLAG(std::string, output, "-", "Output file of embed ('-' = stdout).");
ABSL_FLAG(std::vector<std::string>, file, {},
          "embed: files whose whole content is one document each (comma-separated).");
ABSL_FLAG(std::string, jsonl, "",
          "embed: JSONL file ('-' = stdin) of {\"text\": ...} or {\"token_ids\": [...]} with an "
          "optional \"id\" per line.");
ABSL_FLAG(std::string, pooling, "mean", "mean or cls.");
ABSL_FLAG(bool, normalize, true, "L2-normalise embeddings (--nonormalize to disable).");
ABSL_FLAG(bool, truncate, false,
          "Truncate documents over the server's token limit instead of failing.");
ABSL_FLAG(std::string, attention, "", "Attention variant (empty = server default).");
ABSL_FLAG(std::string, attention_options, "", "Options of the variant, key=value,...");
ABSL_FLAG(std::string, position_mode, "", "Long-document mode (empty = server default).");
ABSL_FLAG(int, batch_size, 16, "embed: documents per request on the stream.");
ABSL_FLAG(std::string, progress, "auto",
          "Progress on stderr: auto (when stderr is a terminal and there are many documents), "
          "always, never.");
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
            kNotServing = 6 };

int Report(const absl::Status& s, const std::string& what) {
  std::fprintf(stderr, "longenc: %s: %s: %s\n", what.c_str(),
               absl::StatusCodeToString(s.code()).c_str(), std::string(s.message()).c_str());
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

// Reads the embed inputs; returns an exit code != 0 on error.
int ReadDocuments(const std::vector<std::string>& args, std::vector<longenc::v1::Document>* docs) {
  auto add_text = [&](std::string text, std::string id, const std::string& where) -> int {
    size_t bad = 0;
    if (!IsValidUtf8(text, &bad)) {
      return InputError(absl::StrCat(where, " is not valid UTF-8 (byte ", bad, ")"));
    }
    longenc::v1::Document d;
    d.set_text(std::move(text));
    d.set_id(std::move(id));
    docs->push_back(std::move(d));
    return 0;
  };
  for (size_t i = 0; i < args.size(); ++i) {
    if (int rc = add_text(args[i], std::to_string(i), absl::StrCat("argument ", i + 1)); rc) {
      return rc;
    }
  }
  for (const std::string& path : absl::GetFlag(FLAGS_file)) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return InputError(absl::StrCat("cannot read --file ", path));
    std::stringstream ss;
    ss << in.rdbuf();
    if (int rc = add_text(ss.str(), path, path); rc) return rc;
  }
  const std::string jsonl = absl::GetFlag(FLAGS_jsonl);
  if (!jsonl.empty()) {
    std::ifstream file;
    if (jsonl != "-") {
      file.open(jsonl);
      if (!file) return InputError(absl::StrCat("cannot read --jsonl ", jsonl));
    }
    std::istream& in = jsonl == "-" ? std::cin : file;
    std::string line;
    for (int64_t n = 1; std::getline(in, line); ++n) {
      if (line.empty()) continue;
      const std::string where = absl::StrCat(jsonl, ":", n);
      nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (j.is_discarded() || !j.is_object()) return InputError(where + ": not a JSON object");
      std::string id = std::to_string(docs->size());
      if (j.contains("id")) id = j["id"].is_string() ? j["id"].get<std::string>() : j["id"].dump();
      if (j.contains("text") && j["text"].is_string()) {
        if (int rc = add_text(j["text"].get<std::string>(), id, where); rc) return rc;
      } else if (j.contains("token_ids") && j["token_ids"].is_array()) {
        longenc::v1::Document d;
        for (const auto& t : j["token_ids"]) {
          if (!t.is_number_integer()) return InputError(where + ": token_ids must be integers");
          d.mutable_tokens()->add_ids(t.get<int32_t>());
        }
        d.set_id(id);
        docs->push_back(std::move(d));
      } else {
        return InputError(where + ": needs \"text\" (string) or \"token_ids\" (array)");
      }
    }
  }
  if (args.empty() && absl::GetFlag(FLAGS_file).empty() && jsonl.empty()) {
    // One document per stdin line.
    std::string line;
    for (int64_t n = 1; std::getline(std::cin, line); ++n) {
      if (line.empty()) continue;
      if (int rc = add_text(line, std::to_string(docs->size()), absl::StrCat("stdin line ", n));
          rc) {
        return rc;
      }
    }
  }
  if (docs->empty()) return InputError("no documents (give texts, --file, --jsonl or stdin)");
  return 0;
}

absl::StatusOr<longenc::v1::EmbedRequest> RequestOptions() {
  longenc::v1::EmbedRequest r;
  const std::string pooling = absl::GetFlag(FLAGS_pooling);
  if (pooling == "mean") {
    r.set_pooling(longenc::v1::POOLING_MEAN);
  } else if (pooling == "cls") {
    r.set_pooling(longenc::v1::POOLING_CLS);
  } else {
    return absl::InvalidArgumentError(absl::StrCat("--pooling=", pooling, ": mean or cls"));
  }
  r.set_normalize(absl::GetFlag(FLAGS_normalize));
  if (absl::GetFlag(FLAGS_truncate)) r.set_over_limit(longenc::v1::OVER_LIMIT_TRUNCATE);
  r.set_attention(absl::GetFlag(FLAGS_attention));
  r.set_attention_options(absl::GetFlag(FLAGS_attention_options));
  r.set_position_mode(absl::GetFlag(FLAGS_position_mode));
  return r;
}

int Embed(const std::vector<std::string>& args) {
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
  std::vector<longenc::v1::Document> docs;
  if (int rc = ReadDocuments(args, &docs); rc != 0) return rc;
  auto client = Connect();
  if (!client.ok()) return ConnectFailed(client.status());
  const std::string progress_flag = absl::GetFlag(FLAGS_progress);
  const bool progress = progress_flag == "always" ||
                        (progress_flag == "auto" && isatty(2) && docs.size() >= 64);
  auto on_progress = [&](int64_t done, int64_t total) {
    if (!progress) return;
    const int width = 40;
    const int filled = static_cast<int>(width * done / std::max<int64_t>(total, 1));
    std::fprintf(stderr, "\r[%s%s] %lld/%lld documents", std::string(filled, '#').c_str(),
                 std::string(width - filled, ' ').c_str(), static_cast<long long>(done),
                 static_cast<long long>(total));
    if (done == total) std::fprintf(stderr, "\n");
  };
  absl::StatusOr<std::vector<longenc::v1::Embedding>> embeddings =
      (*client)->EmbedMany(docs, *options, absl::GetFlag(FLAGS_batch_size), on_progress);
  if (!embeddings.ok()) return Report(embeddings.status(), "embed");
  const std::string output = absl::GetFlag(FLAGS_output);
  std::ofstream file;
  if (output != "-") {
    file.open(output, std::ios::binary);
    if (!file) return InputError(absl::StrCat("cannot write --output ", output));
  }
  absl::Status s = WriteEmbeddings(*embeddings, format, output == "-" ? std::cout : file);
  if (!s.ok()) return Report(s, "output");
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
      "  longenc tokenize [TEXT ...]\n"
      "  longenc info\n"
      "  longenc health\n"
      "  longenc bench [--concurrency=C | --rate=R] [--requests=N] [--duration=D]\n"
      "Exit codes: 0 ok, 1 failure, 2 usage, 3 input, 4 server unreachable/unavailable/"
      "deadline, 5 rejected by the server, 6 not serving.",
      {"client/main.cc"});
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  if (rest.size() < 2) {
    std::fprintf(stderr, "%s\n", absl::ProgramUsageMessage().data());
    return kUsage;
  }
  const std::string command = rest[1];
  const std::vector<std::string> args(rest.begin() + 2, rest.end());
  if (command == "embed") return Embed(args);
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
