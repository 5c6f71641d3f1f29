// ReplicationBackfill (S17): the set of backfills, their kept progress and status.
#include <spdlog/spdlog.h>

#include "engine/engine_impl.hpp"
#include "reconcilers/model/backfill.hpp"
#include "reconcilers/model/serialize.hpp"

namespace ferry::engine {

std::string ReplicationEngine::Impl::backfill_push_id(const BackfillRun& run) const {
  const auto& md = run.object.metadata;
  return "backfill-" + md.name + (md.uid.empty() ? "" : "-" + md.uid);
}

std::string ReplicationEngine::Impl::backfill_record_name(const BackfillRun& run,
                                                          const BackfillItem& item) const {
  return model::image_replication_name(run.object.key(), item.repository, item.digest, item.tag,
                                       backfill_push_id(run));
}

ReplicationEngine::Impl::BackfillRun* ReplicationEngine::Impl::find_backfill(
    const std::string& name) {
  auto it = backfills.find(name);
  return it == backfills.end() ? nullptr : &it->second;
}

// The backfills of the current resources: new ones are added, removed ones forgotten (their
// records go on as records; nothing in a registry is touched, S10).
void ReplicationEngine::Impl::update_backfills() {
  std::set<std::string> present;
  static const std::vector<model::ReplicationBackfill> none;  // another engine runs them
  for (const auto& b : opts.run_backfills ? index.backfills() : none) {
    present.insert(b.metadata.name);
    auto [it, fresh] = backfills.try_emplace(b.metadata.name);
    if (!fresh && !it->second.object.metadata.uid.empty() &&
        it->second.object.metadata.uid != b.metadata.uid) {
      it->second = BackfillRun{};  // deleted and created again under the same name: a new backfill
    }
    it->second.object = b;
  }
  for (auto it = backfills.begin(); it != backfills.end();) {
    if (present.contains(it->first)) {
      ++it;
      continue;
    }
    for (auto r = backfill_of.begin(); r != backfill_of.end();) {
      r = r->second.first == it->first ? backfill_of.erase(r) : std::next(r);
    }
    it = backfills.erase(it);
  }
  if (started) schedule_backfills();
}

void ReplicationEngine::Impl::load_backfill(BackfillRun& run) {
  if (run.loaded) return;
  const std::string& name = run.object.metadata.name;
  auto v = state.load_state(backfill_state_key(name));
  if (!v) {
    spdlog::error(
        "msg=\"cannot read the progress of a backfill; it waits until it can\" backfill={} "
        "error=\"{}\"",
        name, v.error());
    retry_backfills_soon();
    return;
  }
  run.loaded = true;
  if (!*v || !(*v)->is_object()) return;
  const auto& o = (*v)->as_object();
  auto str = [&](const char* k) {
    const auto* x = o.if_contains(k);
    return x && x->is_string() ? std::string(x->as_string()) : std::string();
  };
  if (str("uid") != run.object.metadata.uid) return;  // progress of an earlier object of that name
  run.status.phase = str("phase");
  run.status.started_at = str("startedAt");
  run.status.completed_at = str("completedAt");
  run.status.message = str("message");
  if (const auto* l = o.if_contains("listed"); l && l->is_bool()) run.listed = l->as_bool();
  if (const auto* items = o.if_contains("items"); items && items->is_array()) {
    for (const auto& it : items->as_array()) {
      const auto* a = it.if_array();
      if (!a || a->size() != 4 ||
          !std::ranges::all_of(*a, [](const json::value& x) { return x.is_string(); })) {
        continue;
      }
      BackfillItem item{std::string((*a)[0].as_string()), std::string((*a)[1].as_string()),
                        std::string((*a)[2].as_string()),
                        (*a)[3].as_string().empty() ? 'p' : (*a)[3].as_string()[0]};
      run.items.push_back(std::move(item));
    }
  }
  // Submitted images, and pending ones whose record was written just before a crash, take
  // their state from their record; a submitted one whose record is gone was COMPLETE (only
  // those are swept).
  for (std::size_t i = 0; i < run.items.size(); ++i) {
    auto& item = run.items[i];
    if (item.state != 'p' && item.state != 'q') continue;
    const std::string rec = backfill_record_name(run, item);
    auto r = records.find(rec);
    if (r == records.end()) {
      if (item.state == 'q') item.state = 'r';
      continue;
    }
    const auto* st = status_of(r->second, run.object.spec.destination);
    if (st && st->status == model::kComplete) {
      item.state = 'r';
    } else if (st && st->status == model::kFailed) {
      item.state = 'f';
    } else {
      item.state = 'q';
      backfill_of[rec] = {run.object.metadata.name, i};
      ++run.outstanding;
    }
  }
  recount(run);
  spdlog::info("msg=\"backfill progress read\" backfill={} phase={} images={} outstanding={}", name,
               run.status.phase.empty() ? "new" : run.status.phase, run.items.size(),
               run.outstanding);
}

void ReplicationEngine::Impl::retry_backfills_soon() {
  once_after(&Impl::backfill_retry_armed, std::chrono::seconds(2), &Impl::schedule_backfills);
}

void ReplicationEngine::Impl::recount(BackfillRun& run) {
  model::BackfillImages n;
  n.total = static_cast<std::int64_t>(run.items.size());
  for (const auto& i : run.items) {
    if (i.state == 's') ++n.skipped;
    if (i.state == 'r') ++n.replicated;
    if (i.state == 'f') ++n.failed;
  }
  run.status.images = n;
}

void ReplicationEngine::Impl::persist_backfill(BackfillRun& run) {
  json::array items;
  items.reserve(run.items.size());
  for (const auto& i : run.items)
    items.push_back(json::array{i.repository, i.tag, i.digest, std::string(1, i.state)});
  json::object o{{"uid", run.object.metadata.uid},     {"phase", run.status.phase},
                 {"startedAt", run.status.started_at}, {"completedAt", run.status.completed_at},
                 {"message", run.status.message},      {"listed", run.listed},
                 {"items", std::move(items)}};
  run.dirty = false;  // set again if this write fails
  const std::string key = backfill_state_key(run.object.metadata.name);
  writer.submit("state/" + key, [store = &state, key, o = std::move(o)] { return store->save_state(key, o); },
                [self = shared_from_this(), name = run.object.metadata.name](const StoreWriter::Result& w) {
                  auto* r = self->find_backfill(name);
                  if (!r) return;
                  if (!w) {
                    spdlog::error("msg=\"cannot persist backfill progress\" backfill={} error=\"{}\"", name,
                                  w.error());
                    r->dirty = true;
                    return;
                  }
                  self->report_backfill(*r);  // the status shows what is durable
                });
}

void ReplicationEngine::Impl::report_backfill(BackfillRun& run) {
  const std::string now = json::serialize(model::status_to_json(run.status));
  if (now == run.reported) return;
  run.reported = now;
  if (opts.on_backfill_status) {
    model::ReplicationBackfill b = run.object;
    b.status = run.status;
    opts.on_backfill_status(b);
  }
}

// Image outcomes are written at most once a second; phase changes at once.
void ReplicationEngine::Impl::save_backfills_soon() {
  once_after(&Impl::backfill_flush_armed, std::chrono::seconds(1), &Impl::flush_backfills);
}

void ReplicationEngine::Impl::flush_backfills() {
  for (auto& [name, run] : backfills) {
    if (run.dirty) persist_backfill(run);
  }
}

void ReplicationEngine::Impl::set_backfill_phase(BackfillRun& run, std::string_view phase,
                                                 std::string message) {
  run.status.phase = phase;
  run.status.message = std::move(message);
  if (model::backfill_finished(phase)) run.status.completed_at = now_text();
  if (run.status.started_at.empty()) run.status.started_at = now_text();
  spdlog::info(
      "msg=\"backfill {}\" backfill={} total={} replicated={} skipped={} failed={} message=\"{}\"",
      phase, run.object.metadata.name, run.status.images.total, run.status.images.replicated,
      run.status.images.skipped, run.status.images.failed, run.status.message);
  persist_backfill(run);
}

void ReplicationEngine::Impl::backfill_item_done(const std::string& record,
                                                 std::string_view status) {
  auto b = backfill_of.find(record);
  if (b == backfill_of.end()) return;
  auto [name, i] = b->second;
  backfill_of.erase(b);
  BackfillRun* run = find_backfill(name);
  if (!run || i >= run->items.size()) return;
  run->items[i].state = status == model::kComplete ? 'r' : 'f';
  if (run->outstanding > 0) --run->outstanding;
  recount(*run);
  run->dirty = true;
  save_backfills_soon();
}

std::map<std::string, model::ReplicationBackfillStatus> ReplicationEngine::Impl::backfill_statuses()
    const {
  std::map<std::string, model::ReplicationBackfillStatus> out;
  for (const auto& [name, run] : backfills) out[name] = run.status;
  return out;
}

}  // namespace ferry::engine
