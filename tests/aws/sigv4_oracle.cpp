// Reads a JSON array of request descriptions on stdin, signs each with aws::sign, prints a JSON
// array of {canonical_request, authorization}; test_sigv4_botocore.py compares with botocore.
// Input: {method, target, headers:[[k,v]...], body, access_key, secret_key, token, region,
//         service, time:"YYYYMMDDTHHMMSSZ", content_sha256:bool}
#include <boost/json.hpp>
#include <ctime>
#include <iostream>
#include <iterator>

#include "aws/credentials.hpp"
#include "aws/sigv4.hpp"

namespace json = boost::json;
using namespace ferry::aws;

int main() {
  const std::string input((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
  json::array out;
  const auto doc = json::parse(input);
  for (const auto& v : doc.as_array()) {
    const auto& o = v.as_object();
    auto s = [&](const char* k) { return std::string(o.at(k).as_string()); };
    SignableRequest req{.method = s("method"), .target = s("target"), .headers = {}, .body = s("body")};
    for (const auto& h : o.at("headers").as_array())
      req.headers.emplace_back(std::string(h.as_array()[0].as_string()), std::string(h.as_array()[1].as_string()));
    const auto t = s("time");
    std::tm tm{};
    strptime(t.c_str(), "%Y%m%dT%H%M%SZ", &tm);
    const Credentials creds{.access_key_id = s("access_key"), .secret_access_key = s("secret_key"), .session_token = s("token")};
    const auto sig = sign(req, creds,
                          SigningParams{.region = s("region"), .service = s("service"),
                                        .time = std::chrono::system_clock::from_time_t(timegm(&tm)),
                                        .add_content_sha256 = o.at("content_sha256").as_bool()});
    out.push_back(json::object{{"canonical_request", sig.canonical_request}, {"authorization", sig.authorization}});
  }
  std::cout << json::serialize(out) << "\n";
  return 0;
}
