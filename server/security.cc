#include "server/security.h"

#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "grpc/grpc.h"
#include "grpc/grpc_security.h"
#include "grpcpp/security/server_credentials.h"

namespace longenc::server {
namespace {

using Digest = std::array<unsigned char, 32>;

Digest Sha256(absl::string_view data) {
  Digest out{};
  unsigned int size = 0;
  EVP_Digest(data.data(), data.size(), out.data(), &size, EVP_sha256(), nullptr);
  return out;
}

// RFC 6750 b64token: 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
bool IsToken68(absl::string_view s) {
  size_t i = 0;
  while (i < s.size() && (absl::ascii_isalnum(static_cast<unsigned char>(s[i])) ||
                          std::strchr("-._~+/", s[i]) != nullptr)) {
    ++i;
  }
  if (i == 0) return false;
  while (i < s.size() && s[i] == '=') ++i;
  return i == s.size();
}

std::string FlagFile(absl::string_view flag, absl::string_view path) {
  return absl::StrCat("--", flag, "=", path);
}

// The whole file; errors name the flag and the file (and the system's reason).
absl::StatusOr<std::string> ReadFlagFile(absl::string_view flag, const std::string& path) {
  auto fail = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(FlagFile(flag, path), ": cannot read: ", why));
  };
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return fail(std::strerror(errno));
  if (S_ISDIR(st.st_mode)) return fail("is a directory");
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail(std::strerror(errno));
  std::string text;
  char buffer[8192];
  while (true) {
    const ssize_t n = read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int error = errno;
      close(fd);
      return fail(std::strerror(error));
    }
    if (n == 0) break;
    text.append(buffer, static_cast<size_t>(n));
    if (text.size() > (16u << 20)) {
      close(fd);
      return fail("larger than 16 MiB");
    }
  }
  close(fd);
  return text;
}

struct BioDeleter {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Deleter {
  void operator()(X509* x) const { X509_free(x); }
};
struct PkeyDeleter {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using BioPtr = std::unique_ptr<BIO, BioDeleter>;
using X509Ptr = std::unique_ptr<X509, X509Deleter>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyDeleter>;

BioPtr MemBio(const std::string& text) {
  return BioPtr(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
}

// Never prompts for a passphrase (OpenSSL's default callback reads the terminal).
int NoPassphrase(char*, int, int, void*) { return 0; }

// Every certificate of a PEM bundle (none if it holds none).
std::vector<X509Ptr> ReadCertificates(const std::string& pem) {
  std::vector<X509Ptr> certs;
  BioPtr bio = MemBio(pem);
  while (X509* x = PEM_read_bio_X509(bio.get(), nullptr, NoPassphrase, nullptr)) {
    certs.emplace_back(x);
  }
  ERR_clear_error();  // the end of the bundle is reported as an error
  return certs;
}

// At least one certificate. `own` = the first one is the server's: it must not have expired
// (every handshake would fail). CA bundles may hold expired roots next to good ones.
absl::Status CheckCertificates(absl::string_view flag, const std::string& path,
                               const std::string& pem, bool own, std::vector<X509Ptr>* out) {
  *out = ReadCertificates(pem);
  if (out->empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        FlagFile(flag, path), ": not a PEM certificate (expected '-----BEGIN CERTIFICATE-----')"));
  }
  if (own && X509_cmp_current_time(X509_get0_notAfter(out->front().get())) < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(FlagFile(flag, path), ": the certificate has expired"));
  }
  return absl::OkStatus();
}

// The path's method name when it is one of longenc.v1.Encoder's.
constexpr absl::string_view kEncoderPrefix = "/longenc.v1.Encoder/";

// --- The auth metadata processor (gRPC C API) ---

struct ProcessorState {
  std::shared_ptr<const ApiKeys> keys;
  ServiceObserver* observer;
};

absl::string_view SliceView(const grpc_slice& s) {
  return absl::string_view(reinterpret_cast<const char*>(GRPC_SLICE_START_PTR(s)),
                          GRPC_SLICE_LENGTH(s));
}

