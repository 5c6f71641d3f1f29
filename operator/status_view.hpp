// What `ferry status` prints, as pure functions of the records: JSON shaped like ECR's
// DescribeImageReplicationStatus, YAML of the same, a table, and the exit code.
#pragma once

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>
#include <optional>
#include <string>
#include <vector>

#include "reconcilers/model/resources.hpp"

namespace ferry::cli {

// Which records `ferry status` reports on.
struct StatusQuery {
  std::string repository;
  std::string image;  // a tag or sha256:... digest; empty: every recorded image of the repository
  std::string registry_id, region;  // of the source; empty: any
};

// The latest push of each image the query names (one for --image, else one per tag, and per
// digest pushed without one), in the order of their tags and digests.
std::vector<const model::ImageReplication*> select_records(const std::vector<model::ImageReplication>& records,
                                                           const StatusQuery& query);

// {"repositoryName", "imageId": {"imageDigest", "imageTag"?}, "replicationStatuses": [...]}.
boost::json::object image_status_json(const model::ImageReplication& record);

// The document printed: one image's status for --image, else {"repositoryName", "images": [...]}.
boost::json::value status_document(const std::vector<const model::ImageReplication*>& selected,
                                   const StatusQuery& query);

// One row per image × destination: REPOSITORY TAG DIGEST REGISTRY REGION STATUS FAILURE.
std::string status_table(const std::vector<const model::ImageReplication*>& selected);

// Columns padded to their widest cell, two spaces apart; the first row is the header.
std::string render_table(const std::vector<std::vector<std::string>>& rows);

// Block-style YAML of a JSON value; strings that would read back as another type are quoted.
std::string to_yaml(const boost::json::value& v);

// 3 while any destination is IN_PROGRESS (the outcome is not final), else 1 when any is FAILED,
// else 0.
int status_exit_code(const std::vector<const model::ImageReplication*>& selected);

}  // namespace ferry::cli
