// `ferry status`: DescribeImageReplicationStatus-shaped JSON for one image, from the records of
// either mode: the state directory of `ferry run`, or the cluster of `ferry operator`.
#include <boost/json.hpp>
#include <filesystem>
#include <iostream>
#include <string_view>

#include "operator/commands.hpp"
#include "reconcilers/model/clock.hpp"
#include "kube/client.hpp"
#include "kube/config.hpp"
#include "store/kube_store.hpp"
#include "store/state_dir.hpp"

namespace ferry::cli {
namespace json = boost::json;

namespace {

constexpr std::string_view kUsage =
    "usage: ferry status --repository NAME --image TAG|DIGEST [--registry-id ID --region R]\n"
    "                    [--state-dir DIR | --kubeconfig FILE [--context NAME]]\n"
    "Prints the replication status of the latest push of that image, shaped like ECR's\n"
    "DescribeImageReplicationStatus, from `ferry run`'s state directory (default ./ferry-state) or,\n"
    "with --kubeconfig, from the ImageReplication objects of the cluster `ferry operator` runs in.\n"
    "Exit 1 when no replication of that image is recorded.\n";

}  // namespace

int run_status(int argc, char** argv) {
  std::string repository, image, registry_id, region, state_dir = "ferry-state", kubeconfig, context;
  for (int i = 0; i < argc; ++i) {
    const std::string_view a = argv[i];
    auto value = [&](std::string_view flag, std::string& out) {
      if (a == flag && i + 1 < argc) {
        out = argv[++i];
        return true;
      }
      if (a.starts_with(std::string(flag) + "=")) {
        out = std::string(a.substr(flag.size() + 1));
        return true;
      }
      return false;
    };
    if (value("--repository", repository) || value("--image", image) || value("--registry-id", registry_id) ||
        value("--region", region) || value("--state-dir", state_dir) || value("--kubeconfig", kubeconfig) ||
        value("--context", context)) {
      continue;
    }
    if (a == "-h" || a == "--help") {
      std::cout << kUsage;
      return 0;
    }
    std::cerr << "ferry status: unknown argument " << a << "\n" << kUsage;
    return 2;
  }
  if (repository.empty() || image.empty()) {
    std::cerr << "ferry status: --repository and --image are required\n" << kUsage;
    return 2;
  }
  std::vector<model::ImageReplication> records;
  if (!kubeconfig.empty()) {
    auto config = kube::load_kubeconfig(kubeconfig, context);
    if (!config) {
      std::cerr << "ferry status: " << config.error() << "\n";
      return 2;
    }
    kube::Client client(*config);
    kube::Api api(client);
    std::vector<std::string> problems;
    records = store::KubeStore(api).image_replications(&problems);
    for (const auto& p : problems) std::cerr << "ferry status: " << p << "\n";
  } else {
    if (!std::filesystem::is_directory(std::filesystem::path(state_dir) / "imagereplications")) {
      std::cerr << "ferry status: " << state_dir
                << " is not a Ferry state directory (use --state-dir, or --kubeconfig for a cluster)\n";
      return 2;
    }
    records = store::StateDir(state_dir).image_replications();
  }
  const bool by_digest = image.starts_with("sha256:");
  const model::ImageReplication* best = nullptr;
  for (const auto& r : records) {
    const auto& s = r.spec.source;
    if (s.repository_name != repository) continue;
    if (by_digest ? s.image_digest != image : s.image_tag != image) continue;
    if (!registry_id.empty() && s.registry_id != registry_id) continue;
    if (!region.empty() && s.region != region) continue;
    auto t = model::parse_rfc3339(s.pushed_at);
    auto bt = best ? model::parse_rfc3339(best->spec.source.pushed_at) : std::nullopt;
    if (!best || (t && bt && *t > *bt)) best = &r;
  }
  if (!best) {
    std::cerr << "ferry status: no replication recorded for " << repository << (by_digest ? "@" : ":") << image
              << "\n";
    return 1;
  }
  json::array statuses;
  for (const auto& st : best->status.replication_statuses) {
    json::object o{{"region", st.region}, {"registryId", st.registry_id}, {"status", st.status}};
    if (!st.failure_code.empty()) o["failureCode"] = st.failure_code;
    if (!st.message.empty()) o["message"] = st.message;
    statuses.push_back(std::move(o));
  }
  json::object image_id{{"imageDigest", best->spec.source.image_digest}};
  if (!best->spec.source.image_tag.empty()) image_id["imageTag"] = best->spec.source.image_tag;
  json::object out{{"repositoryName", best->spec.source.repository_name},
                   {"imageId", std::move(image_id)},
                   {"replicationStatuses", std::move(statuses)}};
  std::cout << json::serialize(out) << "\n";
  return 0;
}

}  // namespace ferry::cli