// Runs inline on the transport's thread for every call (the check is a few SHA-256 blocks).
// gRPC passes the HTTP/2 pseudo-header :path among the metadata; without it nothing would be
// exempt (deny by default), which security_test's health checks would catch.
void ProcessAuthMetadata(void* state_ptr, grpc_auth_context* /*context*/, const grpc_metadata* md,
                         size_t num_md, grpc_process_auth_metadata_done_cb done,
                         void* user_data) {
  const auto* state = static_cast<const ProcessorState*>(state_ptr);
  const absl::Time start = absl::Now();
  absl::string_view path;
  std::vector<absl::string_view> authorization;
  std::vector<grpc_metadata> consumed;
  for (size_t i = 0; i < num_md; ++i) {
    const absl::string_view key = SliceView(md[i].key);
    if (key == ":path") {
      path = SliceView(md[i].value);
    } else if (key == "authorization") {
      authorization.push_back(SliceView(md[i].value));
      consumed.push_back(md[i]);
    }
  }
  const AuthOutcome outcome = Authenticate(*state->keys, path, authorization);
  if (outcome == AuthOutcome::kExempt || outcome == AuthOutcome::kAccepted) {
    // The key is removed from the call: handlers (and anything they log) never see it.
    done(user_data, consumed.empty() ? nullptr : consumed.data(), consumed.size(), nullptr, 0,
         GRPC_STATUS_OK, nullptr);
    return;
  }
  if (state->observer != nullptr) {
    const std::string_view method = MethodLabel(path);
    state->observer->OnRequestStart(method);
    state->observer->OnRequestEnd(method, absl::StatusCode::kUnauthenticated,
                                  absl::Now() - start);
  }
  done(user_data, nullptr, 0, nullptr, 0, GRPC_STATUS_UNAUTHENTICATED,
       outcome == AuthOutcome::kMissing ? kMissingCredentialsMessage : kInvalidApiKeyMessage);
}

void DestroyProcessorState(void* state) { delete static_cast<ProcessorState*>(state); }

// grpc::ServerCredentials over core credentials we built ourselves (the public C++ factories
// hide theirs), so that the auth processor can be set with the C API on insecure ones too.
class CoreServerCredentials final : public grpc::ServerCredentials {
 public:
  explicit CoreServerCredentials(grpc_server_credentials* creds) : creds_(creds) {}
  ~CoreServerCredentials() override { grpc_server_credentials_release(creds_); }

  // The processor is installed by MakeServerCredentials; a second one is not supported.
  void SetAuthMetadataProcessor(const std::shared_ptr<grpc::AuthMetadataProcessor>&) override {}

 private:
  int AddPortToServer(const std::string& addr, grpc_server* server) override {
    return grpc_server_add_http2_port(server, addr.c_str(), creds_);
  }
  grpc_server_credentials* creds_;
};

}  // namespace

bool ConstantTimeEqual(const unsigned char* a, const unsigned char* b, size_t size) {
  return CRYPTO_memcmp(a, b, size) == 0;
}

absl::StatusOr<ApiKeys> ApiKeys::Parse(absl::string_view text, absl::string_view source) {
  ApiKeys keys;
  std::set<Digest> seen;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    std::vector<absl::string_view> fields =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    const std::string where = absl::StrCat(source, " line ", line_number);
    if (fields.size() > 2) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": expected 'KEY' or 'NAME KEY', found ", fields.size(),
                       " fields (keys contain no spaces)"));
    }
    const absl::string_view key = fields.back();
    const std::string name = fields.size() == 2 ? std::string(fields[0]) : "";
    if (key.size() < kMinKeyLength || key.size() > kMaxKeyLength) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": the key has ", key.size(), " characters; keys need ",
                       kMinKeyLength, " to ", kMaxKeyLength,
                       " (e.g. `openssl rand -base64 32`)"));
    }
    if (!IsToken68(key)) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": the key has characters a Bearer token cannot carry (allowed: A-Z a-z 0-9 "
                 "- . _ ~ + / and trailing =)"));
    }
    const Digest digest = Sha256(key);
    if (!seen.insert(digest).second) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": the same key appears twice"));
    }
    keys.digests_.push_back(digest);
    keys.names_.push_back(name);
  }
  if (keys.digests_.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": no keys (one key per line; '#' comments and blank lines are "
                             "ignored); every call would be refused"));
  }
  return keys;
}

