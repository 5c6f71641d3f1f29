// Credential providers: Secret keys, environment, STS (AssumeRole, AssumeRoleWithWebIdentity),
// container credentials, the default chain and the refreshing cache.
#include "aws/credentials.hpp"

#include <boost/json/parse.hpp>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <sstream>

#include "aws/transport.hpp"

namespace ferry::aws {

namespace json = boost::json;

namespace {

std::string now_session_name(const Clock& clock) {
  const auto t = clock ? clock() : std::chrono::system_clock::now();
  return "ferry-" + std::to_string(std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count());
}

std::string form_encode(std::initializer_list<std::pair<std::string_view, std::string_view>> fields) {
  std::string out;
  for (const auto& [k, v] : fields) {
    if (!out.empty()) out += '&';
    out += uri_encode(k, false) + "=" + uri_encode(v, false);
  }
  return out;
}

Result<std::string> read_token_file(const std::string& path, std::string_view service, std::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return fail(ErrorKind::Credentials, std::string(service), std::string(what), "cannot read token file " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  auto token = ss.str();
  while (!token.empty() && (token.back() == '\n' || token.back() == '\r' || token.back() == ' ')) token.pop_back();
  if (token.empty()) return fail(ErrorKind::Credentials, std::string(service), std::string(what), "token file " + path + " is empty");
  return token;
}

// POSTs an STS Query-protocol form; `signer` non-null signs it. `secret` (a web identity token)
// is redacted from errors along with the signer's secret key and session token.
Task<Result<Credentials>> sts_call(registry::HttpClient& http, const StsOptions& sts, std::string_view operation,
                                  std::string body, const Credentials* signer, const Clock& clock,
                                  std::string_view secret = {}) {
  const std::string op(operation);
  const auto endpoint = sts.sts_endpoint();
  auto url = registry::Url::parse(endpoint);
  if (!url) co_return fail(ErrorKind::Config, "sts", op, "endpoint '" + endpoint + "': " + url.error().message);
  registry::HttpRequest req;
  req.method = "POST";
  req.url = *url;
  req.headers = {{"Content-Type", "application/x-www-form-urlencoded; charset=utf-8"}, {"Accept", "text/xml"}};
  req.body = std::move(body);
  auto resp = co_await send(http, std::move(req), signer, sts.region, "sts", op, clock);
  if (!resp) co_return std::unexpected(resp.error());
  if (resp->status < 200 || resp->status >= 300) {
    auto e = parse_sts_error(resp->body, resp->status, op);
    redact(e, {secret, signer ? std::string_view(signer->secret_access_key) : std::string_view(),
               signer ? std::string_view(signer->session_token) : std::string_view()});
    co_return std::unexpected(std::move(e));
  }
  co_return parse_sts_credentials(resp->body, op);
}

}  // namespace

Environment process_environment() {
  return [](std::string_view name) -> std::optional<std::string> {
    const char* v = std::getenv(std::string(name).c_str());
    if (!v || !*v) return std::nullopt;
    return std::string(v);
  };
}

std::string StsOptions::sts_endpoint() const { return endpoint.empty() ? default_endpoint("sts", region) : endpoint; }

// ---------------------------------------------------------------- pure parts

std::optional<std::string> xml_element(std::string_view xml, std::string_view name) {
  const std::string open = "<" + std::string(name) + ">";
  const std::string close = "</" + std::string(name) + ">";
  const auto start = xml.find(open);
  if (start == std::string_view::npos) return std::nullopt;
  const auto begin = start + open.size();
  const auto end = xml.find(close, begin);
  if (end == std::string_view::npos) return std::nullopt;
  const auto raw = xml.substr(begin, end - begin);
  std::string out;
  out.reserve(raw.size());
  for (std::size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] != '&') {
      out.push_back(raw[i]);
      continue;
    }
    static constexpr std::pair<std::string_view, char> entities[] = {
        {"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
    bool matched = false;
    for (const auto& [ent, ch] : entities) {
      if (raw.substr(i, ent.size()) == ent) {
        out.push_back(ch);
        i += ent.size() - 1;
        matched = true;
        break;
      }
    }
    if (!matched) out.push_back('&');
  }
  return out;
}

std::optional<std::chrono::system_clock::time_point> parse_iso8601(std::string_view text) {
  // YYYY-MM-DDTHH:MM:SS[.fff][Z|+HH:MM|-HH:MM]
  if (text.size() < 19 || text[4] != '-' || text[7] != '-' || (text[10] != 'T' && text[10] != ' ') || text[13] != ':' ||
      text[16] != ':')
    return std::nullopt;
  auto num = [&](std::size_t pos, std::size_t len) -> int {
    int v = 0;
    for (std::size_t i = pos; i < pos + len; ++i) {
      if (text[i] < '0' || text[i] > '9') return -1;
      v = v * 10 + (text[i] - '0');
    }
    return v;
  };
  std::tm tm{};
  tm.tm_year = num(0, 4) - 1900;
  tm.tm_mon = num(5, 2) - 1;
  tm.tm_mday = num(8, 2);
  tm.tm_hour = num(11, 2);
  tm.tm_min = num(14, 2);
  tm.tm_sec = num(17, 2);
  if (tm.tm_year < 0 || tm.tm_mon < 0 || tm.tm_mday < 0 || tm.tm_hour < 0 || tm.tm_min < 0 || tm.tm_sec < 0)
    return std::nullopt;
  std::size_t i = 19;
  if (i < text.size() && text[i] == '.') {
    ++i;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') ++i;
  }
  long offset = 0;
  if (i < text.size()) {
    if (text[i] == 'Z' && i + 1 == text.size()) {
    } else if ((text[i] == '+' || text[i] == '-') && text.size() - i == 6 && text[i + 3] == ':') {
      const int h = num(i + 1, 2), m = num(i + 4, 2);
      if (h < 0 || m < 0) return std::nullopt;
      offset = (text[i] == '+' ? 1 : -1) * (h * 3600L + m * 60L);
    } else {
      return std::nullopt;
    }
  }
  const std::time_t t = timegm(&tm) - offset;
  if (t >= kMaxClockSeconds || t <= -kMaxClockSeconds) return std::nullopt;  // year 4052 overflowed
  return std::chrono::system_clock::from_time_t(t);
}

Result<Credentials> parse_sts_credentials(std::string_view xml, std::string_view operation) {
  const auto block = xml_element(xml, "Credentials");
  if (!block) return fail(ErrorKind::Protocol, "sts", std::string(operation), "response has no <Credentials>");
  Credentials c;
  auto id = xml_element(*block, "AccessKeyId");
  auto secret = xml_element(*block, "SecretAccessKey");
  auto token = xml_element(*block, "SessionToken");
  auto exp = xml_element(*block, "Expiration");
  if (!id || !secret || !token || id->empty() || secret->empty())
    return fail(ErrorKind::Protocol, "sts", std::string(operation),
                "<Credentials> lacks AccessKeyId, SecretAccessKey or SessionToken");
  c.access_key_id = std::move(*id);
  c.secret_access_key = std::move(*secret);
  c.session_token = std::move(*token);
  if (exp) {
    c.expiration = parse_iso8601(*exp);
    if (!c.expiration) return fail(ErrorKind::Protocol, "sts", std::string(operation), "unreadable <Expiration> '" + *exp + "'");
  }
  return c;
}

Error parse_sts_error(std::string_view xml, int status, std::string_view operation) {
  Error e{.kind = ErrorKind::Service, .service = "sts", .operation = std::string(operation), .http_status = status};
  e.code = xml_element(xml, "Code").value_or("");
  e.message = xml_element(xml, "Message").value_or(e.code.empty() ? "unreadable error response" : "");
  e.retryable = status >= 500 || is_throttling(e.code);
  return e;
}

Result<Credentials> parse_container_credentials(std::string_view body) {
  const std::string svc = "container credentials";
  boost::system::error_code ec;
  auto v = json::parse(body, ec);
  if (ec || !v.is_object()) return fail(ErrorKind::Protocol, svc, "GET", "response is not a JSON object");
  const auto& o = v.as_object();
  auto str = [&](const char* k) -> std::string {
    auto* p = o.if_contains(k);
    return p && p->is_string() ? std::string(p->as_string()) : std::string();
  };
  Credentials c{.access_key_id = str("AccessKeyId"), .secret_access_key = str("SecretAccessKey"), .session_token = str("Token")};
  if (c.access_key_id.empty() || c.secret_access_key.empty())
    return fail(ErrorKind::Protocol, svc, "GET", "response lacks AccessKeyId or SecretAccessKey");
  if (const auto exp = str("Expiration"); !exp.empty()) {
    c.expiration = parse_iso8601(exp);
    if (!c.expiration) return fail(ErrorKind::Protocol, svc, "GET", "unreadable Expiration '" + exp + "'");
  }
  return c;
}

// ---------------------------------------------------------------- providers

Task<Result<Credentials>> StaticProvider::credentials() { co_return creds_; }

Task<Result<Credentials>> EnvironmentProvider::credentials() {
  auto id = env_("AWS_ACCESS_KEY_ID");
  auto secret = env_("AWS_SECRET_ACCESS_KEY");
  if (!id || !secret)
    co_return fail(ErrorKind::Credentials, "environment", "", "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must both be set");
  co_return Credentials{.access_key_id = *id, .secret_access_key = *secret,
                        .session_token = env_("AWS_SESSION_TOKEN").value_or("")};
}

AssumeRoleProvider::AssumeRoleProvider(registry::HttpClient& http, std::shared_ptr<CredentialsProvider> base,
                                       std::string role_arn, std::string session_name, StsOptions sts, Clock clock)
    : http_(http),
      base_(std::move(base)),
      role_arn_(std::move(role_arn)),
      session_name_(std::move(session_name)),
      sts_(std::move(sts)),
      clock_(std::move(clock)) {}

Task<Result<Credentials>> AssumeRoleProvider::credentials() {
  auto base = co_await base_->credentials();
  if (!base) co_return std::unexpected(base.error());
  const auto session = session_name_.empty() ? now_session_name(clock_) : session_name_;
  auto body = form_encode({{"Action", "AssumeRole"}, {"Version", "2011-06-15"}, {"RoleArn", role_arn_},
                           {"RoleSessionName", session}});
  co_return co_await sts_call(http_, sts_, "AssumeRole", std::move(body), &*base, clock_);
}

WebIdentityProvider::WebIdentityProvider(registry::HttpClient& http, std::string role_arn, std::string token_file,
                                         std::string session_name, StsOptions sts)
    : http_(http),
      role_arn_(std::move(role_arn)),
      token_file_(std::move(token_file)),
      session_name_(std::move(session_name)),
      sts_(std::move(sts)) {}

Task<Result<Credentials>> WebIdentityProvider::credentials() {
  auto token = read_token_file(token_file_, "sts", "AssumeRoleWithWebIdentity");
  if (!token) co_return std::unexpected(token.error());
  const auto session = session_name_.empty() ? now_session_name({}) : session_name_;
  auto body = form_encode({{"Action", "AssumeRoleWithWebIdentity"}, {"Version", "2011-06-15"}, {"RoleArn", role_arn_},
                           {"RoleSessionName", session}, {"WebIdentityToken", *token}});
  co_return co_await sts_call(http_, sts_, "AssumeRoleWithWebIdentity", std::move(body), nullptr, {}, *token);
}

ContainerProvider::ContainerProvider(registry::HttpClient& http, std::string full_uri, std::string token,
                                     std::string token_file)
    : http_(http), uri_(std::move(full_uri)), token_(std::move(token)), token_file_(std::move(token_file)) {}

Task<Result<Credentials>> ContainerProvider::credentials() {
  const std::string svc = "container credentials";
  auto url = registry::Url::parse(uri_);
  if (!url) co_return fail(ErrorKind::Config, svc, "GET", "AWS_CONTAINER_CREDENTIALS_FULL_URI '" + uri_ + "' is not a URL");
  std::string token = token_;
  if (!token_file_.empty()) {
    auto t = read_token_file(token_file_, svc, "GET");
    if (!t) co_return std::unexpected(t.error());
    token = std::move(*t);
  }
  registry::HttpRequest req;
  req.url = *url;
  req.headers = {{"Accept", "application/json"}};
  if (!token.empty()) req.headers.emplace_back("Authorization", token);
  auto resp = co_await send(http_, std::move(req), nullptr, "", svc, "GET", {});
  if (!resp) co_return std::unexpected(resp.error());
  if (resp->status != 200) {
    // The body may echo request details; only its status and a short, secret-free summary are kept.
    Error e{.kind = ErrorKind::Service, .service = svc, .operation = "GET", .http_status = resp->status};
    e.message = "credentials endpoint " + url->origin() + " answered " + std::to_string(resp->status);
    e.retryable = resp->status >= 500 || resp->status == 429;
    co_return std::unexpected(e);
  }
  co_return parse_container_credentials(resp->body);
}

CachingProvider::CachingProvider(std::shared_ptr<CredentialsProvider> inner, Clock clock, std::chrono::seconds margin)
    : inner_(std::move(inner)), clock_(clock ? std::move(clock) : Clock([] { return std::chrono::system_clock::now(); })),
      margin_(margin) {}

Task<Result<Credentials>> CachingProvider::credentials() {
  if (cached_ && (!cached_->expiration || clock_() + margin_ < *cached_->expiration)) co_return *cached_;
  auto fresh = co_await inner_->credentials();
  if (!fresh) co_return std::unexpected(fresh.error());
  cached_ = *fresh;
  co_return *fresh;
}

Result<std::shared_ptr<CredentialsProvider>> from_secret(const std::map<std::string, std::string>& data,
                                                         registry::HttpClient& http, StsOptions sts, Clock clock) {
  auto get = [&](const char* k) -> std::string {
    auto it = data.find(k);
    return it == data.end() ? std::string() : it->second;
  };
  Credentials c{.access_key_id = get("aws_access_key_id"), .secret_access_key = get("aws_secret_access_key"),
                .session_token = get("aws_session_token")};
  if (c.access_key_id.empty() || c.secret_access_key.empty())
    return fail(ErrorKind::Config, "credentials", "Secret",
                "the Secret needs aws_access_key_id and aws_secret_access_key (optional: aws_session_token, role_arn)");
  std::shared_ptr<CredentialsProvider> p = std::make_shared<StaticProvider>(std::move(c));
  if (const auto role = get("role_arn"); !role.empty())
    p = std::make_shared<AssumeRoleProvider>(http, p, role, "", std::move(sts), clock);
  return std::make_shared<CachingProvider>(p, clock);
}

Result<std::shared_ptr<CredentialsProvider>> default_chain(registry::HttpClient& http, Environment env, StsOptions sts,
                                                           Clock clock) {
  std::shared_ptr<CredentialsProvider> p;
  if (env("AWS_ACCESS_KEY_ID") && env("AWS_SECRET_ACCESS_KEY")) {
    p = std::make_shared<EnvironmentProvider>(env);
  } else if (auto role = env("AWS_ROLE_ARN"), file = env("AWS_WEB_IDENTITY_TOKEN_FILE"); role && file) {
    p = std::make_shared<WebIdentityProvider>(http, *role, *file, env("AWS_ROLE_SESSION_NAME").value_or(""), std::move(sts));
  } else if (auto uri = env("AWS_CONTAINER_CREDENTIALS_FULL_URI")) {
    p = std::make_shared<ContainerProvider>(http, *uri, env("AWS_CONTAINER_AUTHORIZATION_TOKEN").value_or(""),
                                            env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE").value_or(""));
  } else {
    return fail(ErrorKind::Credentials, "credentials", "default chain",
                "no AWS credentials: set a credentialsSecretRef, or AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY, or "
                "AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE, or AWS_CONTAINER_CREDENTIALS_FULL_URI");
  }
  return std::make_shared<CachingProvider>(p, clock);
}

}  // namespace ferry::aws
