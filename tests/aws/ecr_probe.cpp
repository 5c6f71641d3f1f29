// A small command-line driver of aws::EcrClient / SqsClient / the credential chain for
// test_ecr_moto.py: one operation per run, the result as one JSON line on stdout, exit 1 with
// {"error": {...}} on failure. Credentials come from the default chain (the environment).
// With --secret FILE (a JSON object of a Secret's data) the credentials come from those keys instead.
//   ecr_probe [--endpoint URL] [--sts-endpoint URL] [--region R] [--registry-id ID] [--secret FILE]
//             COMMAND ARGS...
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <fstream>
#include <iostream>
#include <sstream>
#include <map>
#include <string>
#include <vector>

#include "aws/credentials.hpp"
#include "aws/ecr.hpp"
#include "aws/sqs.hpp"

namespace json = boost::json;
using namespace ferry::aws;
using ferry::registry::Task;

namespace {

double epoch(const std::optional<std::chrono::system_clock::time_point>& t) {
  return t ? std::chrono::duration<double>(t->time_since_epoch()).count() : -1;
}

json::object repo_json(const Repository& r) {
  json::array filters;
  for (const auto& f : r.exclusion_filters) filters.push_back(json::object{{"filterType", f.filter_type}, {"filter", f.filter}});
  return {{"name", r.name}, {"arn", r.arn}, {"registryId", r.registry_id}, {"uri", r.uri},
          {"imageTagMutability", r.image_tag_mutability}, {"exclusionFilters", filters}, {"scanOnPush", r.scan_on_push},
          {"encryptionType", r.encryption_type}, {"kmsKey", r.kms_key}, {"createdAt", epoch(r.created_at)}};
}

json::object error_json(const Error& e) {
  return {{"error", json::object{{"kind", static_cast<int>(e.kind)}, {"code", e.code}, {"message", e.message},
                                 {"http_status", e.http_status}, {"retryable", e.retryable}, {"text", e.to_string()}}}};
}

struct Args {
  std::string endpoint, sts_endpoint, region = "us-east-1", registry_id, secret_file, command;
  std::vector<std::string> rest;
  std::map<std::string, std::vector<std::string>> opts;  // --name value (repeatable), after the command
  bool flag(const std::string& n) const { return opts.contains(n); }
  std::string opt(const std::string& n, std::string def = "") const {
    auto it = opts.find(n);
    return it == opts.end() || it->second.empty() ? def : it->second.back();
  }
};

Task<json::object> run(Args a) {
  auto ex = co_await boost::asio::this_coro::executor;
  ferry::registry::HttpClient http(ex, {});
  StsOptions sts{.region = a.region, .endpoint = a.sts_endpoint};
  Result<std::shared_ptr<CredentialsProvider>> chain;
  if (!a.secret_file.empty()) {
    std::ifstream in(a.secret_file);
    std::stringstream ss;
    ss << in.rdbuf();
    std::map<std::string, std::string> data;
    const auto doc = json::parse(ss.str());
    for (const auto& [k, v] : doc.as_object()) data[std::string(k)] = std::string(v.as_string());
    chain = from_secret(data, http, sts);
  } else {
    chain = default_chain(http, process_environment(), sts);
  }
  if (!chain) co_return error_json(chain.error());
  auto creds = *chain;

  if (a.command == "credentials") {
    auto c = co_await creds->credentials();
    if (!c) co_return error_json(c.error());
    // A probe for tests against moto: prints what moto issued so the test can compare.
    co_return json::object{{"provider", creds->name()}, {"access_key_id", c->access_key_id},
                           {"secret_access_key", c->secret_access_key}, {"session_token", c->session_token},
                           {"expiration", epoch(c->expiration)}};
  }
  if (a.command == "receive" || a.command == "delete") {
    SqsClient sqs(http, creds, SqsOptions{.region = a.region, .endpoint = a.endpoint});
    if (a.command == "delete") {
      auto r = co_await sqs.delete_message(a.rest.at(0), a.rest.at(1));
      if (!r) co_return error_json(r.error());
      co_return json::object{{"deleted", true}};
    }
    auto r = co_await sqs.receive_message(a.rest.at(0), std::stoi(a.opt("max", "10")), std::stoi(a.opt("wait", "1")));
    if (!r) co_return error_json(r.error());
    json::array msgs;
    for (const auto& m : *r)
      msgs.push_back(json::object{{"id", m.message_id}, {"receipt", m.receipt_handle}, {"body", m.body}});
    co_return json::object{{"messages", msgs}};
  }

  EcrClient ecr(http, creds, EcrOptions{.region = a.region, .endpoint = a.endpoint, .registry_id = a.registry_id});
  if (a.command == "get-token") {
    auto t = co_await ecr.get_authorization_token();
    if (!t) co_return error_json(t.error());
    co_return json::object{{"username", t->username}, {"password", t->password},
                           {"proxyEndpoint", t->proxy_endpoint}, {"expiresAt", epoch(t->expires_at)}};
  }
  if (a.command == "create-repository") {
    CreateRepositoryInput in{.name = a.rest.at(0)};
    in.image_tag_mutability = a.opt("mutability", "MUTABLE");
    for (const auto& f : a.opts["exclusion"]) in.exclusion_filters.push_back({"WILDCARD", f});
    in.scan_on_push = a.flag("scan-on-push");
    in.encryption_type = a.opt("encryption", "AES256");
    in.kms_key = a.opt("kms-key");
    for (const auto& t : a.opts["tag"]) in.tags.emplace_back(t.substr(0, t.find('=')), t.substr(t.find('=') + 1));
    auto r = co_await ecr.create_repository(in);
    if (!r) co_return error_json(r.error());
    co_return json::object{{"repository", repo_json(*r)}};
  }
  if (a.command == "describe-repositories") {
    auto r = co_await ecr.describe_repositories(a.rest);
    if (!r) co_return error_json(r.error());
    json::array list;
    for (const auto& x : *r) list.push_back(repo_json(x));
    co_return json::object{{"repositories", list}};
  }
  if (a.command == "describe-repository") {
    auto r = co_await ecr.describe_repository(a.rest.at(0));
    if (!r) co_return error_json(r.error());
    if (!*r) co_return json::object{{"found", false}};
    co_return json::object{{"found", true}, {"repository", repo_json(**r)}};
  }
  if (a.command == "describe-images") {
    auto r = co_await ecr.describe_images(a.rest.at(0));
    if (!r) co_return error_json(r.error());
    json::array list;
    for (const auto& i : *r) {
      json::array tags;
      for (const auto& t : i.tags) tags.push_back(json::value(t));
      list.push_back(json::object{{"digest", i.digest}, {"tags", tags}, {"pushedAt", epoch(i.pushed_at)},
                                  {"size", i.size_bytes}, {"mediaType", i.manifest_media_type}});
    }
    co_return json::object{{"images", list}};
  }
  if (a.command == "tag-resource") {
    Tags tags;
    for (std::size_t i = 1; i < a.rest.size(); ++i)
      tags.emplace_back(a.rest[i].substr(0, a.rest[i].find('=')), a.rest[i].substr(a.rest[i].find('=') + 1));
    auto r = co_await ecr.tag_resource(a.rest.at(0), tags);
    if (!r) co_return error_json(r.error());
    co_return json::object{{"ok", true}};
  }
  if (a.command == "set-repository-policy" || a.command == "put-lifecycle-policy") {
    auto r = a.command == "set-repository-policy" ? co_await ecr.set_repository_policy(a.rest.at(0), a.rest.at(1))
                                                  : co_await ecr.put_lifecycle_policy(a.rest.at(0), a.rest.at(1));
    if (!r) co_return error_json(r.error());
    co_return json::object{{"ok", true}};
  }
  co_return json::object{{"error", json::object{{"text", "unknown command " + a.command}}}};
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  std::vector<std::string> args(argv + 1, argv + argc);
  for (std::size_t i = 0; i < args.size(); ++i) {
    const auto& s = args[i];
    const bool has_value = i + 1 < args.size();
    if (a.command.empty() && s == "--endpoint" && has_value) a.endpoint = args[++i];
    else if (a.command.empty() && s == "--sts-endpoint" && has_value) a.sts_endpoint = args[++i];
    else if (a.command.empty() && s == "--region" && has_value) a.region = args[++i];
    else if (a.command.empty() && s == "--registry-id" && has_value) a.registry_id = args[++i];
    else if (a.command.empty() && s == "--secret" && has_value) a.secret_file = args[++i];
    else if (a.command.empty()) a.command = s;
    else if (s == "--scan-on-push") a.opts["scan-on-push"];
    else if (s.starts_with("--") && has_value) a.opts[s.substr(2)].push_back(args[++i]);
    else a.rest.push_back(s);
  }
  boost::asio::io_context ioc;
  json::object result;
  boost::asio::co_spawn(ioc, run(a), [&](std::exception_ptr e, json::object r) {
    if (e) {
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& x) {
        result = {{"error", json::object{{"text", std::string("exception: ") + x.what()}}}};
      }
    } else {
      result = std::move(r);
    }
  });
  ioc.run();
  std::cout << json::serialize(result) << "\n";
  return result.contains("error") ? 1 : 0;
}