absl::StatusOr<ApiKeys> ApiKeys::FromFile(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFlagFile("api_keys_file", path);
  if (!text.ok()) return text.status();
  return Parse(*text, FlagFile("api_keys_file", path));
}

bool ApiKeys::Matches(absl::string_view presented, int* digests_compared) const {
  const Digest digest = Sha256(presented);
  // No early exit: every key is compared, the results are OR-ed.
  unsigned char found = 0;
  int compared = 0;
  for (const Digest& key : digests_) {
    found |= static_cast<unsigned char>(ConstantTimeEqual(key.data(), digest.data(), key.size()));
    ++compared;
  }
  if (digests_compared != nullptr) *digests_compared = compared;
  return found != 0;
}

bool IsExemptFromAuth(absl::string_view method_path) {
  return absl::StartsWith(method_path, "/grpc.health.v1.Health/") ||
         absl::StartsWith(method_path, "/grpc.reflection.v1alpha.ServerReflection/") ||
         absl::StartsWith(method_path, "/grpc.reflection.v1.ServerReflection/");
}

AuthOutcome Authenticate(const ApiKeys& keys, absl::string_view method_path,
                         const std::vector<absl::string_view>& authorization) {
  if (IsExemptFromAuth(method_path)) return AuthOutcome::kExempt;
  bool any_bearer = false;
  bool accepted = false;
  for (absl::string_view value : authorization) {
    value = absl::StripAsciiWhitespace(value);
    constexpr absl::string_view kScheme = "bearer";
    if (value.size() <= kScheme.size() ||
        !absl::EqualsIgnoreCase(value.substr(0, kScheme.size()), kScheme) ||
        (value[kScheme.size()] != ' ' && value[kScheme.size()] != '\t')) {
      continue;
    }
    const absl::string_view token = absl::StripLeadingAsciiWhitespace(value.substr(kScheme.size()));
    if (token.empty()) continue;
    any_bearer = true;
    // Every presented token is checked (no early exit here either).
    accepted = keys.Matches(token) | accepted;
  }
  if (!any_bearer) return AuthOutcome::kMissing;
  return accepted ? AuthOutcome::kAccepted : AuthOutcome::kInvalid;
}

absl::Status AuthStatus(AuthOutcome outcome) {
  switch (outcome) {
    case AuthOutcome::kExempt:
    case AuthOutcome::kAccepted:
      return absl::OkStatus();
    case AuthOutcome::kMissing:
      return absl::UnauthenticatedError(kMissingCredentialsMessage);
    case AuthOutcome::kInvalid:
      return absl::UnauthenticatedError(kInvalidApiKeyMessage);
  }
  return absl::UnauthenticatedError(kInvalidApiKeyMessage);
}

std::string_view MethodLabel(absl::string_view method_path) {
  if (absl::StartsWith(method_path, kEncoderPrefix)) {
    const absl::string_view name = method_path.substr(kEncoderPrefix.size());
    for (std::string_view known : {"Embed", "EmbedStream", "Tokenize", "GetInfo"}) {
      if (name == absl::string_view(known.data(), known.size())) return known;
    }
  }
  return "other";
}

std::string ServerSecurity::Describe() const {
  std::string out = !tls          ? "plain text (no TLS)"
                    : mutual_tls ? "TLS (mutual: client certificates required)"
                                 : "TLS";
  if (api_keys != nullptr) {
    absl::StrAppend(&out, ", API keys (", api_keys->size(), ")");
  } else {
    absl::StrAppend(&out, ", no authentication");
  }
  return out;
}

namespace {

// A secret file that group or others may read is worth a warning (not an error: containers
// often mount secrets 0644 inside a private filesystem).
void WarnIfShared(absl::string_view flag, const std::string& path,
                  std::vector<std::string>* warnings) {
  struct stat st;
  if (stat(path.c_str(), &st) == 0 && (st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 0777));
    warnings->push_back(absl::StrCat(FlagFile(flag, path),
                                     " can be read by other users (mode ", mode, "); chmod 600 it"));
  }
}

}  // namespace

