// Signing and sending one AWS request; the JSON protocol on top.
#include "aws/transport.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

namespace ferry::aws {

namespace json = boost::json;

Task<Result<Response>> send(registry::HttpClient& http, registry::HttpRequest req, const Credentials* creds,
                            std::string_view region, std::string_view service, std::string_view operation,
                            const Clock& clock) {
  if (creds) {
    SignableRequest s{.method = req.method, .target = req.url.target, .headers = {}, .body = req.body};
    s.headers.emplace_back("Host", req.url.host_header());
    for (const auto& h : req.headers) s.headers.push_back(h);
    const auto sig = sign(s, *creds,
                          SigningParams{.region = std::string(region),
                                        .service = std::string(service),
                                        .time = clock ? clock() : std::chrono::system_clock::now()});
    apply(s, sig);
    req.headers.clear();
    // HttpClient sets Host itself from the URL, the same value that was signed.
    for (auto& h : s.headers)
      if (h.first != "Host") req.headers.push_back(std::move(h));
  }
  auto resp = co_await http.open(std::move(req));
  if (!resp) co_return std::unexpected(from_transport(resp.error(), std::string(service), std::string(operation)));
  auto body = co_await resp->read_all(kMaxResponseBytes);
  if (!body) co_return std::unexpected(from_transport(body.error(), std::string(service), std::string(operation)));
  co_return Response{.status = resp->status(), .body = std::move(*body)};
}

void redact(Error& e, std::initializer_list<std::string_view> secrets) {
  for (auto s : secrets) {
    if (s.empty()) continue;
    for (auto pos = e.message.find(s); pos != std::string::npos; pos = e.message.find(s, pos))
      e.message.replace(pos, s.size(), "<redacted>");
  }
}

Error parse_json_error(int status, std::string_view body, std::string_view service, std::string_view operation) {
  Error e{.kind = ErrorKind::Service,
          .service = std::string(service),
          .operation = std::string(operation),
          .http_status = status};
  boost::system::error_code ec;
  auto v = json::parse(body, ec);
  if (!ec && v.is_object()) {
    const auto& o = v.as_object();
    if (auto* t = o.if_contains("__type"); t && t->is_string()) e.code = std::string(t->as_string());
    else if (auto* c = o.if_contains("code"); c && c->is_string()) e.code = std::string(c->as_string());
    for (const char* k : {"message", "Message", "errorMessage"})
      if (auto* m = o.if_contains(k); m && m->is_string()) {
        e.message = std::string(m->as_string());
        break;
      }
  } else if (auto code = xml_element(body, "Code")) {
    // The query protocol's error shape, which AWS front ends (and emulators) can answer with
    // even on a JSON API: <ErrorResponse><Error><Code>AccessDenied</Code><Message>...
    e.code = std::move(*code);
    e.message = xml_element(body, "Message").value_or("");
  } else {
    e.message = "HTTP " + std::to_string(status) + " with a body that is not JSON";
  }
  if (const auto hash = e.code.rfind('#'); hash != std::string::npos) e.code = e.code.substr(hash + 1);
  if (const auto colon = e.code.find(':'); colon != std::string::npos) e.code = e.code.substr(0, colon);
  e.retryable = status >= 500 || status == 429 || is_throttling(e.code);
  return e;
}

JsonClient::JsonClient(registry::HttpClient& http, std::shared_ptr<CredentialsProvider> creds, std::string region,
                       std::string endpoint, JsonProtocol protocol, Clock clock)
    : http_(http),
      creds_(std::move(creds)),
      region_(std::move(region)),
      endpoint_(std::move(endpoint)),
      protocol_(std::move(protocol)),
      clock_(std::move(clock)) {}

Task<Result<json::object>> JsonClient::call(std::string_view operation, const json::object& input) {
  const std::string op(operation);
  auto url = registry::Url::parse(endpoint_);
  if (!url) co_return fail(ErrorKind::Config, protocol_.service, op, "endpoint '" + endpoint_ + "': " + url.error().message);
  auto creds = co_await creds_->credentials();
  if (!creds) co_return std::unexpected(creds.error());
  registry::HttpRequest req;
  req.method = "POST";
  req.url = *url;
  if (req.url.target.empty()) req.url.target = "/";
  req.headers = {{"Content-Type", protocol_.content_type},
                 {"X-Amz-Target", protocol_.target_prefix + "." + op},
                 {"Accept", "application/json"}};
  req.body = json::serialize(input);
  auto resp = co_await send(http_, std::move(req), &*creds, region_, protocol_.service, op, clock_);
  if (!resp) co_return std::unexpected(resp.error());
  if (resp->status < 200 || resp->status >= 300) {
    auto e = parse_json_error(resp->status, resp->body, protocol_.service, op);
    redact(e, {creds->secret_access_key, creds->session_token});
    co_return std::unexpected(std::move(e));
  }
  boost::system::error_code ec;
  auto v = json::parse(resp->body.empty() ? std::string_view("{}") : std::string_view(resp->body), ec);
  if (ec || !v.is_object())
    co_return fail(ErrorKind::Protocol, protocol_.service, op, "response is not a JSON object");
  co_return std::move(v.as_object());
}

}  // namespace ferry::aws
