#include "tests/integration/server_process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace longenc::integration {
namespace {

// A port that was free a moment ago (the server binds it right after; port 0 would disable
// /metrics).
int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

}  // namespace

std::string BuildDir() {
  const char* d = std::getenv("LONGENC_BUILD_DIR");
  return d != nullptr ? d : "build";
}

std::string ModelDir() {
  const char* d = std::getenv("LONGENC_MODEL_DIR");
  return d != nullptr ? d : LONGENC_DEFAULT_MODEL_DIR;
}

ServerProcess::ServerProcess(std::vector<std::string> extra) {
  char dir_template[] = "/tmp/longenc-it-XXXXXX";
  dir_ = mkdtemp(dir_template);
  const std::string port_file = dir_ + "/port";
  const std::string log = dir_ + "/stderr.log";
  metrics_port_ = FreePort();
  std::vector<std::string> args = {BuildDir() + "/bin/longenc-server",
                                   "--host=127.0.0.1",
                                   "--port=0",
                                   "--port_file=" + port_file,
                                   absl::StrCat("--metrics_address=127.0.0.1:", metrics_port_),
                                   "--device=cpu",
                                   "--threads=2",
                                   "--model_dir=" + ModelDir()};
  args.insert(args.end(), extra.begin(), extra.end());
  pid_ = fork();
  if (pid_ == 0) {
    const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) dup2(fd, STDERR_FILENO);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  const absl::Time deadline = absl::Now() + absl::Seconds(180);
  while (absl::Now() < deadline) {
    std::ifstream in(port_file);
    int port = 0;
    if (in >> port && port > 0) {
      address_ = absl::StrCat("127.0.0.1:", port);
      break;
    }
    if (!Running()) break;
    absl::SleepFor(absl::Milliseconds(20));
  }
  if (address_.empty()) return;
  // The port the exposer really bound (an `extra` --metrics_address may differ):
  // "longenc-server: metrics on HOST:PORT/metrics (port 41234)", printed before the port file.
  const std::string err = Stderr();
  const size_t at = err.find("/metrics (port ");
  if (at != std::string::npos) {
    const size_t begin = at + 15;
    (void)absl::SimpleAtoi(absl::string_view(err).substr(begin, err.find(')', at) - begin),
                           &metrics_port_);
  }
  client::ConnectOptions o;
  o.servers = address_;
  o.timeout = absl::Seconds(300);
  client_ = std::move(*client::Client::Connect(o));
  while (absl::Now() < deadline && Running()) {
    absl::StatusOr<client::Health> h = client_->CheckHealth();
    if (h.ok() && *h == client::Health::kServing) {
      serving_ = true;
      break;
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
}

ServerProcess::~ServerProcess() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  // The scratch directory holds only the port file and the server's log.
  for (const char* file : {"/port", "/stderr.log"}) unlink((dir_ + file).c_str());
  rmdir(dir_.c_str());
}

void ServerProcess::Signal(int sig) {
  if (pid_ > 0) kill(pid_, sig);
}

bool ServerProcess::Running() {
  if (pid_ <= 0) return false;
  if (waitpid(pid_, &exit_status_, WNOHANG) == pid_) {
    pid_ = -1;
    return false;
  }
  return true;
}

int ServerProcess::Wait() {
  if (pid_ > 0) {
    waitpid(pid_, &exit_status_, 0);
    pid_ = -1;
  }
  return WIFEXITED(exit_status_) ? WEXITSTATUS(exit_status_) : -WTERMSIG(exit_status_);
}

int ServerProcess::Stop() {
  Signal(SIGTERM);
  return Wait();
}

std::string ServerProcess::Stderr() const {
  std::ifstream in(dir_ + "/stderr.log");
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

absl::StatusOr<std::string> ServerProcess::Metrics() const {
  if (metrics_port_ <= 0) return absl::FailedPreconditionError("no /metrics port on stderr");
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return absl::InternalError("socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(metrics_port_));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return absl::UnavailableError("cannot connect to /metrics");
  }
  const std::string request = "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
  if (write(fd, request.data(), request.size()) != static_cast<ssize_t>(request.size())) {
    close(fd);
    return absl::UnavailableError("cannot send to /metrics");
  }
  std::string response;
  char buf[8192];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) response.append(buf, static_cast<size_t>(n));
  close(fd);
  const size_t body = response.find("\r\n\r\n");
  if (response.rfind("HTTP/1.0 200", 0) != 0 || body == std::string::npos) {
    return absl::UnavailableError(absl::StrCat("bad /metrics response: ", response.substr(0, 80)));
  }
  return response.substr(body + 4);
}

absl::StatusOr<double> ServerProcess::Metric(
    const std::string& name, const std::map<std::string, std::string>& labels) const {
  absl::StatusOr<std::string> text = Metrics();
  if (!text.ok()) return text.status();
  double sum = 0;
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    if (!absl::ConsumePrefix(&line, name)) continue;
    if (line.empty() || (line[0] != ' ' && line[0] != '{')) continue;  // a longer name
    const size_t space = line.rfind(' ');
    const absl::string_view label_text = line.substr(0, space);
    bool match = true;
    for (const auto& [key, value] : labels) {
      if (label_text.find(absl::StrCat(key, "=\"", value, "\"")) == absl::string_view::npos) {
        match = false;
      }
    }
    double v = 0;
    if (match && absl::SimpleAtod(line.substr(space + 1), &v)) sum += v;
  }
  return sum;
}

}  // namespace longenc::integration