absl::StatusOr<ServerSecurity> LoadServerSecurity(const SecurityFiles& files) {
  ServerSecurity security;
  if (files.tls_cert.empty() != files.tls_key.empty()) {
    return absl::InvalidArgumentError(
        files.tls_cert.empty()
            ? absl::StrCat(FlagFile("tls_key", files.tls_key), ": needs --tls_cert as well")
            : absl::StrCat(FlagFile("tls_cert", files.tls_cert), ": needs --tls_key as well"));
  }
  if (!files.tls_client_ca.empty() && files.tls_cert.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(FlagFile("tls_client_ca", files.tls_client_ca),
                     ": mutual TLS needs --tls_cert and --tls_key as well"));
  }
  if (!files.tls_cert.empty()) {
    absl::StatusOr<std::string> cert = ReadFlagFile("tls_cert", files.tls_cert);
    if (!cert.ok()) return cert.status();
    absl::StatusOr<std::string> key = ReadFlagFile("tls_key", files.tls_key);
    if (!key.ok()) return key.status();
    std::vector<X509Ptr> chain;
    if (absl::Status s = CheckCertificates("tls_cert", files.tls_cert, *cert, true, &chain); !s.ok()) {
      return s;
    }
    BioPtr key_bio = MemBio(*key);
    PkeyPtr pkey(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, NoPassphrase, nullptr));
    ERR_clear_error();
    if (pkey == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          FlagFile("tls_key", files.tls_key),
          ": not an unencrypted PEM private key (expected '-----BEGIN PRIVATE KEY-----' or "
          "'-----BEGIN RSA/EC PRIVATE KEY-----')"));
    }
    // The first certificate of the chain is the server's own.
    if (X509_check_private_key(chain.front().get(), pkey.get()) != 1) {
      ERR_clear_error();
      return absl::InvalidArgumentError(
          absl::StrCat(FlagFile("tls_key", files.tls_key), ": does not match the certificate of ",
                       FlagFile("tls_cert", files.tls_cert)));
    }
    WarnIfShared("tls_key", files.tls_key, &security.warnings);
    security.tls = true;
    security.cert_chain = std::move(*cert);
    security.private_key = std::move(*key);
  }
  if (!files.tls_client_ca.empty()) {
    absl::StatusOr<std::string> ca = ReadFlagFile("tls_client_ca", files.tls_client_ca);
    if (!ca.ok()) return ca.status();
    std::vector<X509Ptr> cas;
    if (absl::Status s = CheckCertificates("tls_client_ca", files.tls_client_ca, *ca, false, &cas);
        !s.ok()) {
      return s;
    }
    security.mutual_tls = true;
    security.client_ca = std::move(*ca);
  }
  if (!files.api_keys_file.empty()) {
    absl::StatusOr<ApiKeys> keys = ApiKeys::FromFile(files.api_keys_file);
    if (!keys.ok()) return keys.status();
    security.api_keys = std::make_shared<const ApiKeys>(std::move(*keys));
    WarnIfShared("api_keys_file", files.api_keys_file, &security.warnings);
    if (!security.tls) {
      security.warnings.push_back(
          "--api_keys_file without --tls_cert: keys cross the network in plain text (fine on "
          "loopback or behind a TLS-terminating proxy, nowhere else)");
    }
  }
  return security;
}

std::shared_ptr<grpc::ServerCredentials> MakeServerCredentials(const ServerSecurity& security,
                                                               ServiceObserver* observer) {
  grpc_server_credentials* creds = nullptr;
  if (security.tls) {
    grpc_ssl_pem_key_cert_pair pair{security.private_key.c_str(), security.cert_chain.c_str()};
    creds = grpc_ssl_server_credentials_create_ex(
        security.mutual_tls ? security.client_ca.c_str() : nullptr, &pair, 1,
        security.mutual_tls ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                            : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE,
        nullptr);
  } else if (security.api_keys != nullptr) {
    creds = grpc_insecure_server_credentials_create();
  } else {
    return grpc::InsecureServerCredentials();
  }
  if (security.api_keys != nullptr) {
    grpc_auth_metadata_processor processor{ProcessAuthMetadata, DestroyProcessorState,
                                           new ProcessorState{security.api_keys, observer}};
    grpc_server_credentials_set_auth_metadata_processor(creds, processor);
  }
  return std::make_shared<CoreServerCredentials>(creds);
}

}  // namespace longenc::server
