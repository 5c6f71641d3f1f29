// Implementation of the registry test harness (processes, ports, temp dirs, skopeo).
#include "tests/support/registry_harness.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>

#ifndef FERRY_SOURCE_DIR
#error "FERRY_SOURCE_DIR must be defined"
#endif

namespace ferry::testing {

TempDir::TempDir() {
  std::string tmpl = "/tmp/ferry-test-XXXXXX";
  if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

Process::Process(std::vector<std::string> argv, const std::string& log_path, bool read_port) {
  int pipefd[2] = {-1, -1};
  if (read_port && pipe(pipefd) != 0) throw std::runtime_error("pipe failed");
  const int log = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log < 0) throw std::runtime_error("cannot open " + log_path);
  pid_ = fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    setpgid(0, 0);
    dup2(read_port ? pipefd[1] : log, STDOUT_FILENO);
    dup2(log, STDERR_FILENO);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
  ::close(log);
  if (read_port) {
    ::close(pipefd[1]);
    std::string line;
    char c;
    while (::read(pipefd[0], &c, 1) == 1 && c != '\n') line += c;
    ::close(pipefd[0]);
    port_ = std::atoi(line.c_str());
    if (port_ <= 0) {
      stop();
      throw std::runtime_error("helper " + argv[0] + " " + (argv.size() > 1 ? argv[1] : "") +
                               " did not print a port; see " + log_path);
    }
  }
}

void Process::stop() {
  if (pid_ <= 0) return;
  kill(pid_, SIGTERM);
  for (int i = 0; i < 100; ++i) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

Process::~Process() { stop(); }

ControlPlane::ControlPlane(const std::string& dir) {
  const std::string log_path = dir + "/control-plane.log";
  process_ = std::make_unique<Process>(
      std::vector<std::string>{"/usr/bin/python3", support_dir() + "/kube_control_plane.py", "--dir",
                               dir + "/cp"},
      log_path);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  std::string line;
  while (kubeconfig_.empty() && std::chrono::steady_clock::now() < deadline) {
    std::ifstream log(log_path);
    while (std::getline(log, line)) {
      if (line.starts_with("READY ")) kubeconfig_ = line.substr(6);
    }
    if (kubeconfig_.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  if (kubeconfig_.empty()) {
    std::ifstream log(log_path);
    std::stringstream text;
    text << log.rdbuf();
    throw std::runtime_error("the control plane did not start:\n" + text.str());
  }
}

// A free loopback port below the ephemeral range: the registry binds it only after this returns,
// and a port from the ephemeral range can be taken meanwhile by any outgoing connection
// (tests/support/testproc.py picks ports the same way).
int free_port() {
  int low = 32768;
  if (FILE* f = std::fopen("/proc/sys/net/ipv4/ip_local_port_range", "r")) {
    if (std::fscanf(f, "%d", &low) != 1) low = 32768;
    std::fclose(f);
  }
  std::random_device rd;
  std::uniform_int_distribution<int> pick(10000, std::max(10001, low) - 1);
  for (int attempt = 0; attempt < 200; ++attempt) {
    const int port = pick(rd);
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    const bool ok = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    ::close(fd);
    if (ok) return port;
  }
  throw std::runtime_error("no free port below the ephemeral range");
}

bool wait_for_port(int port, int timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(port));
    const bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    ::close(fd);
    if (ok) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  return false;
}

CommandResult run(const std::string& cmd) {
  CommandResult r;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf{};
  while (auto n = fread(buf.data(), 1, buf.size(), p)) r.output.append(buf.data(), n);
  const int status = pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::string support_dir() { return std::string(FERRY_SOURCE_DIR) + "/tests/support"; }

namespace {

void must(const std::string& cmd) {
  auto r = run("(" + cmd + ") 2>&1");
  if (r.exit_code != 0) throw std::runtime_error("command failed (" + std::to_string(r.exit_code) + "): " + cmd + "\n" + r.output);
}

}  // namespace

Registry::Registry(RegistryOptions options) : options_(std::move(options)) {
  port_ = free_port();
  const auto d = dir_.path().string();
  std::string cfg = "version: 0.1\nlog: {level: warn}\nstorage:\n  filesystem: {rootdirectory: " + d +
                    "/data}\n  delete: {enabled: false}\nhttp:\n  addr: 127.0.0.1:" + std::to_string(port_) + "\n";
  if (options_.tls) {
    ca_file_ = d + "/ca.crt";
    must("cd " + d +
         " && openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=ferry-test-ca -keyout ca.key -out ca.crt"
         " && openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout server.key -out server.csr"
         " && printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\nextendedKeyUsage=serverAuth\\n' > ext.cnf"
         " && openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile ext.cnf"
         " -out server.crt");
    cfg += "  tls: {certificate: " + d + "/server.crt, key: " + d + "/server.key}\n";
  }
  if (!options_.htpasswd_user.empty()) {
    must("htpasswd -Bbn " + shell_quote(options_.htpasswd_user) + " " + shell_quote(options_.htpasswd_password) +
         " > " + d + "/htpasswd");
    cfg += "auth:\n  htpasswd: {realm: basic-realm, path: " + d + "/htpasswd}\n";
  } else if (!options_.token_realm.empty()) {
    cfg += "auth:\n  token: {realm: \"" + options_.token_realm + "\", service: " + options_.token_service +
           ", issuer: " + options_.token_issuer + ", rootcertbundle: " + options_.token_rootcert + "}\n";
  }
  std::ofstream(d + "/config.yml") << cfg;
  process_ = std::make_unique<Process>(std::vector<std::string>{"docker-registry", "serve", d + "/config.yml"},
                                       d + "/registry.log");
  if (!wait_for_port(port_)) {
    std::ifstream log(d + "/registry.log");
    std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
    throw std::runtime_error("docker-registry did not start on port " + std::to_string(port_) + ": " + text);
  }
}

Registry::~Registry() { process_.reset(); }

std::string Registry::skopeo_flags() const {
  std::string f = "--tls-verify=false";
  if (!options_.htpasswd_user.empty()) f += " --creds " + shell_quote(options_.htpasswd_user + ":" + options_.htpasswd_password);
  return f;
}

TokenServer::TokenServer(const std::string& user_password) {
  const auto d = dir_.path().string();
  must("cd " + d + " && openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=ferry-token -keyout token.key"
                   " -out token.crt");
  process_ = std::make_unique<Process>(
      std::vector<std::string>{"python3", support_dir() + "/token_server.py", "--key", d + "/token.key", "--cert",
                               d + "/token.crt", "--user", user_password},
      d + "/token.log", true);
}

FaultProxy::FaultProxy(const std::string& upstream, std::vector<std::string> flags) {
  std::vector<std::string> argv{"python3", support_dir() + "/fault_proxy.py", "--upstream", upstream};
  argv.insert(argv.end(), flags.begin(), flags.end());
  process_ = std::make_unique<Process>(argv, dir_ / "proxy.log", true);
}

void build_and_push(const std::string& kind, const std::vector<std::string>& args, const std::string& dest_ref,
                    const std::string& skopeo_dest_flags) {
  TempDir work;
  std::string cmd = "python3 " + support_dir() + "/oci_image.py " + kind + " " + work / "layout" + " t";
  for (const auto& a : args) cmd += " " + shell_quote(a);
  must(cmd);
  must("skopeo copy -q --all --preserve-digests " + skopeo_dest_flags + " oci:" + work / "layout" + ":t docker://" +
       dest_ref);
}

std::optional<std::string> skopeo_raw(const std::string& ref, const std::string& flags) {
  auto r = run("skopeo inspect --raw " + flags + " docker://" + ref + " 2>/dev/null");
  if (r.exit_code != 0) return std::nullopt;
  return r.output;
}

}  // namespace ferry::testing
