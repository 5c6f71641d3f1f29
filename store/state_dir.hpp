// The standalone mode's durable state: records and bookkeeping as JSON files in a directory.
#pragma once

#include <boost/json/value.hpp>
#include <expected>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "reconcilers/model/resources.hpp"
#include "store/record_store.hpp"

namespace ferry::store {

// Layout (every file written to a temporary name, fsynced, then renamed over the old one, so a
// crash leaves either the old or the new content, never half of it):
//   imagereplications/<name>.json   ImageReplication records
//   repositories/<name>.json        Repository records created by replication
//   state/<key>.json                engine bookkeeping (baselines, effective times)
//   retry/<record>.json             `ferry retry` requests, {"requestedAt": ...}, until handled
class StateDir final : public RecordStore {
 public:
  // Creates the directory and its sub-directories; throws std::runtime_error when it cannot
  // (start-up configuration).
  explicit StateDir(std::filesystem::path root);

  const std::filesystem::path& root() const { return root_; }

  std::expected<void, std::string> save(const model::ImageReplication& record) override;
  std::expected<void, std::string> save(const model::Repository& record) override;
  std::expected<void, std::string> remove_image_replication(const std::string& name) override;

  std::optional<model::ImageReplication> image_replication(const std::string& name) const;
  std::vector<model::ImageReplication> image_replications(
      std::vector<std::string>* problems = nullptr) const override;
  std::vector<model::Repository> repositories(std::vector<std::string>* problems = nullptr) const override;

  std::expected<void, std::string> save_state(const std::string& key, const boost::json::value& v) override;
  std::expected<std::optional<boost::json::value>, std::string> load_state(const std::string& key) const override;

  // `ferry retry` in standalone mode: a request for the record `name`, handled by the running
  // `ferry run` (which removes it once the record says it was handled).
  std::expected<void, std::string> request_retry(const std::string& name, const std::string& requested_at);
  // Pending requests: (record name, requestedAt); unreadable ones are skipped and left in place.
  std::vector<std::pair<std::string, std::string>> retry_requests() const;
  void remove_retry_request(const std::string& name);

 private:
  std::filesystem::path root_;
};

// Writes `bytes` to `path` atomically (temporary file, fsync, rename, fsync of the directory).
std::expected<void, std::string> write_file_atomically(const std::filesystem::path& path,
                                                       std::string_view bytes);

}  // namespace ferry::store
