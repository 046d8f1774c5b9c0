// Transport security and authentication of the gRPC port: TLS / mutual TLS from PEM files and
// bearer-token (API key) authentication, both checked at start-up with errors that name the
// flag and the file.
//
// Why an auth metadata processor and not a server interceptor: gRPC C++ server interceptors
// cannot end a call with a status of their choice (only TryCancel -> CANCELLED), while the
// processor runs in the transport's auth filter before any handler, sees the method path (so
// grpc.health.v1 and reflection are exempted by name, deny-by-default for everything else)
// and fails the call with UNAUTHENTICATED and our message. The C++ wrapper
// (ServerCredentials::SetAuthMetadataProcessor) aborts on insecure credentials, so the
// processor is installed through gRPC's C API on the core credentials (TLS or insecure), which
// lets API keys work behind a TLS-terminating proxy as well.
//
// Ownership: ServerSecurity is a plain value (PEM text + shared immutable key set); the
// credentials made from it keep their own reference to the key set.
// Thread-safety: ApiKeys is immutable after Parse(), Matches() may run on many threads at once.
// This header includes no gRPC or protobuf header (main.cc, which sees LibTorch, includes it).
#ifndef LONGENC_SERVER_SECURITY_H_
#define LONGENC_SERVER_SECURITY_H_

#include <array>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/service_observer.h"

namespace grpc {
class ServerCredentials;
}  // namespace grpc

namespace longenc::server {

// The flag values (paths; empty = off).
struct SecurityFiles {
  std::string tls_cert;       // --tls_cert: server certificate chain, PEM
  std::string tls_key;        // --tls_key: its private key, PEM, unencrypted
  std::string tls_client_ca;  // --tls_client_ca: CA(s) client certificates must chain to
  std::string api_keys_file;  // --api_keys_file
};

// The accepted API keys. File format (docs/SECURITY.md): one key per line, optionally preceded
// by a name and whitespace ("ci-runner  3q2+7w..."); '#' starts a comment line; blank lines are
// ignored. A key is 16 to 4096 characters of the RFC 6750 token alphabet
// (A-Z a-z 0-9 - . _ ~ + / and trailing =). Only SHA-256 digests of the keys are kept.
class ApiKeys {
 public:
  static constexpr size_t kMinKeyLength = 16;
  static constexpr size_t kMaxKeyLength = 4096;

  // `source` names the file in errors ("--api_keys_file=PATH"). Errors give the line number,
  // never the key.
  static absl::StatusOr<ApiKeys> Parse(absl::string_view text, absl::string_view source);
  static absl::StatusOr<ApiKeys> FromFile(const std::string& path);

  // True if `presented` is one of the keys. The SHA-256 digest of `presented` is compared with
  // every stored digest in constant time and without early exit, so the time taken does not
  // depend on which key matched, on how much of a key matched, or on the key lengths.
  // `digests_compared` (may be null) receives the number of comparisons made.
  bool Matches(absl::string_view presented, int* digests_compared = nullptr) const;

  size_t size() const { return digests_.size(); }
  // The names given in the file ("" for keys without one), in file order.
  const std::vector<std::string>& names() const { return names_; }

 private:
  std::vector<std::array<unsigned char, 32>> digests_;
  std::vector<std::string> names_;
};

// Equal-length comparison whose time depends only on `size` (OpenSSL's CRYPTO_memcmp).
bool ConstantTimeEqual(const unsigned char* a, const unsigned char* b, size_t size);

// The messages of the UNAUTHENTICATED answers (docs/SECURITY.md, docs/API.md).
inline constexpr char kMissingCredentialsMessage[] =
    "missing credentials: send 'authorization: Bearer <key>'";
inline constexpr char kInvalidApiKeyMessage[] = "invalid API key";

// True for the methods that need no key: grpc.health.v1.Health and server reflection
// (v1alpha and v1). `method_path` is the HTTP/2 :path, "/package.Service/Method".
bool IsExemptFromAuth(absl::string_view method_path);

enum class AuthOutcome { kExempt, kAccepted, kMissing, kInvalid };

// The decision for one call. `authorization` holds the values of its "authorization" metadata
// (usually zero or one). Only "Bearer <key>" (scheme case-insensitive) counts as credentials.
AuthOutcome Authenticate(const ApiKeys& keys, absl::string_view method_path,
                         const std::vector<absl::string_view>& authorization);

// OK for kExempt/kAccepted, else UNAUTHENTICATED with the message above.
absl::Status AuthStatus(AuthOutcome outcome);

// The method label used for metrics of a rejected call: the short name of a longenc.v1.Encoder
// method, or "other" (so unauthenticated callers cannot create label values at will).
std::string_view MethodLabel(absl::string_view method_path);

// Everything the gRPC port needs, loaded and checked.
struct ServerSecurity {
  bool tls = false;
  bool mutual_tls = false;   // client certificates required and verified against client_ca
  std::string cert_chain;    // PEM
  std::string private_key;   // PEM
  std::string client_ca;     // PEM
  std::shared_ptr<const ApiKeys> api_keys;  // null: no authentication
  // Configurations that work but deserve a line in the start-up log (keys in plain text, a key
  // file or private key readable by other users).
  std::vector<std::string> warnings;

  // One line for the start-up log, e.g. "TLS (mutual: client certificates required), API keys
  // (3)". Never contains key material.
  std::string Describe() const;
};

// Reads and checks the files: each must exist and be readable; certificates and keys must be
// PEM; the key must match the certificate; --tls_cert and --tls_key go together;
// --tls_client_ca needs them; the API-keys file must hold at least one valid key. Errors name
// the flag and the file ("--tls_key=/etc/k.pem: does not match the certificate of --tls_cert=...").
absl::StatusOr<ServerSecurity> LoadServerSecurity(const SecurityFiles& files);

// The credentials of the listening port: insecure or TLS/mTLS, with the API-key check when
// `security.api_keys` is set. Rejected calls are reported to `observer` (may be null) as a
// request of MethodLabel(path) ended with UNAUTHENTICATED.
std::shared_ptr<grpc::ServerCredentials> MakeServerCredentials(const ServerSecurity& security,
                                                               ServiceObserver* observer);

}  // namespace longenc::server

#endif  // LONGENC_SERVER_SECURITY_H_
