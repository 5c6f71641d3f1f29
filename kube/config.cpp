// Kubeconfig and in-cluster configuration loading (pure apart from reading the files named), and
// the credentials sent with each request, exec credential plugins included.
#include "kube/config.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/json.hpp>
#include <boost/url/parse.hpp>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "reconcilers/model/clock.hpp"
#include "reconcilers/model/parse.hpp"
#include "reconcilers/model/secret_data.hpp"

extern char** environ;

namespace ferry::kube {

namespace json = boost::json;

namespace {

std::expected<std::string, std::string> read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return std::unexpected("cannot read " + p.string());
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

const json::object* find_named(const json::object& root, std::string_view list,
                               std::string_view name, std::string_view field) {
  const auto* arr = root.if_contains(list);
  if (!arr || !arr->is_array()) return nullptr;
  for (const auto& e : arr->as_array()) {
    const auto* o = e.if_object();
    if (!o) continue;
    const auto* n = o->if_contains("name");
    if (n && n->is_string() && n->as_string() == name) {
      const auto* inner = o->if_contains(field);
      return inner ? inner->if_object() : nullptr;
    }
  }
  return nullptr;
}

std::string str(const json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  return v && v->is_string() ? std::string(v->as_string()) : std::string();
}

// `<key>-data` (base64) or `<key>` (a file path); empty when neither is set.
std::expected<std::string, std::string> data_or_file(const json::object& o, const std::string& key,
                                                     const std::filesystem::path& dir) {
  if (auto data = str(o, key + "-data"); !data.empty()) {
    auto decoded = model::decode_base64(data);
    if (!decoded) return std::unexpected(key + "-data is not valid base64");
    return *decoded;
  }
  if (auto file = str(o, key); !file.empty()) {
    std::filesystem::path p(file);
    if (p.is_relative()) p = dir / p;
    return read_file(p);
  }
  return std::string();
}

constexpr std::string_view kExecV1 = "client.authentication.k8s.io/v1";
constexpr std::string_view kExecV1beta1 = "client.authentication.k8s.io/v1beta1";
constexpr std::string_view kExecExtension = "client.authentication.k8s.io/exec";

// ExecCredentialSpec.cluster, shadowing the kubeconfig's cluster as client-go encodes it (the CA
// as base64 bytes, whether it came from a file or from -data).
json::object exec_cluster_info(const json::object& cluster, const ClusterConfig& c) {
  json::object o{{"server", c.server}};
  if (auto v = str(cluster, "tls-server-name"); !v.empty()) o["tls-server-name"] = v;
  if (c.insecure_skip_tls_verify) o["insecure-skip-tls-verify"] = true;
  if (!c.ca_pem.empty()) o["certificate-authority-data"] = model::encode_base64(c.ca_pem);
  if (auto v = str(cluster, "proxy-url"); !v.empty()) o["proxy-url"] = v;
  if (const auto* v = cluster.if_contains("disable-compression"); v && v->is_bool() && v->as_bool())
    o["disable-compression"] = true;
  if (const auto* ext = cluster.if_contains("extensions"); ext && ext->is_array()) {
    for (const auto& e : ext->as_array()) {
      const auto* eo = e.if_object();
      if (!eo || str(*eo, "name") != kExecExtension) continue;
      if (const auto* cfg = eo->if_contains("extension")) o["config"] = *cfg;
    }
  }
  return o;
}

// users[].user.exec, validated as client-go's clientcmd does.
std::expected<ExecConfig, std::string> parse_exec(const json::value& v,
                                                  const std::string& user_name,
                                                  const json::object& cluster,
                                                  const ClusterConfig& c,
                                                  const std::filesystem::path& dir) {
  const std::string where = "kubeconfig: user \"" + user_name + "\": exec";
  const auto* o = v.if_object();
  if (!o) return std::unexpected(where + " must be a mapping");
  ExecConfig e;
  e.user = user_name;
  e.command = str(*o, "command");
  if (e.command.empty()) return std::unexpected(where + ": command is required");
  if (std::filesystem::path p(e.command);
      p.is_relative() && e.command.find('/') != std::string::npos) {
    std::error_code ec;
    auto abs = std::filesystem::absolute(dir / p, ec);
    e.command = (ec ? dir / p : abs).lexically_normal().string();
  }
  if (const auto* args = o->if_contains("args"); args && !args->is_null()) {
    if (!args->is_array()) return std::unexpected(where + ": args must be a list of strings");
    for (const auto& a : args->as_array()) {
      if (!a.is_string()) return std::unexpected(where + ": args must be a list of strings");
      e.args.emplace_back(a.as_string());
    }
  }
  if (const auto* env = o->if_contains("env"); env && !env->is_null()) {
    if (!env->is_array()) return std::unexpected(where + ": env must be a list of {name, value}");
    for (const auto& item : env->as_array()) {
      const auto* kv = item.if_object();
      if (!kv) return std::unexpected(where + ": env must be a list of {name, value}");
      auto name = str(*kv, "name");
      if (name.empty()) return std::unexpected(where + ": env entry without a name");
      const auto* value = kv->if_contains("value");
      if (value && !value->is_string() && !value->is_null())
        return std::unexpected(where + ": env " + name + ": value must be a string");
      std::string text = value && value->is_string() ? std::string(value->as_string()) : "";
      e.env.emplace_back(std::move(name), std::move(text));
    }
  }
  e.api_version = str(*o, "apiVersion");
  if (e.api_version.empty()) return std::unexpected(where + ": apiVersion is required");
  if (e.api_version != kExecV1 && e.api_version != kExecV1beta1) {
    return std::unexpected(where + ": apiVersion \"" + e.api_version + "\" is not supported (use " +
                           std::string(kExecV1) + " or " + std::string(kExecV1beta1) + ")");
  }
  // client-go defaults interactiveMode to IfAvailable for v1beta1 only; v1 must say it.
  auto mode = str(*o, "interactiveMode");
  if (mode.empty() && e.api_version == kExecV1beta1) mode = "IfAvailable";
  if (mode.empty())
    return std::unexpected(where + ": interactiveMode is required with " + e.api_version);
  if (mode == "Always") {
    return std::unexpected(where +
                           ": interactiveMode Always needs a terminal, which Ferry does not have "
                           "(use IfAvailable or Never)");
  }
  if (mode != "Never" && mode != "IfAvailable")
    return std::unexpected(where + ": interactiveMode \"" + mode +
                           "\" is not Never, IfAvailable or Always");
  e.install_hint = str(*o, "installHint");
  if (const auto* pci = o->if_contains("provideClusterInfo"); pci && pci->is_bool())
    e.provide_cluster_info = pci->as_bool();
  json::object spec{{"interactive", false}};
  if (e.provide_cluster_info) spec["cluster"] = exec_cluster_info(cluster, c);
  e.exec_info = json::serialize(json::object{
      {"apiVersion", e.api_version}, {"kind", "ExecCredential"}, {"spec", std::move(spec)}});
  return e;
}

// "kubeconfig user "eks": exec plugin "aws": <why> (installHint)"
std::string exec_error(const ExecConfig& e, const std::string& why) {
  std::string s = "kubeconfig user \"" + e.user + "\": exec plugin \"" + e.command + "\": " + why;
  if (!e.install_hint.empty()) s += "; " + e.install_hint;
  return s;
}

}  // namespace

std::expected<ServerAddress, std::string> parse_server(std::string_view server) {
  auto url = boost::urls::parse_absolute_uri(server);
  if (!url) return std::unexpected("server \"" + std::string(server) + "\" is not an absolute URL");
  ServerAddress a;
  if (url->scheme() == "https") {
    a.tls = true;
  } else if (url->scheme() == "http") {
    a.tls = false;
  } else {
    return std::unexpected("server \"" + std::string(server) + "\": scheme must be http or https");
  }
  a.host = url->host_address();
  if (a.host.empty()) return std::unexpected("server \"" + std::string(server) + "\" has no host");
  a.port = url->has_port() ? std::string(url->port()) : (a.tls ? "443" : "80");
  a.base_path = url->path();
  while (!a.base_path.empty() && a.base_path.back() == '/') a.base_path.pop_back();
  return a;
}

std::expected<ClusterConfig, std::string> parse_kubeconfig(std::string_view text,
                                                           const std::filesystem::path& dir,
                                                           std::string_view context) {
  auto docs = model::load_documents(text, model::Format::Yaml);
  if (!docs) return std::unexpected("kubeconfig: " + docs.error().message);
  if (docs->empty() || !docs->front().is_object())
    return std::unexpected("kubeconfig: not a mapping");
  const auto& root = docs->front().as_object();
  std::string ctx_name(context);
  if (ctx_name.empty()) ctx_name = str(root, "current-context");
  if (ctx_name.empty())
    return std::unexpected("kubeconfig: no current-context and no --context given");
  const auto* ctx = find_named(root, "contexts", ctx_name, "context");
  if (!ctx) return std::unexpected("kubeconfig: context \"" + ctx_name + "\" not found");
  ClusterConfig c;
  c.context = ctx_name;
  if (auto ns = str(*ctx, "namespace"); !ns.empty()) c.default_namespace = ns;
  const auto cluster_name = str(*ctx, "cluster");
  const auto* cluster = find_named(root, "clusters", cluster_name, "cluster");
  if (!cluster) return std::unexpected("kubeconfig: cluster \"" + cluster_name + "\" not found");
  c.server = str(*cluster, "server");
  if (c.server.empty())
    return std::unexpected("kubeconfig: cluster \"" + cluster_name + "\" has no server");
  if (auto s = parse_server(c.server); !s) return std::unexpected("kubeconfig: " + s.error());
  if (const auto* v = cluster->if_contains("insecure-skip-tls-verify"); v && v->is_bool()) {
    c.insecure_skip_tls_verify = v->as_bool();
  }
  auto ca = data_or_file(*cluster, "certificate-authority", dir);
  if (!ca) return std::unexpected("kubeconfig: " + ca.error());
  c.ca_pem = *ca;
  if (const auto user_name = str(*ctx, "user"); !user_name.empty()) {
    const auto* user = find_named(root, "users", user_name, "user");
    if (!user) return std::unexpected("kubeconfig: user \"" + user_name + "\" not found");
    auto cert = data_or_file(*user, "client-certificate", dir);
    if (!cert) return std::unexpected("kubeconfig: " + cert.error());
    auto key = data_or_file(*user, "client-key", dir);
    if (!key) return std::unexpected("kubeconfig: " + key.error());
    c.client_cert_pem = *cert;
    c.client_key_pem = *key;
    if (c.client_cert_pem.empty() != c.client_key_pem.empty()) {
      return std::unexpected("kubeconfig: user \"" + user_name +
                             "\" needs both client-certificate and client-key");
    }
    c.token = str(*user, "token");
    if (auto tf = str(*user, "tokenFile"); !tf.empty() && c.token.empty()) {
      std::filesystem::path p(tf);
      c.token_file = p.is_relative() ? dir / p : p;
    }
    if (user->contains("auth-provider")) {
      return std::unexpected("kubeconfig: user \"" + user_name +
                             "\" uses auth-provider credentials, which Ferry does not support "
                             "(client-go removed them; use an exec plugin)");
    }
    if (const auto* ex = user->if_contains("exec"); ex && !ex->is_null()) {
      auto e = parse_exec(*ex, user_name, *cluster, c, dir);
      if (!e) return std::unexpected(e.error());
      c.exec = std::move(*e);
    }
  }
  return c;
}

std::expected<ClusterConfig, std::string> load_kubeconfig(const std::filesystem::path& file,
                                                          std::string_view context) {
  auto text = read_file(file);
  if (!text) return std::unexpected(text.error());
  return parse_kubeconfig(*text, file.parent_path(), context);
}

std::expected<ClusterConfig, std::string> load_in_cluster(const EnvLookup& env,
                                                          const std::filesystem::path& sa_dir) {
  auto host = env("KUBERNETES_SERVICE_HOST");
  auto port = env("KUBERNETES_SERVICE_PORT");
  if (!host || host->empty() || !port || port->empty()) {
    return std::unexpected(
        "not running in a cluster (KUBERNETES_SERVICE_HOST/PORT unset); pass --kubeconfig");
  }
  ClusterConfig c;
  c.context = "in-cluster";
  const bool v6 = host->find(':') != std::string::npos;
  c.server = "https://" + (v6 ? "[" + *host + "]" : *host) + ":" + *port;
  c.token_file = sa_dir / "token";
  if (!std::filesystem::exists(c.token_file)) {
    return std::unexpected("in-cluster: " + c.token_file.string() + " does not exist");
  }
  auto ca = read_file(sa_dir / "ca.crt");
  if (!ca) return std::unexpected("in-cluster: " + ca.error());
  c.ca_pem = *ca;
  if (auto ns = read_file(sa_dir / "namespace"); ns && !ns->empty()) c.default_namespace = *ns;
  return c;
}

std::expected<ExecCredential, std::string> parse_exec_credential(std::string_view out,
                                                                 const ExecConfig& exec) {
  boost::system::error_code ec;
  auto v = json::parse(out, ec);
  if (ec) return std::unexpected("its output is not JSON (" + ec.message() + ")");
  const auto* o = v.if_object();
  if (!o) return std::unexpected("its output is not a JSON object");
  if (auto kind = str(*o, "kind"); kind != "ExecCredential")
    return std::unexpected("it printed kind \"" + kind + "\", not ExecCredential");
  if (auto av = str(*o, "apiVersion"); av != exec.api_version) {
    return std::unexpected("it is configured to use API version " + exec.api_version +
                           " and printed version \"" + av + "\"");
  }
  const auto* status = o->if_contains("status");
  if (!status || !status->is_object()) return std::unexpected("it printed no status");
  const auto& st = status->as_object();
  ExecCredential c;
  c.token = str(st, "token");
  c.client_cert_pem = str(st, "clientCertificateData");
  c.client_key_pem = str(st, "clientKeyData");
  if (c.token.empty() && c.client_cert_pem.empty() && c.client_key_pem.empty())
    return std::unexpected("it printed neither a token nor a certificate and key");
  if (c.client_cert_pem.empty() != c.client_key_pem.empty())
    return std::unexpected("it printed a certificate or a key, not both");
  if (const auto* exp = st.if_contains("expirationTimestamp"); exp && !exp->is_null()) {
    auto t = exp->is_string() ? model::parse_rfc3339(exp->as_string()) : std::nullopt;
    if (!t) return std::unexpected("status.expirationTimestamp is not an RFC 3339 time");
    c.expiry = *t;
  }
  return c;
}

// posix_spawn rather than Boost.Process: three file actions are all it takes, and the tree links
// no Boost.Process. The child gets an empty signal mask and default dispositions, whatever the
// operator's threads block or ignore.
std::expected<std::string, std::string> run_exec_plugin(const ExecConfig& exec,
                                                        std::chrono::milliseconds timeout) {
  constexpr std::string_view kInfo = "KUBERNETES_EXEC_INFO";
  auto overridden = [&](std::string_view kv) {
    const auto name = kv.substr(0, kv.find('='));
    if (name == kInfo) return true;
    return std::ranges::any_of(exec.env, [&](const auto& e) { return e.first == name; });
  };
  std::vector<std::string> env;
  for (char** e = environ; e && *e; ++e) {
    if (!overridden(*e)) env.emplace_back(*e);
  }
  for (const auto& [k, v] : exec.env) env.push_back(k + "=" + v);
  env.push_back(std::string(kInfo) + "=" + exec.exec_info);
  std::vector<char*> envp;
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<std::string> args{exec.command};
  args.insert(args.end(), exec.args.begin(), exec.args.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0)
    return std::unexpected(std::string("pipe: ") + std::strerror(errno));
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);  // not interactive
  posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, defaults;
  sigemptyset(&none);
  sigfillset(&defaults);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  pid_t pid = -1;
  const int rc =
      ::posix_spawnp(&pid, exec.command.c_str(), &actions, &attr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  ::close(fds[1]);
  if (rc != 0) {
    ::close(fds[0]);
    if (rc == ENOENT) {
      return std::unexpected(exec.command.find('/') == std::string::npos
                                 ? "executable not found on PATH"
                                 : "executable not found");
    }
    return std::unexpected(std::string("cannot run it: ") + std::strerror(rc));
  }

  constexpr std::size_t kMaxOutput = 4 * 1024 * 1024;
  std::string out;
  bool timed_out = false, too_long = false;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd p{fds[0], POLLIN, 0};
    const int n = ::poll(&p, 1, static_cast<int>(std::min<long long>(left.count(), 1000)));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) continue;
    char buf[16384];
    const ssize_t got = ::read(fds[0], buf, sizeof buf);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;  // EOF: the plugin closed its stdout
    out.append(buf, static_cast<std::size_t>(got));
    if (out.size() > kMaxOutput) {
      too_long = true;
      break;
    }
  }
  ::close(fds[0]);
  if (timed_out || too_long) ::kill(pid, SIGKILL);  // our own child, by its pid
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) {
    const auto ms = timeout.count();
    const auto limit = ms % 1000 ? std::to_string(ms) + "ms" : std::to_string(ms / 1000) + "s";
    return std::unexpected("did not finish within " + limit);
  }
  if (too_long) return std::unexpected("printed more than 4 MiB");
  if (WIFEXITED(status) && WEXITSTATUS(status) != 0)
    return std::unexpected("exited with status " + std::to_string(WEXITSTATUS(status)));
  if (WIFSIGNALED(status))
    return std::unexpected("killed by signal " + std::to_string(WTERMSIG(status)));
  return out;
}

