// ReplicationBackfill (S17): admission, listing the source, handing images to the copy path.
#include <spdlog/spdlog.h>

#include "engine/engine_impl.hpp"
#include "reconcilers/model/backfill.hpp"

namespace ferry::engine {

// Starts, holds back or ends each unfinished backfill; runs whenever the set or a phase changes.
void ReplicationEngine::Impl::schedule_backfills() {
  if (!started || stopped) return;
  std::vector<model::ReplicationBackfill> objects;
  std::map<std::string, std::string> phases;
  for (auto& [name, run] : backfills) {
    load_backfill(run);
    if (!run.loaded) continue;
    objects.push_back(run.object);
    phases[name] = run.status.phase;
  }
  auto admission = model::admit_backfills(objects, phases);
  for (auto& [name, run] : backfills) {
    if (!run.loaded || run.active || model::backfill_finished(run.status.phase)) continue;
    if (run.object.spec.stop) {
      set_backfill_phase(run, model::kBackfillStopped,
                         "stopped (spec.stop) before it started copying");
      continue;
    }
    const auto a = admission[name];
    if (a.decision == model::BackfillAdmission::Decision::Refuse) {
      set_backfill_phase(run, model::kBackfillFailed, a.message);
      continue;
    }
    if (auto problem = model::backfill_problem(index, run.object)) {
      set_backfill_phase(run, model::kBackfillFailed, *problem);
      continue;
    }
    if (a.decision == model::BackfillAdmission::Decision::Wait) {
      if (run.status.phase != model::kBackfillPreparing || run.status.message != a.message) {
        set_backfill_phase(run, model::kBackfillPreparing, a.message);
      }
      continue;
    }
    run.active = true;
    asio::co_spawn(io, run_backfill(name), [self = shared_from_this(), name](std::exception_ptr e) {
      if (e) {
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& ex) {
          spdlog::error("msg=\"backfill crashed\" backfill={} error=\"{}\"", name, ex.what());
        }
      }
      if (auto* run = self->find_backfill(name)) run->active = false;
      if (!self->stopped) asio::post(self->io, [self] { self->schedule_backfills(); });
    });
  }
}

asio::awaitable<void> ReplicationEngine::Impl::pause(std::chrono::milliseconds d) {
  asio::steady_timer t(io, d);
  co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
}

asio::awaitable<void> ReplicationEngine::Impl::run_backfill(std::string name) {
  auto self = shared_from_this();
  BackfillRun* run = find_backfill(name);
  if (!run) co_return;
  if (!run->listed) {
    set_backfill_phase(*run, model::kBackfillPreparing, "listing the source");
    std::chrono::milliseconds wait{1000};
    for (;;) {
      auto listed = co_await list_backfill(name);
      run = find_backfill(name);
      if (!run || stopped) co_return;
      if (listed) break;
      if (run->object.spec.stop) {
        set_backfill_phase(*run, model::kBackfillStopped,
                           "stopped (spec.stop) while listing the source");
        co_return;
      }
      run->status.message = "cannot list the source yet, retrying: " + listed.error();
      report_backfill(*run);
      spdlog::warn("msg=\"backfill listing failed\" backfill={} retry_in_ms={} error=\"{}\"", name,
                   wait.count(), listed.error());
      co_await pause(wait);
      wait = std::min<std::chrono::milliseconds>(wait * 2, std::chrono::seconds(60));
      run = find_backfill(name);
      if (!run || stopped) co_return;
    }
    run->listed = true;
  }
  if (run->status.phase != model::kBackfillStopping)
    set_backfill_phase(*run, model::kBackfillInProgress, "");
  const std::size_t width = 2 * backfill_slots();
  std::size_t next = 0;
  for (;;) {
    run = find_backfill(name);
    if (!run || stopped) co_return;
    if (run->object.spec.stop && run->status.phase != model::kBackfillStopping) {
      set_backfill_phase(*run, model::kBackfillStopping,
                         "stopping (spec.stop): images in flight finish");
    }
    const bool stopping = run->status.phase == model::kBackfillStopping;
    const bool failing = model::backfill_failing(run->status.images);
    bool blocked = false;
    while (!stopping && !failing && run->outstanding < width) {
      while (next < run->items.size() && run->items[next].state != 'p') ++next;
      if (next >= run->items.size()) break;
      const std::size_t i = next++;
      auto submitted = co_await submit_backfill_item(name, i);
      run = find_backfill(name);
      if (!run || stopped) co_return;
      if (!submitted) {
        next = i;  // still pending: tried again after a pause
        run->status.message = "waiting to check the destination: " + submitted.error();
        report_backfill(*run);
        blocked = true;
        break;
      }
    }
    const bool pending =
        std::ranges::any_of(run->items, [](const BackfillItem& x) { return x.state == 'p'; });
    if (run->outstanding == 0 && (stopping || failing || !pending)) {
      const auto& n = run->status.images;
      if (stopping) {
        const auto left =
            std::ranges::count_if(run->items, [](const BackfillItem& x) { return x.state == 'p'; });
        set_backfill_phase(*run, model::kBackfillStopped,
                           "stopped (spec.stop); " + std::to_string(left) + " images not started");
      } else if (failing) {
        set_backfill_phase(
            *run, model::kBackfillFailed,
            std::to_string(n.failed) + " of " + std::to_string(n.replicated + n.failed) +
                " images tried failed (at least half of at least 100); see their ImageReplication "
                "records");
      } else {
        set_backfill_phase(*run, model::kBackfillComplete,
                           std::to_string(n.replicated) + " replicated, " +
                               std::to_string(n.skipped) + " already at the destination, " +
                               std::to_string(n.failed) + " failed");
      }
      co_return;
    }
    if (!blocked && run->status.message.starts_with("waiting to check")) {
      run->status.message.clear();
      report_backfill(*run);
    }
    // Image counts reach the store and the status through the once-a-second flush, not from here.
    co_await pause(blocked ? std::chrono::milliseconds(2000) : std::chrono::milliseconds(100));
  }
}

