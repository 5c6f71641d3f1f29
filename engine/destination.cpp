// One destination's copy: authorization (S2, S8), the repository (S12), immutable tags (S13), the
// copier.
#include <spdlog/spdlog.h>

#include "engine/engine_impl.hpp"
#include "reconcilers/status.hpp"

namespace ferry::engine {

namespace {

// A copy that failed because the source does not have what the push names (a 404 from the
// source registry) fails at once: no retry can make it appear (S20, SPEC §6). Returns the
// failure code and a message saying what was not found where; nullopt for any other failure.
std::optional<std::pair<std::string, std::string>> permanent_source_failure(
    const registry::Error& e, const model::ImageSource& src, const std::string& source_host) {
  if (!e.at_source || e.kind != registry::ErrorKind::NotFound) return std::nullopt;
  const std::string where = "repository " + src.repository_name + " at source " + src.registry_id +
                            "/" + src.region + " (" + source_host + ")";
  const std::string digest = e.digest.empty() ? src.image_digest : e.digest;
  const bool blob =
      e.code == "BLOB_UNKNOWN" || (e.code.empty() && e.operation.find("blob") != std::string::npos);
  if (e.code == "NAME_UNKNOWN") {
    return std::pair{std::string(model::kSourceRepositoryUnknown),
                     where + " not found: " + e.to_string()};
  }
  if (blob) {
    return std::pair{std::string(model::kSourceBlobUnknown),
                     "blob " + digest + " not found in " + where + ": " + e.to_string()};
  }
  return std::pair{std::string(model::kSourceManifestUnknown),
                   "manifest " + digest + " not found in " + where + ": " + e.to_string()};
}

}  // namespace

asio::awaitable<registry::Result<bool>> ReplicationEngine::Impl::repository_exists(
    registry::Copier& c, const Endpoint& ep, const std::string& repo) {
  const auto destination = c.client(ep.host, registry::Side::Destination);
  auto tags = co_await destination->tags(repo, 1000);
  if (tags) co_return true;
  if (tags.error().http_status == 404) co_return false;
  co_return std::unexpected(tags.error());
}

asio::awaitable<void> ReplicationEngine::Impl::replicate(std::string name, RegistryKey dest) {
  auto self = shared_from_this();
  auto it = records.find(name);
  if (it == records.end()) co_return;
  auto* st = status_of(it->second, dest);
  if (!st || st->status != model::kInProgress) co_return;
  const model::ImageSource src = it->second.spec.source;
  const RegistryKey src_key{src.registry_id, src.region};
  auto copier_now = copier;  // survives a reload while this copy runs

  // Copies: a reload may replace `endpoints` while this coroutine waits.
  auto find_endpoint = [&](const RegistryKey& k) -> std::optional<Endpoint> {
    auto e = endpoints.find(key_text(k));
    if (e == endpoints.end()) return std::nullopt;
    return e->second;
  };
  const auto src_ep = find_endpoint(src_key);
  const auto dst_ep_opt = find_endpoint(dest);
  if (!src_ep || !model::region_enabled(index, src_key)) {
    finish(name, dest, model::kFailed, std::string(model::kRegionNotEnabled),
           "RegionNotEnabled: source region " + src.region + " is not enabled for account " +
               src.registry_id,
           false);
    co_return;
  }
  const std::string work_key = name + "|" + key_text(dest);
  if (st->authorized_by.empty()) {
    // S2/S8: decided now, when the copy starts, and recorded, so a later revocation does not
    // stop it (S9). Whether the repository exists is asked of the destination registry: no
    // record stands for it, neither a user's Repository (settings only) nor one Ferry wrote,
    // so nothing an earlier, failed attempt left widens what the policy grants (SPEC §6).
    bool exists = true;
    if (dst_ep_opt && dst_ep_opt->error.empty() && model::region_enabled(index, dest)) {
      auto e =
          co_await destination_has_repository(*copier_now, *dst_ep_opt, dest, src.repository_name);
      if (!e) {
        co_await retry_or_fail(name, dest, e.error());
        co_return;
      }
      exists = *e;
    }
    auto auth = model::authorize(index, src_key, dest, src.repository_name, exists);
    it = records.find(name);
    if (it == records.end()) co_return;
    st = status_of(it->second, dest);
    if (!st) co_return;
    if (!auth.allowed) {
      finish(name, dest, model::kFailed, auth.failure_code, auth.message, false);
      co_return;
    }
    if (!exists) creating_repository.insert(work_key);
    st->authorized_by = auth.authorized_by;
    st->started_at = now_text();
    save_record(it->second);
  }
  if (!dst_ep_opt) {
    finish(name, dest, model::kFailed, std::string(model::kRegionNotEnabled),
           "RegionNotEnabled: no Registry for " + key_text(dest), false);
    co_return;
  }
  if (!src_ep->error.empty() || !dst_ep_opt->error.empty()) {
    finish(name, dest, model::kFailed, std::string(model::kReplicationFailed),
           !src_ep->error.empty() ? src_ep->error : dst_ep_opt->error, false);
    co_return;
  }
  const Endpoint src_ep_v = *src_ep;
  const Endpoint dst_ep = *dst_ep_opt;

  // ECR on either side: fresh data-plane tokens first (SPEC §7).
  for (const auto& k : {src_key, dest}) {
    auto ready = co_await ecr_ready(k);
    if (!ready) {
      // Named first: GCC 12 destroys temporaries built inside a co_await expression twice.
      Failure why{"ECR registry " + key_text(k) + ": " + ready.error().text, ready.error().transient};
      co_await retry_or_fail(name, dest, std::move(why));
      co_return;
    }
  }
  // An ECR destination: the repository as ECR has it, created first when absent (ECR does not
  // create repositories on push); S13 follows ECR's own mutability setting.
  const bool dest_ecr = ecr_of(dest) != nullptr;
  std::optional<model::Repository> ecr_settings;
  if (dest_ecr) {
    auto d = co_await ecr_destination(dest, src);
    if (!d) {
      // Named first: GCC 12 destroys temporaries built inside a co_await expression twice.
      Failure why{"ECR registry " + key_text(dest) + ": " + d.error().text, d.error().transient};
      co_await retry_or_fail(name, dest, std::move(why));
      co_return;
    }
    if (!d->denied_code.empty()) {
      finish(name, dest, model::kFailed, d->denied_code, d->denied_message, false);
      co_return;
    }
    ecr_settings = std::move(d->settings);
  }

  // S13: an immutable tag at the destination (IMMUTABLE, or the *_WITH_EXCLUSION modes of S16)
  // keeps its digest; the image goes over by digest.
  bool write_tag = !src.image_tag.empty();
  std::string note;
  if (write_tag) {
    const model::Repository* settings =
        ecr_settings ? &*ecr_settings : repository_settings(dest, src.repository_name);
    if (model::tag_immutable(settings, src.image_tag)) {
      const auto destination = copier_now->client(dst_ep.host, registry::Side::Destination);
      auto head = co_await destination->head_manifest(src.repository_name, src.image_tag);
      if (!head) {
        co_await retry_or_fail(name, dest, failure(head.error()));
        co_return;
      }
      const std::string existing = *head ? (*head)->digest : std::string();
      if (!model::may_write_tag(settings, src.image_tag, existing, src.image_digest)) {
        write_tag = false;
        note = "tag " + src.image_tag + " already points to " + existing + " and is immutable in " +
               settings->spec.image_tag_mutability + " repository " + src.repository_name +
               "; image copied by digest without the tag";
      }
    }
  }

  // S12: a repository this copy creates gets its Repository record once it exists, right after
  // the first manifest is written there; a copy that fails before leaves none behind. Resumed
  // after a restart, the destination says whether this copy still creates it.
  bool record_repository = false;
  if (!dest_ecr && !repository_settings(dest, src.repository_name)) {
    if (creating_repository.contains(work_key)) {
      record_repository = true;
    } else {
      auto e = co_await repository_exists(*copier_now, dst_ep, src.repository_name);
      if (!e) {
        co_await retry_or_fail(name, dest, failure(e.error()));
        co_return;
      }
      record_repository = !*e;
      if (record_repository) creating_repository.insert(work_key);
    }
  }
  // Called by the copier once the destination repository exists (the first blob or manifest
  // written created it): its record is written from then on, off the copy's path, and found by
  // repository_settings() while the write is under way or tried again (S12).
  auto write_repository_record = [this, &record_repository, dest, src, src_key] {
    if (!record_repository) return;
    record_repository = false;
    if (repository_settings(dest, src.repository_name)) return;  // another copy recorded it
    auto repo =
        model::new_replicated_repository(dest, src.repository_name, src_key, now_text(),
                                         index.creation_template(dest, src.repository_name));
    reconcilers::replicated_repository_conditions(repo, repo.status.created_at);
    spdlog::info("msg=\"repository created\" registry={} repository={} record={} template={}",
                 key_text(dest), src.repository_name, repo.metadata.name,
                 repo.status.template_name.empty() ? "none" : repo.status.template_name);
    save_repository(std::move(repo));
  };

  registry::Reference from{src_ep_v.host, src.repository_name, "", src.image_digest};
  registry::Reference to{dst_ep.host, src.repository_name, write_tag ? src.image_tag : "",
                         write_tag ? "" : src.image_digest};
  // Known as Ferry's own write before it exists (S4): in memory now, and through this record
  // (authorizedBy is saved) after a restart. The destination's baseline follows within a second.
  self_writes.insert(self_write_key(dest, src));
  note_known(dest, src.repository_name, write_tag ? src.image_tag : "", src.image_digest);
  save_known_soon();
  const auto lane =
      backfill_of.contains(name) ? registry::Lane::Backfill : registry::Lane::Push;  // S21
  auto result = co_await copier_now->copy(from, to, write_repository_record, lane);
  if (!result && write_tag && !result.error().at_source && result.error().code == "TAG_INVALID") {
    // S13 when the destination decides it (ECR: the tag became immutable or was pushed between
    // the check above and the write): its tag stays, the image goes over by digest. Everything
    // but the top manifest is there already, so this is one more manifest PUT.
    write_tag = false;
    note = "the destination refused tag " + src.image_tag + " (TAG_INVALID: " +
           result.error().message + "); image copied by digest without the tag";
    to.tag.clear();
    to.digest = src.image_digest;
    result = co_await copier_now->copy(from, to, write_repository_record, lane);
  }
  if (!result) {
    if (result.error().http_status == 401 ||
        result.error().kind == registry::ErrorKind::Unauthorized) {
      ecr_unauthorized(result.error().at_source ? src_key : dest);
    }
    if (auto permanent = permanent_source_failure(result.error(), src, src_ep_v.host)) {
      finish(name, dest, model::kFailed, std::move(permanent->first), std::move(permanent->second),
             false);
      co_return;
    }
    co_await retry_or_fail(name, dest, failure(result.error()));
    co_return;
  }
  write_repository_record();  // the copier had nothing to write: the repository exists now
  finish(name, dest, model::kComplete, "", note, write_tag || src.image_tag.empty());
}

// Whether the destination has the repository: the ECR API for ECR, the tag list otherwise.
asio::awaitable<std::expected<bool, Failure>> ReplicationEngine::Impl::destination_has_repository(
    registry::Copier& c, const Endpoint& ep, RegistryKey dest, std::string repo) {
  auto self = shared_from_this();
  if (auto e = ecr_of(dest)) {
    if (!e->error.empty()) co_return std::unexpected(Failure{e->error, false});
    auto r = co_await e->api->describe_repository(repo);
    if (!r) co_return std::unexpected(failure(r.error()));
    co_return r->has_value();
  }
  auto exists = co_await repository_exists(c, ep, repo);
  if (!exists) co_return std::unexpected(failure(exists.error()));
  co_return *exists;
}

}  // namespace ferry::engine
