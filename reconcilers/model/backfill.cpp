// S17 backfill decisions: scope, admission and the failure rule.
#include "reconcilers/model/backfill.hpp"

#include <algorithm>
#include <vector>

#include "reconcilers/model/rules.hpp"

namespace ferry::model {

namespace {

bool sends_to(const ReplicationRule& rule, const RegistryKey& destination) {
  return std::ranges::find(rule.destinations, destination) != rule.destinations.end();
}

bool own_filters_match(const ReplicationBackfill& b, std::string_view repository) {
  if (b.spec.repository_filters.empty()) return true;
  return std::ranges::any_of(b.spec.repository_filters,
                             [&](const RepositoryFilter& f) { return repository.starts_with(f.filter); });
}

}  // namespace

bool backfill_finished(std::string_view phase) {
  return phase == kBackfillComplete || phase == kBackfillFailed || phase == kBackfillStopped;
}

std::optional<std::string> backfill_problem(const ResourceIndex& index, const ReplicationBackfill& b) {
  const ReplicationConfig* config = index.config_for(b.key());
  if (!config) return "no ReplicationConfig for the source registry " + to_string(b.key());
  const bool destination = std::ranges::any_of(config->spec.rules, [&](const ReplicationRule& r) {
    return sends_to(r, b.spec.destination);
  });
  if (!destination) {
    return to_string(b.spec.destination) + " is not a destination of ReplicationConfig/" + config->metadata.name;
  }
  return std::nullopt;
}

bool backfill_covers_repository(const ResourceIndex& index, const ReplicationBackfill& b, std::string_view repository) {
  const ReplicationConfig* config = index.config_for(b.key());
  if (!config || !own_filters_match(b, repository)) return false;
  return std::ranges::any_of(config->spec.rules, [&](const ReplicationRule& r) {
    return sends_to(r, b.spec.destination) && rule_applies(r, repository);
  });
}

bool backfill_covers(const ResourceIndex& index, const ReplicationBackfill& b, std::string_view repository,
                     std::string_view tag) {
  const ReplicationConfig* config = index.config_for(b.key());
  if (!config || !own_filters_match(b, repository)) return false;
  return std::ranges::any_of(config->spec.rules, [&](const ReplicationRule& r) {
    return sends_to(r, b.spec.destination) && rule_applies(r, repository, tag);
  });
}

std::map<std::string, BackfillAdmission> admit_backfills(std::span<const ReplicationBackfill> backfills,
                                                         const std::map<std::string, std::string>& phase) {
  auto phase_of = [&](const ReplicationBackfill& b) {
    auto it = phase.find(b.metadata.name);
    return it == phase.end() ? std::string() : it->second;
  };
  std::vector<const ReplicationBackfill*> open;
  for (const auto& b : backfills) {
    if (!backfill_finished(phase_of(b))) open.push_back(&b);
  }
  // Oldest first; one already running keeps its place whatever its age.
  std::ranges::stable_sort(open, [&](const ReplicationBackfill* x, const ReplicationBackfill* y) {
    const bool xr = !phase_of(*x).empty(), yr = !phase_of(*y).empty();
    const bool x_running = xr && phase_of(*x) != kBackfillPreparing;
    const bool y_running = yr && phase_of(*y) != kBackfillPreparing;
    if (x_running != y_running) return x_running;
    if (x->metadata.creation_timestamp != y->metadata.creation_timestamp)
      return x->metadata.creation_timestamp < y->metadata.creation_timestamp;
    return x->metadata.name < y->metadata.name;
  });
  std::map<std::string, BackfillAdmission> out;
  std::map<RegistryKey, std::size_t> per_source;
  std::map<std::pair<RegistryKey, std::string>, std::string> running;  // (source, destination region) → name
  for (const auto* b : open) {
    BackfillAdmission a;
    if (++per_source[b->key()] > kMaxBackfillsPerSource) {
      a.decision = BackfillAdmission::Decision::Refuse;
      a.message = "more than " + std::to_string(kMaxBackfillsPerSource) + " unfinished backfills for the source " +
                  to_string(b->key());
      --per_source[b->key()];
    } else if (auto [it, fresh] = running.emplace(std::pair{b->key(), b->spec.destination.region}, b->metadata.name);
               !fresh) {
      a.decision = BackfillAdmission::Decision::Wait;
      a.message = "waiting for ReplicationBackfill/" + it->second + ": one backfill at a time from " +
                  to_string(b->key()) + " into region " + b->spec.destination.region;
    }
    out[b->metadata.name] = std::move(a);
  }
  return out;
}

bool backfill_failing(const BackfillImages& images) {
  const std::int64_t tried = images.replicated + images.failed;
  return tried >= kBackfillFailureFloor && images.failed * 2 >= tried;
}

}  // namespace ferry::model
