// S17 backfill decisions as pure functions: what a ReplicationBackfill covers, whether it may
// run next to the others, when it fails on its own. The engine does the listing and copying.
#pragma once

#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "reconcilers/model/replication.hpp"
#include "reconcilers/model/resources.hpp"

namespace ferry::model {

inline constexpr std::size_t kMaxBackfillsPerSource = 10;    // not finished at once, as ECR
inline constexpr std::int64_t kBackfillFailureFloor = 100;   // tried before the 50 % rule applies

// COMPLETE, FAILED and STOPPED: nothing more happens.
bool backfill_finished(std::string_view phase);

// Why the backfill cannot run as declared: the source has no ReplicationConfig, or the
// destination is not one of its destinations. nullopt when it can.
std::optional<std::string> backfill_problem(const ResourceIndex& index, const ReplicationBackfill& backfill);

// Whether the repository is in scope at all: a rule of the source's configuration that sends to
// the destination covers it (S5), and the backfill's own filters, if any, prefix-match it.
bool backfill_covers_repository(const ResourceIndex& index, const ReplicationBackfill& backfill,
                                std::string_view repository);
// Whether `repository:tag` is: as above, with the rule's tag filters (S18) deciding the tag.
bool backfill_covers(const ResourceIndex& index, const ReplicationBackfill& backfill, std::string_view repository,
                     std::string_view tag);

struct BackfillAdmission {
  enum class Decision { Run, Wait, Refuse } decision = Decision::Run;
  std::string message;  // why it waits or is refused
};

// Which unfinished backfills may run: one per (source, destination region) at a time, the
// oldest first (creationTimestamp, then name; the others wait); at most 10 unfinished per source
// registry (the later ones are refused). `phase` gives each backfill's current phase by name.
std::map<std::string, BackfillAdmission> admit_backfills(std::span<const ReplicationBackfill> backfills,
                                                         const std::map<std::string, std::string>& phase);

// It fails on its own once at least 100 images were tried and at least half of them failed.
bool backfill_failing(const BackfillImages& images);

}  // namespace ferry::model
