// Evaluation of registry permission policies (IAM policy documents) for replication (S2).
#pragma once

#include <boost/json/value.hpp>
#include <expected>
#include <string>
#include <string_view>
#include <vector>

#include "reconcilers/model/errors.hpp"
#include "reconcilers/model/resources.hpp"

namespace ferry::model {

struct PolicyStatement {
  std::string sid;            // may be empty
  std::size_t index = 0;      // position in the Statement list
  bool allow = false;         // Effect: Allow (true) or Deny (false)
  std::vector<std::string> principals;  // "*", 12-digit account ids, or ARNs
  std::vector<std::string> actions;     // with * and ? wildcards
  std::vector<std::string> resources;   // with * and ? wildcards

  // "Sid ReplicationAccess" or "Statement[2]" for an unnamed one.
  std::string label() const;
};

struct PolicyDocument {
  std::string version;
  std::vector<PolicyStatement> statements;
};

// Reads a policy given as a JSON object or as a string of JSON. Elements that Ferry does not
// evaluate (Condition, NotAction, NotResource, NotPrincipal, ...) make it invalid. Error
// paths are prefixed with `path` (e.g. "spec.policy").
std::expected<PolicyDocument, FieldErrors> parse_policy(const boost::json::value& policy,
                                                        const std::string& path = "spec.policy");

enum class Decision { Allow, ExplicitDeny, ImplicitDeny };
std::string_view to_string(Decision d);

struct PolicyRequest {
  Partition partition = Partition::Aws;  // of the destination registry
  std::string source_account;            // the replicating (principal) account
  std::string action;                    // e.g. "ecr:ReplicateImage"
  std::string resource;                  // e.g. "arn:aws:ecr:eu-west-1:222222222222:repository/prod/app"
};

struct Evaluation {
  Decision decision = Decision::ImplicitDeny;
  std::string statement;  // label of the deciding statement; empty for an implicit deny
};

Evaluation evaluate(const PolicyDocument& policy, const PolicyRequest& request);

// "arn:aws:ecr:eu-west-1:222222222222:repository/prod/app"
std::string repository_arn(Partition partition, std::string_view region, std::string_view account,
                           std::string_view repository);

// Glob match with `*` (any run) and `?` (any one character).
bool wildcard_match(std::string_view pattern, std::string_view text, bool case_insensitive);

}  // namespace ferry::model
