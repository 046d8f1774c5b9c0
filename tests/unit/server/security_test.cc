// server/security: the API-key file format, the constant-time key check, the auth decision,
// start-up checks of the TLS files, and a real EncoderServer on 127.0.0.1:0 with TLS, mutual TLS
// and API keys, reached through the `longenc` client library. Certificates and keys are made by
// OpenSSL at test time (an ECDSA P-256 CA, a server certificate for 127.0.0.1/localhost, client
// certificates from that CA and from another one); nothing is committed.
#include "server/security.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "client/client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/grpc_server.h"

namespace longenc::server {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

// ---------------------------------------------------------------- API-key file and checks

constexpr char kKeyA[] = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
constexpr char kKeyB[] = "Zm9vYmFyLWJhei1xdXV4LTEyMzQ1Njc4OQ==";
constexpr char kKeyC[] = "c-c.c_c~c+c/cccccccc";

TEST(ApiKeys, ParsesKeysNamesCommentsAndBlankLines) {
  const std::string text = absl::StrCat("# keys of the staging cluster\n\n", kKeyA, "\n",
                                        "  ci-runner\t", kKeyB, "  \r\n", "#", kKeyC, "\n",
                                        "alice ", kKeyC);
  absl::StatusOr<ApiKeys> keys = ApiKeys::Parse(text, "--api_keys_file=k");
  ASSERT_TRUE(keys.ok()) << keys.status();
  EXPECT_EQ(keys->size(), 3u);
  EXPECT_EQ(keys->names(), (std::vector<std::string>{"", "ci-runner", "alice"}));
  EXPECT_TRUE(keys->Matches(kKeyA));
  EXPECT_TRUE(keys->Matches(kKeyB));
  EXPECT_TRUE(keys->Matches(kKeyC));
}

TEST(ApiKeys, RefusesBadLinesNamingTheLineButNeverTheKey) {
  struct Case {
    std::string text;
    std::string want;
  };
  const std::string secret = "s3cr3t-but-short";  // 16 characters: long enough
  const std::vector<Case> cases = {
      {"", "no keys"},
      {"# only a comment\n\n", "no keys"},
      {"a b " + secret + "x\n", "line 1: expected 'KEY' or 'NAME KEY'"},
      {"\nshort-key\n", "line 2: the key has 9 characters"},
      {secret + "\xc3\xa9\n", "characters a Bearer token cannot carry"},
      {secret + "=x\n", "characters a Bearer token cannot carry"},
      {secret + "\n" + "other " + secret + "\n", "line 2: the same key appears twice"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<ApiKeys> keys = ApiKeys::Parse(c.text, "--api_keys_file=/k");
    ASSERT_FALSE(keys.ok()) << c.text;
    EXPECT_EQ(keys.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(keys.status().message(), HasSubstr("--api_keys_file=/k"));
    EXPECT_THAT(keys.status().message(), HasSubstr(c.want));
    EXPECT_THAT(keys.status().message(), Not(HasSubstr(secret))) << c.text;
  }
}

TEST(ApiKeys, MatchesOnlyTheExactKey) {
  absl::StatusOr<ApiKeys> keys = ApiKeys::Parse(absl::StrCat(kKeyA, "\n", kKeyB), "k");
  ASSERT_TRUE(keys.ok());
  const std::string a = kKeyA;
  EXPECT_FALSE(keys->Matches(""));
  EXPECT_FALSE(keys->Matches(a.substr(0, a.size() - 1)));  // a prefix
  EXPECT_FALSE(keys->Matches(a + "a"));                     // an extension
  EXPECT_FALSE(keys->Matches("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"));
  EXPECT_FALSE(keys->Matches(std::string(kKeyB) + " "));
  EXPECT_TRUE(keys->Matches(kKeyB));
}

TEST(ApiKeys, ComparesEveryKeyWhicheverMatches) {
  absl::StatusOr<ApiKeys> keys =
      ApiKeys::Parse(absl::StrCat(kKeyA, "\n", kKeyB, "\n", kKeyC), "k");
  ASSERT_TRUE(keys.ok());
  for (const char* presented : {kKeyA, kKeyC, "not-a-key-at-all-x", ""}) {
    int compared = -1;
    keys->Matches(presented, &compared);
    EXPECT_EQ(compared, 3) << presented;  // no early exit on a match or a mismatch
  }
}

TEST(ConstantTimeEqual, ComparesWholeBuffers) {
  const unsigned char a[4] = {1, 2, 3, 4};
  const unsigned char b[4] = {1, 2, 3, 5};
  const unsigned char c[4] = {9, 2, 3, 4};
  EXPECT_TRUE(ConstantTimeEqual(a, a, 4));
  EXPECT_FALSE(ConstantTimeEqual(a, b, 4));
  EXPECT_FALSE(ConstantTimeEqual(a, c, 4));
  EXPECT_TRUE(ConstantTimeEqual(a, b, 3));
}

TEST(Authenticate, ExemptsHealthAndReflectionOnly) {
  absl::StatusOr<ApiKeys> keys = ApiKeys::Parse(kKeyA, "k");
  ASSERT_TRUE(keys.ok());
  EXPECT_EQ(Authenticate(*keys, "/grpc.health.v1.Health/Check", {}), AuthOutcome::kExempt);
  EXPECT_EQ(Authenticate(*keys, "/grpc.health.v1.Health/Watch", {}), AuthOutcome::kExempt);
  EXPECT_EQ(Authenticate(*keys, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                         {}),
            AuthOutcome::kExempt);
  EXPECT_EQ(Authenticate(*keys, "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", {}),
            AuthOutcome::kExempt);
  // Deny by default: every other path, look-alikes and an absent path included.
  for (const char* path : {"/longenc.v1.Encoder/Embed", "/longenc.v1.Encoder/GetInfo",
                           "/grpc.health.v1.HealthX/Check", "/x/grpc.health.v1.Health/Check",
                           "/unknown.Service/Method", ""}) {
    EXPECT_EQ(Authenticate(*keys, path, {}), AuthOutcome::kMissing) << path;
  }
}

TEST(Authenticate, NeedsABearerTokenThatIsAKey) {
  absl::StatusOr<ApiKeys> keys = ApiKeys::Parse(kKeyA, "k");
  ASSERT_TRUE(keys.ok());
  const std::string path = "/longenc.v1.Encoder/Embed";
  const std::string good = absl::StrCat("Bearer ", kKeyA);
  const std::string lower = absl::StrCat("bearer  ", kKeyA);
  const std::string basic = absl::StrCat("Basic ", kKeyA);
  const std::string glued = absl::StrCat("Bearer", kKeyA);
  const std::string wrong = absl::StrCat("Bearer ", kKeyB);
  EXPECT_EQ(Authenticate(*keys, path, {good}), AuthOutcome::kAccepted);
  EXPECT_EQ(Authenticate(*keys, path, {lower}), AuthOutcome::kAccepted);
  EXPECT_EQ(Authenticate(*keys, path, {wrong, good}), AuthOutcome::kAccepted);
  EXPECT_EQ(Authenticate(*keys, path, {}), AuthOutcome::kMissing);
  EXPECT_EQ(Authenticate(*keys, path, {basic}), AuthOutcome::kMissing);
  EXPECT_EQ(Authenticate(*keys, path, {glued}), AuthOutcome::kMissing);
  EXPECT_EQ(Authenticate(*keys, path, {"Bearer "}), AuthOutcome::kMissing);
  EXPECT_EQ(Authenticate(*keys, path, {kKeyA}), AuthOutcome::kMissing);
  EXPECT_EQ(Authenticate(*keys, path, {wrong}), AuthOutcome::kInvalid);

  EXPECT_EQ(AuthStatus(AuthOutcome::kMissing),
            absl::UnauthenticatedError(
                "missing credentials: send 'authorization: Bearer <key>'"));
  EXPECT_EQ(AuthStatus(AuthOutcome::kInvalid), absl::UnauthenticatedError("invalid API key"));
  EXPECT_TRUE(AuthStatus(AuthOutcome::kAccepted).ok());
  EXPECT_TRUE(AuthStatus(AuthOutcome::kExempt).ok());
}

TEST(MethodLabel, KnownEncoderMethodsElseOther) {
  EXPECT_EQ(MethodLabel("/longenc.v1.Encoder/Embed"), "Embed");
  EXPECT_EQ(MethodLabel("/longenc.v1.Encoder/EmbedStream"), "EmbedStream");
  EXPECT_EQ(MethodLabel("/longenc.v1.Encoder/Tokenize"), "Tokenize");
  EXPECT_EQ(MethodLabel("/longenc.v1.Encoder/GetInfo"), "GetInfo");
  EXPECT_EQ(MethodLabel("/longenc.v1.Encoder/Random123"), "other");
  EXPECT_EQ(MethodLabel("/evil.Service/Embed"), "other");
}

// ---------------------------------------------------------------- certificates at test time

struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;
using Cert = std::unique_ptr<X509, X509Free>;

Pkey NewKey() { return Pkey(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256")); }

void AddExtension(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  ASSERT_NE(ext, nullptr) << value;
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

// A certificate for `key` named `cn`, signed by `issuer`/`issuer_key` (self-signed if null).
Cert NewCert(EVP_PKEY* key, const char* cn, X509* issuer, EVP_PKEY* issuer_key, bool ca,
             const char* san, long valid_seconds = 86400) {
  Cert cert(X509_new());
  X509_set_version(cert.get(), 2);
  static long serial = 1;
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), serial++);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), valid_seconds);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn),
                             -1, -1, 0);
  X509_set_issuer_name(cert.get(), issuer ? X509_get_subject_name(issuer) : name);
  X509_set_pubkey(cert.get(), key);
  X509* signer = issuer ? issuer : cert.get();
  if (ca) {
    AddExtension(cert.get(), signer, NID_basic_constraints, "critical,CA:TRUE");
    AddExtension(cert.get(), signer, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else {
    AddExtension(cert.get(), signer, NID_basic_constraints, "critical,CA:FALSE");
    AddExtension(cert.get(), signer, NID_ext_key_usage, "serverAuth,clientAuth");
    if (san != nullptr) AddExtension(cert.get(), signer, NID_subject_alt_name, san);
  }
  X509_sign(cert.get(), issuer_key ? issuer_key : key, EVP_sha256());
  return cert;
}

std::string CertPem(X509* cert) {
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(bio, cert);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  std::string pem(data, n);
  BIO_free(bio);
  return pem;
}

std::string KeyPem(EVP_PKEY* key) {
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  std::string pem(data, n);
  BIO_free(bio);
  return pem;
}

// PEM files of one test in a fresh temporary directory.
class Pki {
 public:
  Pki() {
    char tmpl[] = "/tmp/longenc-security-test-XXXXXX";
    dir_ = mkdtemp(tmpl);
    Pkey ca_key = NewKey();
    Cert ca = NewCert(ca_key.get(), "longenc test CA", nullptr, nullptr, true, nullptr);
    Pkey other_ca_key = NewKey();
    Cert other_ca =
        NewCert(other_ca_key.get(), "some other CA", nullptr, nullptr, true, nullptr);
    Pkey server_key = NewKey();
    Cert server = NewCert(server_key.get(), "localhost", ca.get(), ca_key.get(), false,
                          "IP:127.0.0.1,DNS:localhost");
    Pkey client_key = NewKey();
    Cert client = NewCert(client_key.get(), "client", ca.get(), ca_key.get(), false, nullptr);
    Pkey stranger_key = NewKey();
    Cert stranger = NewCert(stranger_key.get(), "stranger", other_ca.get(), other_ca_key.get(),
                            false, nullptr);
    Pkey expired_key = NewKey();
    Cert expired = NewCert(expired_key.get(), "localhost", ca.get(), ca_key.get(), false,
                           "IP:127.0.0.1", -60);
    Write("ca.pem", CertPem(ca.get()));
    Write("server.pem", CertPem(server.get()));
    Write("server.key", KeyPem(server_key.get()));
    Write("client.pem", CertPem(client.get()));
    Write("client.key", KeyPem(client_key.get()));
    Write("stranger.pem", CertPem(stranger.get()));
    Write("stranger.key", KeyPem(stranger_key.get()));
    Write("expired.pem", CertPem(expired.get()));
    Write("keys.txt", absl::StrCat("# test keys\ntests ", kKeyA, "\n", kKeyB, "\n"));
    Write("not-pem.txt", "hello\n");
  }
  ~Pki() { std::system(("rm -rf '" + dir_ + "'").c_str()); }

  std::string Path(const std::string& name) const { return dir_ + "/" + name; }
  std::string dir() const { return dir_; }

 private:
  void Write(const std::string& name, const std::string& text) {
    std::ofstream(Path(name), std::ios::binary) << text;
  }
  std::string dir_;
};

// ---------------------------------------------------------------- start-up checks

absl::Status LoadStatus(const SecurityFiles& files) { return LoadServerSecurity(files).status(); }

TEST(LoadServerSecurity, NothingSetIsPlainTextWithoutAuthentication) {
  absl::StatusOr<ServerSecurity> s = LoadServerSecurity({});
  ASSERT_TRUE(s.ok());
  EXPECT_FALSE(s->tls);
  EXPECT_EQ(s->api_keys, nullptr);
  EXPECT_EQ(s->Describe(), "plain text (no TLS), no authentication");
}

TEST(LoadServerSecurity, LoadsTlsMutualTlsAndKeys) {
  Pki pki;
  absl::StatusOr<ServerSecurity> s =
      LoadServerSecurity({pki.Path("server.pem"), pki.Path("server.key"), pki.Path("ca.pem"),
                          pki.Path("keys.txt")});
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_TRUE(s->tls);
  EXPECT_TRUE(s->mutual_tls);
  ASSERT_NE(s->api_keys, nullptr);
  EXPECT_EQ(s->api_keys->size(), 2u);
  EXPECT_EQ(s->Describe(), "TLS (mutual: client certificates required), API keys (2)");
  EXPECT_THAT(s->Describe(), Not(HasSubstr(kKeyA)));
}

TEST(LoadServerSecurity, WarnsAboutSharedSecretsAndKeysInPlainText) {
  Pki pki;
  ASSERT_EQ(chmod(pki.Path("keys.txt").c_str(), 0644), 0);
  ASSERT_EQ(chmod(pki.Path("server.key").c_str(), 0600), 0);
  absl::StatusOr<ServerSecurity> plain = LoadServerSecurity({"", "", "", pki.Path("keys.txt")});
  ASSERT_TRUE(plain.ok());
  EXPECT_THAT(plain->warnings,
              ElementsAre("--api_keys_file=" + pki.Path("keys.txt") +
                              " can be read by other users (mode 0644); chmod 600 it",
                          HasSubstr("--api_keys_file without --tls_cert: keys cross the network "
                                    "in plain text")));
  ASSERT_EQ(chmod(pki.Path("keys.txt").c_str(), 0600), 0);
  absl::StatusOr<ServerSecurity> tls =
      LoadServerSecurity({pki.Path("server.pem"), pki.Path("server.key"), "",
                          pki.Path("keys.txt")});
  ASSERT_TRUE(tls.ok());
  EXPECT_THAT(tls->warnings, ::testing::IsEmpty());
  ASSERT_EQ(chmod(pki.Path("server.key").c_str(), 0640), 0);
  tls = LoadServerSecurity({pki.Path("server.pem"), pki.Path("server.key"), "", ""});
  ASSERT_TRUE(tls.ok());
  EXPECT_THAT(tls->warnings, ElementsAre(HasSubstr("--tls_key=" + pki.Path("server.key") +
                                                   " can be read by other users (mode 0640)")));
}

TEST(LoadServerSecurity, RefusesBadFilesNamingTheFlagAndTheFile) {
  Pki pki;
  const std::string cert = pki.Path("server.pem"), key = pki.Path("server.key");
  struct Case {
    SecurityFiles files;
    std::string want;
  };
  const std::vector<Case> cases = {
      {{pki.Path("absent.pem"), key, "", ""},
       "--tls_cert=" + pki.Path("absent.pem") + ": cannot read: No such file or directory"},
      {{cert, pki.dir(), "", ""}, "--tls_key=" + pki.dir() + ": cannot read: is a directory"},
      {{pki.Path("not-pem.txt"), key, "", ""},
       "--tls_cert=" + pki.Path("not-pem.txt") + ": not a PEM certificate"},
      {{cert, pki.Path("not-pem.txt"), "", ""},
       "--tls_key=" + pki.Path("not-pem.txt") + ": not an unencrypted PEM private key"},
      {{cert, pki.Path("client.key"), "", ""},
       "--tls_key=" + pki.Path("client.key") + ": does not match the certificate of --tls_cert=" +
           cert},
      {{pki.Path("expired.pem"), key, "", ""},
       "--tls_cert=" + pki.Path("expired.pem") + ": the certificate has expired"},
      {{cert, "", "", ""}, "--tls_cert=" + cert + ": needs --tls_key as well"},
      {{"", key, "", ""}, "--tls_key=" + key + ": needs --tls_cert as well"},
      {{"", "", pki.Path("ca.pem"), ""}, "mutual TLS needs --tls_cert and --tls_key"},
      {{cert, key, pki.Path("not-pem.txt"), ""},
       "--tls_client_ca=" + pki.Path("not-pem.txt") + ": not a PEM certificate"},
      {{"", "", "", pki.Path("absent-keys")},
       "--api_keys_file=" + pki.Path("absent-keys") + ": cannot read"},
      {{"", "", "", pki.Path("not-pem.txt")},
       "--api_keys_file=" + pki.Path("not-pem.txt") + " line 1: the key has 5 characters"},
  };
  for (const Case& c : cases) {
    const absl::Status s = LoadStatus(c.files);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.want;
    EXPECT_THAT(s.message(), HasSubstr(c.want));
  }
}

// ---------------------------------------------------------------- a real server

// Records the calls the auth processor turned away.
class RecordingObserver : public ServiceObserver {
 public:
  void OnRequestEnd(std::string_view method, absl::StatusCode code, absl::Duration) override {
    absl::MutexLock lock(&mu_);
    ends_.push_back(absl::StrCat(std::string(method), " ", absl::StatusCodeToString(code)));
  }
  std::vector<std::string> unauthenticated() {
    absl::MutexLock lock(&mu_);
    std::vector<std::string> out;
    for (const std::string& e : ends_) {
      if (absl::EndsWith(e, " UNAUTHENTICATED")) out.push_back(e);
    }
    return out;
  }

 private:
  absl::Mutex mu_;
  std::vector<std::string> ends_;
};

struct Running {
  std::unique_ptr<EncoderServer> server;
  RecordingObserver observer;
};

// A server that is listening but has no model attached: Encoder calls that get past the
// authentication answer UNAVAILABLE "model is loading", health answers NOT_SERVING.
std::unique_ptr<Running> StartServer(const SecurityFiles& files) {
  auto running = std::make_unique<Running>();
  absl::StatusOr<ServerSecurity> security = LoadServerSecurity(files);
  EXPECT_TRUE(security.ok()) << security.status();
  if (!security.ok()) return nullptr;
  EncoderServer::Options options;
  options.host = "127.0.0.1";
  options.port = 0;
  options.security = *security;
  absl::StatusOr<std::unique_ptr<EncoderServer>> server =
      EncoderServer::Start(options, &running->observer);
  EXPECT_TRUE(server.ok()) << server.status();
  if (!server.ok()) return nullptr;
  running->server = std::move(*server);
  return running;
}

std::unique_ptr<client::Client> Connect(const Running& r, client::ConnectOptions o) {
  o.servers = absl::StrCat("127.0.0.1:", r.server->port());
  o.timeout = absl::Seconds(10);
  o.skip_unhealthy = false;  // the server stays NOT_SERVING (no model), calls must still reach it
  absl::StatusOr<std::unique_ptr<client::Client>> c = client::Client::Connect(o);
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? std::move(*c) : nullptr;
}

absl::Status GetInfoStatus(client::Client& c) { return c.GetInfo().status(); }

TEST(SecureServer, TlsWithApiKeys) {
  Pki pki;
  std::unique_ptr<Running> r =
      StartServer({pki.Path("server.pem"), pki.Path("server.key"), "", pki.Path("keys.txt")});
  ASSERT_NE(r, nullptr);
  client::ConnectOptions tls;
  tls.tls_ca = pki.Path("ca.pem");

  auto anonymous = Connect(*r, tls);
  const absl::Status missing = GetInfoStatus(*anonymous);
  EXPECT_EQ(missing, absl::UnauthenticatedError(kMissingCredentialsMessage));
  absl::StatusOr<client::Health> health = anonymous->CheckHealth();  // exempt
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(*health, client::Health::kNotServing);

  client::ConnectOptions wrong = tls;
  wrong.api_key = "not-one-of-the-keys-0123";
  const absl::Status invalid = GetInfoStatus(*Connect(*r, wrong));
  EXPECT_EQ(invalid, absl::UnauthenticatedError(kInvalidApiKeyMessage));
  EXPECT_THAT(invalid.message(), Not(HasSubstr(wrong.api_key)));

  for (const char* key : {kKeyA, kKeyB}) {
    client::ConnectOptions good = tls;
    good.api_key = key;
    const absl::Status passed = GetInfoStatus(*Connect(*r, good));
    EXPECT_EQ(passed.code(), absl::StatusCode::kUnavailable) << passed;  // past the check
    EXPECT_THAT(passed.message(), HasSubstr("loading"));
  }

  // A plain-text client gets no answer from the TLS port; the server keeps serving TLS.
  client::ConnectOptions plain;
  plain.api_key = kKeyA;
  plain.timeout = absl::Seconds(3);
  auto plain_client = Connect(*r, plain);
  EXPECT_EQ(plain_client->CheckHealth().status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(anonymous->CheckHealth().ok());

  EXPECT_EQ(r->observer.unauthenticated(),
            (std::vector<std::string>{"GetInfo UNAUTHENTICATED", "GetInfo UNAUTHENTICATED"}));
}

TEST(SecureServer, MutualTlsNeedsAClientCertificateFromTheClientCa) {
  Pki pki;
  std::unique_ptr<Running> r =
      StartServer({pki.Path("server.pem"), pki.Path("server.key"), pki.Path("ca.pem"), ""});
  ASSERT_NE(r, nullptr);
  client::ConnectOptions with_cert;
  with_cert.tls_ca = pki.Path("ca.pem");
  with_cert.tls_cert = pki.Path("client.pem");
  with_cert.tls_key = pki.Path("client.key");
  EXPECT_TRUE(Connect(*r, with_cert)->CheckHealth().ok());
  // No authentication configured: Encoder calls pass (and find no model yet).
  EXPECT_EQ(GetInfoStatus(*Connect(*r, with_cert)).code(), absl::StatusCode::kUnavailable);

  client::ConnectOptions no_cert;
  no_cert.tls_ca = pki.Path("ca.pem");
  EXPECT_EQ(Connect(*r, no_cert)->CheckHealth().status().code(),
            absl::StatusCode::kUnavailable);

  client::ConnectOptions stranger = with_cert;
  stranger.tls_cert = pki.Path("stranger.pem");
  stranger.tls_key = pki.Path("stranger.key");
  EXPECT_EQ(Connect(*r, stranger)->CheckHealth().status().code(),
            absl::StatusCode::kUnavailable);

  EXPECT_TRUE(Connect(*r, with_cert)->CheckHealth().ok());  // still up
}

TEST(SecureServer, ApiKeysWithoutTls) {
  Pki pki;
  std::unique_ptr<Running> r = StartServer({"", "", "", pki.Path("keys.txt")});
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(GetInfoStatus(*Connect(*r, {})),
            absl::UnauthenticatedError(kMissingCredentialsMessage));
  client::ConnectOptions good;
  good.api_key = kKeyB;
  EXPECT_EQ(GetInfoStatus(*Connect(*r, good)).code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(Connect(*r, {})->CheckHealth().ok());
}

TEST(ClientTls, RefusesUnreadableFiles) {
  client::ConnectOptions o;
  o.tls_ca = "/nonexistent/ca.pem";
  absl::StatusOr<std::unique_ptr<client::Client>> c = client::Client::Connect(o);
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr("--tls_ca=/nonexistent/ca.pem"));
  o.tls_ca = "";
  o.tls_cert = "/x.pem";
  EXPECT_THAT(client::Client::Connect(o).status().message(),
              HasSubstr("--tls_cert and --tls_key go together"));
}

}  // namespace
}  // namespace longenc::server