// Every tag of every repository in scope, with its digest. An error: the listing is not
// complete (a repository or tag that vanished meanwhile is not an error, just not there).
asio::awaitable<std::expected<void, std::string>> ReplicationEngine::Impl::list_backfill(
    std::string name) {
  auto self = shared_from_this();
  BackfillRun* run = find_backfill(name);
  if (!run) co_return std::expected<void, std::string>{};
  const model::ReplicationBackfill object = run->object;
  auto ep_it = endpoints.find(key_text(object.key()));
  if (ep_it == endpoints.end())
    co_return std::unexpected("no Registry for the source " + key_text(object.key()));
  if (!ep_it->second.error.empty()) co_return std::unexpected(ep_it->second.error);
  const Endpoint ep = ep_it->second;
  if (ecr_of(object.key())) {  // ECR has no _catalog: its API lists repositories and images
    auto listed = co_await list_ecr_images(object.key(), [&](const std::string& r) {
      return model::backfill_covers_repository(index, object, r);
    });
    if (!listed) co_return std::unexpected(listed.error());
    std::vector<BackfillItem> items;
    for (auto& e : *listed) {
      if (model::backfill_covers(index, object, e.repository, e.tag))
        items.push_back({e.repository, e.tag, e.digest, 'p'});
    }
    keep_listing(name, std::move(items), "DescribeImages");
    co_return std::expected<void, std::string>{};
  }
  auto copier_now = copier;
  const auto source = copier_now->client(ep.host, registry::Side::Source);
  auto& client = *source;
  auto repos = co_await client.catalog(1000);
  if (!repos) co_return std::unexpected("catalog of " + ep.host + ": " + repos.error().to_string());
  std::erase_if(*repos, [&](const std::string& r) {
    return !model::backfill_covers_repository(index, object, r);
  });
  std::vector<std::vector<std::string>> tag_lists(repos->size());
  std::string failure;
  co_await for_each_bounded(repos->size(), kPollWidth, [&](std::size_t i) -> asio::awaitable<void> {
    auto tags = co_await client.tags((*repos)[i], 1000);
    if (tags) {
      tag_lists[i] = std::move(*tags);
    } else if (tags.error().http_status != 404 && failure.empty()) {
      failure = "tags of " + (*repos)[i] + ": " + tags.error().to_string();
    }
  });
  if (!failure.empty()) co_return std::unexpected(failure);
  std::vector<BackfillItem> items;
  for (std::size_t i = 0; i < repos->size(); ++i) {
    for (auto& tag : tag_lists[i]) {
      if (model::backfill_covers(index, object, (*repos)[i], tag))
        items.push_back({(*repos)[i], std::move(tag), "", 'p'});
    }
  }
  co_await for_each_bounded(items.size(), kPollWidth, [&](std::size_t i) -> asio::awaitable<void> {
    auto head = co_await client.head_manifest(items[i].repository, items[i].tag);
    if (head && *head) {
      items[i].digest = (*head)->digest;
    } else if (!head && failure.empty()) {
      failure = items[i].repository + ":" + items[i].tag + ": " + head.error().to_string();
    }
  });
  if (!failure.empty()) co_return std::unexpected(failure);
  std::erase_if(items, [](const BackfillItem& x) { return x.digest.empty(); });
  keep_listing(name, std::move(items), "catalog");
  co_return std::expected<void, std::string>{};
}