TokenSource::TokenSource(const ClusterConfig& config, ExecRunner runner, Clock clock)
    : static_token_(config.token),
      file_(config.token_file),
      exec_(config.exec),
      runner_(std::move(runner)),
      clock_(std::move(clock)) {
  if (!runner_) runner_ = [](const ExecConfig& e) { return run_exec_plugin(e, kExecTimeout); };
  if (!clock_) clock_ = [] { return std::chrono::system_clock::now(); };
}

std::string TokenSource::token() {
  if (exec_) {
    auto c = credential();
    return c ? c->token : std::string();
  }
  if (file_.empty()) return static_token_;
  std::lock_guard lock(mutex_);
  const auto now = std::chrono::steady_clock::now();
  std::error_code ec;
  const auto mtime = std::filesystem::last_write_time(file_, ec);
  if (cached_.empty() || (!ec && mtime != mtime_) || now - read_at_ > std::chrono::minutes(1)) {
    if (auto t = read_file(file_)) {
      cached_ = *t;
      while (!cached_.empty() && (cached_.back() == '\n' || cached_.back() == '\r'))
        cached_.pop_back();
      mtime_ = mtime;
      read_at_ = now;
    }
  }
  return cached_;
}

std::expected<Credential, std::string> TokenSource::credential() {
  if (!exec_) return Credential{token(), {}, {}, 0};
  std::lock_guard lock(mutex_);
  const auto now = clock_();
  if (!exec_cached_ || (exec_cached_->expiry && now >= refresh_at_)) {
    auto out = runner_(*exec_);
    if (!out) return std::unexpected(exec_error(*exec_, out.error()));
    auto cred = parse_exec_credential(*out, *exec_);
    if (!cred) return std::unexpected(exec_error(*exec_, cred.error()));
    if (cred->expiry) {
      // A little before the expiry, so a request never leaves with a token about to lapse; half
      // the lifetime for a short-lived one, so that it is not fetched for every request.
      const auto lifetime = std::chrono::duration_cast<std::chrono::seconds>(*cred->expiry - now);
      const auto margin =
          std::clamp(lifetime / 2, std::chrono::seconds(0), std::chrono::seconds(kRefreshMargin));
      refresh_at_ = *cred->expiry - margin;
    }
    exec_cached_ = std::move(*cred);
    ++generation_;
  }
  return Credential{exec_cached_->token, exec_cached_->client_cert_pem,
                    exec_cached_->client_key_pem, generation_};
}

bool TokenSource::invalidate(std::uint64_t generation) {
  if (!exec_) return false;
  std::lock_guard lock(mutex_);
  if (exec_cached_ && generation == generation_) exec_cached_.reset();
  return true;
}

std::expected<ClusterConfig, std::string> load_default_config(const std::string& kubeconfig,
                                                              std::string_view context) {
  std::string file = kubeconfig;
  if (file.empty()) {
    if (const char* env = std::getenv("KUBECONFIG"); env && *env) file = env;
  }
  if (!file.empty()) return load_kubeconfig(file, context);
  auto config = load_in_cluster([](const char* k) -> std::optional<std::string> {
    const char* v = std::getenv(k);
    return v ? std::optional<std::string>(v) : std::nullopt;
  });
  if (config) return config;
  const char* home = std::getenv("HOME");
  if (home && std::filesystem::exists(std::filesystem::path(home) / ".kube/config"))
    return load_kubeconfig(std::filesystem::path(home) / ".kube/config", context);
  return config;
}

}  // namespace ferry::kube
