// Where the replication engine keeps its records and bookkeeping: one interface, two back ends
// (StateDir for `ferry run`, KubeStore for `ferry operator`). The engine is the only writer.
#pragma once

#include <boost/json/value.hpp>
#include <expected>
#include <optional>
#include <string>
#include <vector>

#include "reconcilers/model/resources.hpp"

namespace ferry::store {

class RecordStore {
 public:
  virtual ~RecordStore() = default;

  // Creates or updates a record (spec and status). Returns only once the write is durable.
  virtual std::expected<void, std::string> save(const model::ImageReplication& record) = 0;
  // Records a repository replication created. A Repository that already exists under that name
  // (a user's, made to pre-set settings) is left as it is and counts as success (S12).
  virtual std::expected<void, std::string> save(const model::Repository& record) = 0;
  // Ferry's own record only: deleting one never touches a registry (S10).
  virtual std::expected<void, std::string> remove_image_replication(const std::string& name) = 0;

  // Records that cannot be read are reported in `problems` and skipped.
  virtual std::vector<model::ImageReplication> image_replications(
      std::vector<std::string>* problems = nullptr) const = 0;
  // The Repository records replication created (status.createdBy Replication).
  virtual std::vector<model::Repository> repositories(std::vector<std::string>* problems = nullptr) const = 0;

  // Engine bookkeeping (effective times, polling baselines) under a key of [a-z0-9.-].
  virtual std::expected<void, std::string> save_state(const std::string& key, const boost::json::value& v) = 0;
  // nullopt: nothing was ever saved under the key. An error: it could not be read (unreachable,
  // forbidden, torn, unparsable), which callers must never take for "absent" (SPEC §6).
  virtual std::expected<std::optional<boost::json::value>, std::string> load_state(const std::string& key) const = 0;
};

}  // namespace ferry::store
