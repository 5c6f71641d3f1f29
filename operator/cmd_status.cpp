// `ferry status`: DescribeImageReplicationStatus-shaped JSON for one image, from the records of
// either mode: the state directory of `ferry run`, or the cluster of `ferry operator`.
#include <boost/json.hpp>
#include <filesystem>
#include <functional>
#include <iostream>
#include <string_view>

#include "operator/commands.hpp"
#include "reconcilers/model/clock.hpp"
#include "kube/client.hpp"
#include "kube/config.hpp"
#include "kube/request.hpp"
#include "store/kube_store.hpp"
#include "store/state_dir.hpp"

namespace ferry::cli {
namespace json = boost::json;

namespace {

constexpr std::string_view kUsage =
    "usage: ferry status --repository NAME --image TAG|DIGEST [--registry-id ID --region R]\n"
    "                    [--state-dir DIR | --kubeconfig FILE [--context NAME]]\n"
    "       ferry status --backfill NAME [--state-dir DIR | --kubeconfig FILE [--context NAME]]\n"
    "Prints the replication status of the latest push of that image, shaped like ECR's\n"
    "DescribeImageReplicationStatus, from `ferry run`'s state directory (default ./ferry-state) or,\n"
    "with --kubeconfig, from the ImageReplication objects of the cluster `ferry operator` runs in.\n"
    "With --backfill, the progress of that ReplicationBackfill: phase, images {total, replicated,\n"
    "skipped, failed}, startedAt, completedAt, message.\n"
    "Exit 1 when no replication of that image (or no such backfill) is recorded.\n";

// Runs `use` with an API client for the kubeconfig's cluster; 2 when the kubeconfig is unusable.
int with_cluster(const std::string& kubeconfig, const std::string& context, const std::function<void(kube::Api&)>& use) {
  auto config = kube::load_kubeconfig(kubeconfig, context);
  if (!config) {
    std::cerr << "ferry status: " << config.error() << "\n";
    return 2;
  }
  kube::Client client(*config);
  kube::Api api(client);
  use(api);
  return 0;
}

// The progress fields of a backfill's status (or of its stored progress), as one JSON object.
json::object backfill_json(const std::string& name, const json::object& from) {
  json::object out{{"name", name}};
  for (const char* k : {"phase", "images", "startedAt", "completedAt", "message"}) {
    const auto* v = from.if_contains(k);
    if (v && !(v->is_string() && v->as_string().empty())) out[k] = *v;  // absent, not "", when not yet set
  }
  if (!out.contains("images")) out["images"] = json::object{{"total", 0}, {"replicated", 0}, {"skipped", 0}, {"failed", 0}};
  return out;
}

// The stored progress of `ferry run` keeps each image's outcome; its counts are computed here.
json::object counted(const json::object& progress) {
  json::object out = progress;
  std::int64_t total = 0, replicated = 0, skipped = 0, failed = 0;
  if (const auto* items = progress.if_contains("items"); items && items->is_array()) {
    for (const auto& i : items->as_array()) {
      ++total;
      const auto* a = i.if_array();
      const std::string_view st = a && a->size() == 4 && (*a)[3].is_string() ? std::string_view((*a)[3].as_string()) : "";
      replicated += st == "r";
      skipped += st == "s";
      failed += st == "f";
    }
  }
  out.erase("items");
  out["images"] = json::object{{"total", total}, {"replicated", replicated}, {"skipped", skipped}, {"failed", failed}};
  return out;
}

int backfill_status(const std::string& name, const std::string& state_dir, const std::string& kubeconfig,
                    const std::string& context) {
  if (!kubeconfig.empty()) {
    int code = 0;
    int rc = with_cluster(kubeconfig, context, [&](kube::Api& api) {
      auto obj = api.get(kube::replication_backfills(), "", name);
      if (!obj) {
        std::cerr << "ferry status: ReplicationBackfill " << name << ": " << obj.error().to_string() << "\n";
        code = obj.error().not_found() ? 1 : 2;
        return;
      }
      const auto* st = obj->as_object().if_contains("status");
      std::cout << json::serialize(backfill_json(name, st && st->is_object() ? st->as_object() : json::object{}))
                << "\n";
    });
    return rc != 0 ? rc : code;
  }
  if (!std::filesystem::is_directory(std::filesystem::path(state_dir) / "state")) {
    std::cerr << "ferry status: " << state_dir
              << " is not a Ferry state directory (use --state-dir, or --kubeconfig for a cluster)\n";
    return 2;
  }
  auto progress = store::StateDir(state_dir).load_state("backfill." + name);
  if (!progress) {
    std::cerr << "ferry status: cannot read the progress of backfill " << name << ": " << progress.error() << "\n";
    return 2;
  }
  if (!*progress || !(*progress)->is_object()) {
    std::cerr << "ferry status: no backfill " << name << " recorded in " << state_dir << "\n";
    return 1;
  }
  std::cout << json::serialize(backfill_json(name, counted((*progress)->as_object()))) << "\n";
  return 0;
}

}  // namespace

int run_status(int argc, char** argv) {
  std::string repository, image, registry_id, region, state_dir = "ferry-state", kubeconfig, context, backfill;
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
        value("--context", context) || value("--backfill", backfill)) {
      continue;
    }
    if (a == "-h" || a == "--help") {
      std::cout << kUsage;
      return 0;
    }
    std::cerr << "ferry status: unknown argument " << a << "\n" << kUsage;
    return 2;
  }
  if (!backfill.empty()) return backfill_status(backfill, state_dir, kubeconfig, context);
  if (repository.empty() || image.empty()) {
    std::cerr << "ferry status: --repository and --image are required\n" << kUsage;
    return 2;
  }
  std::vector<model::ImageReplication> records;
  if (!kubeconfig.empty()) {
    int rc = with_cluster(kubeconfig, context, [&](kube::Api& api) {
      std::vector<std::string> problems;
      records = store::KubeStore(api).image_replications(&problems);
      for (const auto& p : problems) std::cerr << "ferry status: " << p << "\n";
    });
    if (rc != 0) return rc;
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