// The listing becomes the backfill's kept list (if the backfill still exists).
void ReplicationEngine::Impl::keep_listing(const std::string& name, std::vector<BackfillItem> items,
                                           std::string_view via) {
  BackfillRun* run = find_backfill(name);
  if (!run) return;
  run->items = std::move(items);
  run->listed = true;
  recount(*run);
  spdlog::info("msg=\"backfill listed\" backfill={} images={} via={}", name, run->items.size(),
               via);
  persist_backfill(*run);
}

// One image: skipped when the destination's tag already names its digest, else recorded and
// queued like a push to that one destination. An error leaves it pending.
asio::awaitable<std::expected<void, std::string>> ReplicationEngine::Impl::submit_backfill_item(
    std::string name, std::size_t i) {
  auto self = shared_from_this();
  BackfillRun* run = find_backfill(name);
  if (!run || i >= run->items.size()) co_return std::expected<void, std::string>{};
  const BackfillItem item = run->items[i];
  const RegistryKey dest = run->object.spec.destination;
  const RegistryKey src = run->object.key();
  const std::string rec_name = backfill_record_name(*run, item);
  auto ep = endpoints.find(key_text(dest));
  if (!records.contains(rec_name) && ep != endpoints.end() && ep->second.error.empty() &&
      model::region_enabled(index, dest)) {
    if (auto ready = co_await ecr_ready(dest); !ready)
      co_return std::unexpected(ready.error().text);
    run = find_backfill(name);
    if (!run || i >= run->items.size()) co_return std::expected<void, std::string>{};
    ep = endpoints.find(key_text(dest));
    if (ep == endpoints.end()) co_return std::unexpected("no Registry for " + key_text(dest));
    auto copier_now = copier;
    // "Already there": the tag names the same digest at the destination (a digest there under
    // another tag is not: the tag is still copied, its blobs skipped by the copier).
    const auto destination = copier_now->client(ep->second.host, registry::Side::Destination);
    auto head =
        co_await destination->head_manifest(item.repository, item.tag.empty() ? item.digest : item.tag);
    if (!head) co_return std::unexpected(head.error().to_string());
    run = find_backfill(name);
    if (!run || i >= run->items.size()) co_return std::expected<void, std::string>{};
    if (*head && (*head)->digest == item.digest) {
      // Already there; its referrers may not be (S19).
      follow_referrers_soon(src, item.repository, item.digest, {dest});
      run->items[i].state = 's';
      recount(*run);
      run->dirty = true;
      save_backfills_soon();
      co_return std::expected<void, std::string>{};
    }
  }
  // A destination that is missing, disabled or unusable still gets the record: the copy path
  // fails it with the same code a push would get.
  if (!records.contains(rec_name)) {
    model::PushEvent push;
    push.id = backfill_push_id(*run);
    push.repository = item.repository;
    push.digest = item.digest;
    push.tag = item.tag;
    push.timestamp = now_text();
    auto record = new_record(src, push, {dest});
    // Named first: GCC 12 destroys temporaries built in a co_await's arguments twice.
    const std::string lane = "ir/" + rec_name;
    StoreWriter::Write write = [store = &state, record] { return store->save(record); };
    auto w = co_await writer.write(lane, std::move(write));
    if (!w) co_return std::unexpected("cannot write the record: " + w.error());
    run = find_backfill(name);  // the backfill may have gone while the record was written
    if (!run || i >= run->items.size()) co_return std::expected<void, std::string>{};
    spdlog::info(
        "msg=\"backfill image recorded\" backfill={} record={} repository={} digest={} tag={}",
        name, record.metadata.name, item.repository, item.digest, item.tag);
    records.try_emplace(rec_name, std::move(record));
  }
  run->items[i].state = 'q';
  ++run->outstanding;
  backfill_of[rec_name] = {name, i};
  run->dirty = true;
  save_backfills_soon();
  const auto* st = status_of(records.at(rec_name), dest);
  if (st && st->status == model::kInProgress) {
    enqueue(rec_name, dest);
  } else {
    backfill_item_done(rec_name, st ? st->status : model::kFailed);
  }
  co_return std::expected<void, std::string>{};
}

}  // namespace ferry::engine
