// IAM policy parsing and the Allow / explicit Deny / implicit Deny decision.
#include "reconcilers/model/policy.hpp"

#include <boost/json.hpp>
#include <cctype>
#include <regex>

#include "reconcilers/model/parse.hpp"

namespace ferry::model {
namespace json = boost::json;

std::string PolicyStatement::label() const {
  return sid.empty() ? "Statement[" + std::to_string(index) + "]" : "Sid " + sid;
}

std::string_view to_string(Decision d) {
  switch (d) {
    case Decision::Allow: return "Allow";
    case Decision::ExplicitDeny: return "ExplicitDeny";
    case Decision::ImplicitDeny: return "ImplicitDeny";
  }
  return "ImplicitDeny";
}

std::string repository_arn(Partition partition, std::string_view region, std::string_view account,
                           std::string_view repository) {
  std::string arn = "arn:";
  arn += to_string(partition);
  arn += ":ecr:";
  arn += region;
  arn += ':';
  arn += account;
  arn += ":repository/";
  arn += repository;
  return arn;
}

bool wildcard_match(std::string_view pattern, std::string_view text, bool case_insensitive) {
  auto eq = [case_insensitive](char a, char b) {
    if (!case_insensitive) return a == b;
    return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b));
  };
  // Iterative matcher with backtracking to the last star: linear in practice, no recursion.
  std::size_t p = 0, t = 0, star = std::string_view::npos, mark = 0;
  while (t < text.size()) {
    if (p < pattern.size() && (pattern[p] == '?' || (pattern[p] != '*' && eq(pattern[p], text[t])))) {
      ++p;
      ++t;
    } else if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = t;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      t = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

namespace {

std::string describe(const json::value& v) {
  switch (v.kind()) {
    case json::kind::string: return "a string";
    case json::kind::array: return "a list";
    case json::kind::object: return "an object";
    case json::kind::bool_: return "a boolean";
    case json::kind::null: return "null";
    default: return "a number";
  }
}

// String or list of strings → list.
std::vector<std::string> string_or_list(const json::value& v, const std::string& path,
                                        FieldErrors& errors) {
  std::vector<std::string> out;
  if (v.is_string()) {
    out.emplace_back(v.as_string());
  } else if (v.is_array()) {
    const auto& a = v.as_array();
    for (std::size_t i = 0; i < a.size(); ++i) {
      if (a[i].is_string()) {
        out.emplace_back(a[i].as_string());
      } else {
        errors.push_back({path + "[" + std::to_string(i) + "]", "must be a string, got " + describe(a[i])});
      }
    }
    if (a.empty()) errors.push_back({path, "must not be empty"});
  } else {
    errors.push_back({path, "must be a string or a list of strings, got " + describe(v)});
  }
  return out;
}

void read_principal(const json::value& v, const std::string& path, PolicyStatement& st,
                    FieldErrors& errors) {
  if (v.is_string()) {
    if (v.as_string() != "*") {
      errors.push_back({path, "a string Principal must be \"*\"; name accounts as {\"AWS\": ...}"});
    }
    st.principals.emplace_back("*");
    return;
  }
  if (!v.is_object()) {
    errors.push_back({path, "must be \"*\" or an object such as {\"AWS\": \"arn:aws:iam::111111111111:root\"}"});
    return;
  }
  for (const auto& kv : v.as_object()) {
    const std::string sub = path + "." + std::string(kv.key());
    if (kv.key() == "AWS") {
      static const std::regex kAccount{"[0-9]{12}"};
      static const std::regex kArn{"arn:(aws|aws-cn|aws-us-gov):iam::[0-9]{12}:.+"};
      for (auto& p : string_or_list(kv.value(), sub, errors)) {
        if (p != "*" && !std::regex_match(p, kAccount) && !std::regex_match(p, kArn)) {
          errors.push_back({sub, "\"" + p + "\" is not \"*\", a 12-digit account id or an IAM ARN"});
        }
        st.principals.push_back(std::move(p));
      }
    } else if (kv.key() == "Service" || kv.key() == "Federated" || kv.key() == "CanonicalUser") {
      // Valid IAM, but never the replicating account: such entries match no replication.
      string_or_list(kv.value(), sub, errors);
    } else {
      errors.push_back({sub, "unknown principal type; must be AWS, Service, Federated or CanonicalUser"});
    }
  }
}

bool principal_matches(const std::string& p, const PolicyRequest& r) {
  if (p == "*") return true;
  if (p == r.source_account) return true;
  return p == "arn:" + std::string(to_string(r.partition)) + ":iam::" + r.source_account + ":root";
}

}  // namespace

std::expected<PolicyDocument, FieldErrors> parse_policy(const json::value& policy,
                                                        const std::string& path) {
  FieldErrors errors;
  json::value parsed;
  const json::value* doc = &policy;
  if (policy.is_string()) {
    auto v = parse_json_text(policy.as_string());
    if (!v) {
      errors.push_back({path, "is not valid JSON: " + v.error().message + " at line " +
                                  std::to_string(v.error().line) + ", column " +
                                  std::to_string(v.error().column)});
      return std::unexpected(errors);
    }
    parsed = std::move(*v);
    doc = &parsed;
  }
  if (!doc->is_object()) {
    errors.push_back({path, "must be a policy document object or a JSON string, got " + describe(*doc)});
    return std::unexpected(errors);
  }
  PolicyDocument out;
  const json::value* statements = nullptr;
  for (const auto& kv : doc->as_object()) {
    const std::string sub = path + "." + std::string(kv.key());
    if (kv.key() == "Version") {
      if (!kv.value().is_string() ||
          (kv.value().as_string() != "2012-10-17" && kv.value().as_string() != "2008-10-17")) {
        errors.push_back({sub, "must be \"2012-10-17\" or \"2008-10-17\""});
      } else {
        out.version = kv.value().as_string();
      }
    } else if (kv.key() == "Statement") {
      statements = &kv.value();
    } else if (kv.key() == "Id") {
      // Documentation only.
    } else {
      errors.push_back({sub, "unknown policy element"});
    }
  }
  if (!statements) {
    errors.push_back({path + ".Statement", "required"});
    return std::unexpected(errors);
  }
  std::vector<const json::value*> list;
  bool single = statements->is_object();
  if (single) {
    list.push_back(statements);
  } else if (statements->is_array()) {
    for (const auto& s : statements->as_array()) list.push_back(&s);
  } else {
    errors.push_back({path + ".Statement", "must be an object or a list of objects"});
    return std::unexpected(errors);
  }
  for (std::size_t i = 0; i < list.size(); ++i) {
    const std::string sp = path + ".Statement" + (single ? "" : "[" + std::to_string(i) + "]");
    if (!list[i]->is_object()) {
      errors.push_back({sp, "must be an object, got " + describe(*list[i])});
      continue;
    }
    PolicyStatement st;
    st.index = i;
    bool has_effect = false, has_principal = false, has_action = false, has_resource = false;
    for (const auto& kv : list[i]->as_object()) {
      const std::string key(kv.key());
      const std::string sub = sp + "." + key;
      if (key == "Sid") {
        if (kv.value().is_string()) {
          st.sid = kv.value().as_string();
        } else {
          errors.push_back({sub, "must be a string"});
        }
      } else if (key == "Effect") {
        has_effect = true;
        if (kv.value() == json::value("Allow")) {
          st.allow = true;
        } else if (kv.value() == json::value("Deny")) {
          st.allow = false;
        } else {
          errors.push_back({sub, "must be \"Allow\" or \"Deny\""});
        }
      } else if (key == "Principal") {
        has_principal = true;
        read_principal(kv.value(), sub, st, errors);
      } else if (key == "Action") {
        has_action = true;
        st.actions = string_or_list(kv.value(), sub, errors);
        for (const auto& a : st.actions) {
          if (a != "*" && a.find(':') == std::string::npos) {
            errors.push_back({sub, "\"" + a + "\" is not an action; use service:Action, e.g. ecr:ReplicateImage"});
          }
        }
      } else if (key == "Resource") {
        has_resource = true;
        st.resources = string_or_list(kv.value(), sub, errors);
      } else if (key == "Condition" || key == "NotAction" || key == "NotResource" ||
                 key == "NotPrincipal") {
        errors.push_back({sub, key + " is not evaluated by Ferry; the policy is rejected rather "
                                     "than applied without it"});
      } else {
        errors.push_back({sub, "unknown statement element"});
      }
    }
    if (!has_effect) errors.push_back({sp + ".Effect", "required"});
    if (!has_principal) errors.push_back({sp + ".Principal", "required in a registry policy"});
    if (!has_action) errors.push_back({sp + ".Action", "required"});
    if (!has_resource) errors.push_back({sp + ".Resource", "required"});
    out.statements.push_back(std::move(st));
  }
  if (!errors.empty()) return std::unexpected(errors);
  return out;
}

Evaluation evaluate(const PolicyDocument& policy, const PolicyRequest& request) {
  Evaluation allow;
  bool allowed = false;
  for (const auto& st : policy.statements) {
    bool principal = false;
    for (const auto& p : st.principals) principal = principal || principal_matches(p, request);
    if (!principal) continue;
    bool action = false;
    for (const auto& a : st.actions) action = action || wildcard_match(a, request.action, true);
    if (!action) continue;
    bool resource = false;
    for (const auto& r : st.resources) resource = resource || wildcard_match(r, request.resource, false);
    if (!resource) continue;
    if (!st.allow) return {Decision::ExplicitDeny, st.label()};
    if (!allowed) {
      allowed = true;
      allow = {Decision::Allow, st.label()};
    }
  }
  return allowed ? allow : Evaluation{Decision::ImplicitDeny, ""};
}

}  // namespace ferry::model
