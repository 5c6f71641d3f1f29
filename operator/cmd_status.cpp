// `ferry status`: the replication status of an image (DescribeImageReplicationStatus-shaped), of
// every recorded image of a repository, or of a backfill, from the records of either mode: the
// state directory of `ferry run`, or the cluster of `ferry operator`. `ferry retry`: asks the
// running Ferry to try the FAILED destinations of those records again now (S20).
#include <algorithm>
#include <boost/json.hpp>
#include <expected>
#include <memory>
#include <filesystem>
#include <functional>
#include <iostream>
#include <string_view>
#include <thread>

#include "operator/commands.hpp"
#include "reconcilers/model/clock.hpp"
#include "kube/client.hpp"
#include "kube/config.hpp"
#include "kube/request.hpp"
#include "store/kube_store.hpp"
#include "store/state_dir.hpp"
#include "operator/status_view.hpp"
#include "reconcilers/model/replication.hpp"

namespace ferry::cli {
namespace json = boost::json;

namespace {

constexpr std::string_view kAbout =
    "Prints the replication status of the latest push of an image (--image), shaped like ECR's\n"
    "DescribeImageReplicationStatus, or of every recorded image of the repository (without --image),\n"
    "from `ferry run`'s state directory or, with --kubeconfig, from the ImageReplication objects of\n"
    "the cluster `ferry operator` runs in. With --backfill, the progress of that ReplicationBackfill:\n"
    "phase, images {total, replicated, skipped, failed}, startedAt, completedAt, message.\n"
    "\n"
    "Exit codes: 0 every destination COMPLETE; 1 a destination FAILED, or nothing recorded for that\n"
    "image (or no such backfill); 2 a usage error or unreadable records; 3 a destination still\n"
    "IN_PROGRESS (with --wait: after --timeout). IN_PROGRESS wins over FAILED: the outcome is not final.";

struct StatusFlags {
  StatusQuery query;
  std::string state_dir = "ferry-state", kubeconfig, context, backfill, output = "json";
  bool wait = false;
  std::chrono::milliseconds timeout{std::chrono::minutes(5)};
  std::chrono::milliseconds interval{std::chrono::seconds(1)};
};

// Prints `doc` as -o asks; a table is drawn by `table`.
void print(const std::string& output, const json::value& doc, const std::function<std::string()>& table) {
  if (output == "yaml") {
    std::cout << to_yaml(doc);
  } else if (output == "table") {
    std::cout << table();
  } else {
    std::cout << json::serialize(doc) << "\n";
  }
}

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

void print_backfill(const std::string& output, const json::object& b) {
  print(output, b, [&] {
    const auto* images = b.at("images").if_object();
    auto count = [&](const char* k) {
      const auto* v = images ? images->if_contains(k) : nullptr;
      return v && v->is_int64() ? std::to_string(v->as_int64()) : "0";
    };
    const auto* phase = b.if_contains("phase");
    return render_table({{"BACKFILL", "PHASE", "TOTAL", "REPLICATED", "SKIPPED", "FAILED"},
                         {std::string(b.at("name").as_string()),
                          phase && phase->is_string() ? std::string(phase->as_string()) : "-", count("total"),
                          count("replicated"), count("skipped"), count("failed")}});
  });
}

int backfill_status(const StatusFlags& f) {
  const std::string &name = f.backfill, &state_dir = f.state_dir, &kubeconfig = f.kubeconfig, &context = f.context;
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
      print_backfill(f.output, backfill_json(name, st && st->is_object() ? st->as_object() : json::object{}));
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
  print_backfill(f.output, backfill_json(name, counted((*progress)->as_object())));
  return 0;
}

// The records, read again on every call (state directory, or the cluster's ImageReplications);
// nullopt after printing why they cannot be read.
using RecordReader = std::function<std::optional<std::vector<model::ImageReplication>>()>;

std::optional<RecordReader> record_reader(const StatusFlags& f, std::string_view who = "ferry status") {
  if (!f.kubeconfig.empty()) {
    auto config = kube::load_kubeconfig(f.kubeconfig, f.context);
    if (!config) {
      std::cerr << who << ": " << config.error() << "\n";
      return std::nullopt;
    }
    auto client = std::make_shared<kube::Client>(*config);
    return [client, who]() -> std::optional<std::vector<model::ImageReplication>> {
      kube::Api api(*client);
      std::vector<std::string> problems;
      auto records = store::KubeStore(api).image_replications(&problems);
      for (const auto& p : problems) std::cerr << who << ": " << p << "\n";
      return records;
    };
  }
  if (!std::filesystem::is_directory(std::filesystem::path(f.state_dir) / "imagereplications")) {
    std::cerr << who << ": " << f.state_dir
              << " is not a Ferry state directory (use --state-dir, or --kubeconfig for a cluster)\n";
    return std::nullopt;
  }
  return [dir = f.state_dir]() -> std::optional<std::vector<model::ImageReplication>> {
    return store::StateDir(dir).image_replications();
  };
}

int image_status(const StatusFlags& f) {
  auto read = record_reader(f);
  if (!read) return 2;
  const auto deadline = std::chrono::steady_clock::now() + f.timeout;
  std::vector<model::ImageReplication> records;
  std::vector<const model::ImageReplication*> selected;
  int code = 0;
  // --wait: poll until something is recorded and no destination is IN_PROGRESS, or the timeout.
  for (;;) {
    auto now_records = (*read)();
    if (!now_records) return 2;
    records = std::move(*now_records);
    selected = select_records(records, f.query);
    code = status_exit_code(selected);
    const bool settled = !selected.empty() && code != 3;
    if (!f.wait || settled || (f.timeout.count() > 0 && std::chrono::steady_clock::now() >= deadline)) break;
    std::this_thread::sleep_for(f.interval);
  }
  const auto& q = f.query;
  if (selected.empty()) {
    std::cerr << "ferry status: no replication recorded for " << q.repository
              << (q.image.empty() ? "" : (q.image.starts_with("sha256:") ? "@" : ":") + q.image)
              << (f.wait ? " within --timeout" : "") << "\n";
    return 1;
  }
  print(f.output, status_document(selected, q), [&] { return status_table(selected); });
  if (f.wait && code == 3) std::cerr << "ferry status: still IN_PROGRESS when --timeout ran out\n";
  return code;
}

constexpr std::string_view kRetryAbout =
    "Asks the running Ferry to try the FAILED destinations of the latest push of an image (--image),\n"
    "or of every recorded image of the repository, again now, and those waiting to catch up (S20):\n"
    "authorization is decided anew from the RegistryPolicy as it is. In a cluster (--kubeconfig) it\n"
    "sets the annotation ferry.dev/retry to the current time on each ImageReplication (the same as\n"
    "`kubectl annotate --overwrite imagereplication NAME ferry.dev/retry=$(date -u +%FT%TZ)`); for\n"
    "`ferry run` it leaves a request in the state directory, taken within a second. The record's\n"
    "status.lastHandledRetryAt shows when Ferry acted on it; follow with `ferry status --wait`.\n"
    "\n"
    "Exit codes: 0 a retry was requested; 1 nothing to retry (no FAILED destination, or nothing\n"
    "recorded); 2 a usage error, unreadable records, or a request that could not be written.";

bool retryable(const model::ImageReplication& rec) {
  return std::ranges::any_of(rec.status.replication_statuses, [](const auto& s) {
    return s.status == model::kFailed || (s.status == model::kInProgress && !s.next_attempt_at.empty());
  });
}

int retry_images(const StatusFlags& f) {
  auto read = record_reader(f, "ferry retry");
  if (!read) return 2;
  auto records = (*read)();
  if (!records) return 2;
  std::vector<const model::ImageReplication*> targets;
  for (const auto* rec : select_records(*records, f.query))
    if (retryable(*rec)) targets.push_back(rec);
  const auto& q = f.query;
  if (targets.empty()) {
    std::cerr << "ferry retry: nothing to retry for " << q.repository
              << (q.image.empty() ? "" : (q.image.starts_with("sha256:") ? "@" : ":") + q.image)
              << ": no FAILED destination in its latest push\n";
    return 1;
  }
  const std::string at = model::format_rfc3339(std::chrono::system_clock::now(), true);
  std::function<std::expected<void, std::string>(const std::string&)> request;
  std::unique_ptr<kube::Client> client;
  std::unique_ptr<kube::Api> api;
  std::unique_ptr<store::StateDir> dir;
  if (!f.kubeconfig.empty()) {
    auto config = kube::load_kubeconfig(f.kubeconfig, f.context);
    if (!config) {
      std::cerr << "ferry retry: " << config.error() << "\n";
      return 2;
    }
    client = std::make_unique<kube::Client>(*config);
    api = std::make_unique<kube::Api>(*client);
    request = [&](const std::string& name) -> std::expected<void, std::string> {
      json::value patch = {{"metadata", {{"annotations", {{std::string(model::kRetryAnnotation), at}}}}}};
      auto r = api->merge_patch(kube::image_replications(), "", name, patch);
      if (!r) return std::unexpected(r.error().to_string());
      return {};
    };
  } else {
    dir = std::make_unique<store::StateDir>(f.state_dir);
    request = [&](const std::string& name) { return dir->request_retry(name, at); };
  }
  int code = 0;
  for (const auto* rec : targets) {
    const auto& src = rec->spec.source;
    const std::string image = src.repository_name + (src.image_tag.empty() ? "@" + src.image_digest : ":" + src.image_tag);
    std::string dests;
    for (const auto& s : rec->status.replication_statuses) {
      if (s.status == model::kFailed || !s.next_attempt_at.empty())
        dests += (dests.empty() ? "" : ", ") + s.registry_id + "/" + s.region;
    }
    if (auto w = request(rec->metadata.name); !w) {
      std::cerr << "ferry retry: " << image << " (" << rec->metadata.name << "): " << w.error() << "\n";
      code = 2;
      continue;
    }
    std::cout << "retry requested: " << image << " (" << rec->metadata.name << ") to " << dests << "\n";
  }
  return code;
}

}  // namespace

CLI::App* add_retry(CLI::App& app, Action& action) {
  auto f = std::make_shared<StatusFlags>();
  auto* cmd = app.add_subcommand("retry", "Try the FAILED destinations of an image (or a repository's images) again now");
  cmd->footer(std::string(kRetryAbout));
  cmd->add_option("--repository", f->query.repository, "source repository, e.g. prod/app")->type_name("NAME")->required();
  cmd->add_option("--image", f->query.image, "a tag or sha256: digest (default: every recorded image)")
      ->type_name("TAG|DIGEST");
  cmd->add_option("--registry-id", f->query.registry_id, "source registry (account) id, when several push that repository")
      ->type_name("ID");
  cmd->add_option("--region", f->query.region, "source region")->type_name("R");
  cmd->add_option("--state-dir", f->state_dir, "state directory of `ferry run`")->type_name("DIR")->capture_default_str();
  cmd->add_option("--kubeconfig", f->kubeconfig, "annotate the cluster's records instead")->type_name("FILE");
  cmd->add_option("--context", f->context, "kubeconfig context (default: its current-context)")->type_name("NAME");
  cmd->callback([f, &action] { action = [f] { return retry_images(*f); }; });
  return cmd;
}

CLI::App* add_status(CLI::App& app, Action& action) {
  auto f = std::make_shared<StatusFlags>();
  auto* cmd = app.add_subcommand("status", "Replication status of an image, of a repository's images, or of a backfill");
  cmd->footer(std::string(kAbout));
  cmd->add_option("--repository", f->query.repository, "source repository, e.g. prod/app")->type_name("NAME");
  cmd->add_option("--image", f->query.image, "a tag or sha256: digest (default: every recorded image)")
      ->type_name("TAG|DIGEST");
  cmd->add_option("--registry-id", f->query.registry_id, "source registry (account) id, when several push that repository")
      ->type_name("ID");
  cmd->add_option("--region", f->query.region, "source region")->type_name("R");
  cmd->add_option("--backfill", f->backfill, "print that ReplicationBackfill's progress instead")->type_name("NAME");
  cmd->add_option("--state-dir", f->state_dir, "state directory of `ferry run`")->type_name("DIR")->capture_default_str();
  cmd->add_option("--kubeconfig", f->kubeconfig, "read the cluster's records instead of a state directory")
      ->type_name("FILE");
  cmd->add_option("--context", f->context, "kubeconfig context (default: its current-context)")->type_name("NAME");
  cmd->add_option("-o,--output", f->output, "json (default), yaml, or table (one row per image and destination)")
      ->type_name("FORMAT")
      ->check(CLI::IsMember({"json", "yaml", "table"}));
  cmd->add_flag("--wait", f->wait, "poll until the image is recorded and no destination is IN_PROGRESS");
  add_duration(*cmd, "--timeout", f->timeout, "how long --wait waits (default 5m; 0: no limit)");
  add_duration(*cmd, "--interval", f->interval, "how often --wait reads the records (default 1s)");
  cmd->callback([f, &action] {
    action = [f] {
      if (!f->backfill.empty()) return backfill_status(*f);
      if (f->query.repository.empty()) {
        std::cerr << "ferry status: --repository (or --backfill) is required\nRun 'ferry status --help' for usage.\n";
        return 2;
      }
      return image_status(*f);
    };
  });
  return cmd;
}

}  // namespace ferry::cli
