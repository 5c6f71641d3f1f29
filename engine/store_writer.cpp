// Per-key ordered, coalescing writes on a thread pool, results back on the engine's thread.
#include "engine/store_writer.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <exception>
#include <optional>
#include <utility>

namespace ferry::engine {

namespace asio = boost::asio;

namespace {

StoreWriter::Result run_guarded(const StoreWriter::Write& write) {
  try {
    return write();
  } catch (const std::exception& e) {
    return std::unexpected(std::string("the write failed: ") + e.what());
  }
}

}  // namespace

struct StoreWriter::State : std::enable_shared_from_this<StoreWriter::State> {
  asio::any_io_executor engine, pool;
  struct Lane {
    bool running = false;
    Write next;  // waiting to start; empty: nothing waits
    std::vector<Done> next_done;
  };
  std::map<std::string, Lane> lanes;
  std::size_t pending = 0;
  std::function<void()> on_finished;

  // Starts the write waiting in `key`'s lane, on the pool; its result comes back here.
  void start(const std::string& key) {
    auto& lane = lanes.at(key);
    lane.running = true;
    auto write = std::move(lane.next);
    auto done = std::move(lane.next_done);
    lane.next = nullptr;
    lane.next_done.clear();
    asio::post(pool, [self = shared_from_this(), key, write = std::move(write),
                      done = std::move(done)]() mutable {
      auto result = run_guarded(write);
      write = nullptr;  // what it captured is released on the pool, not on the engine's thread
      asio::post(self->engine, [self, key, result = std::move(result), done = std::move(done)] {
        self->finished(key, result, done);
      });
    });
  }

  void finished(const std::string& key, const Result& result, const std::vector<Done>& done) {
    auto& lane = lanes.at(key);
    lane.running = false;
    if (lane.next) {
      start(key);
    } else {
      lanes.erase(key);
    }
    for (const auto& d : done) {
      --pending;
      if (d) d(result);
    }
    if (on_finished) on_finished();
  }
};

StoreWriter::StoreWriter(asio::any_io_executor engine, asio::any_io_executor pool)
    : state_(std::make_shared<State>()) {
  state_->engine = std::move(engine);
  state_->pool = std::move(pool);
}

StoreWriter::~StoreWriter() = default;

void StoreWriter::submit(const std::string& key, Write write, Done done) {
  if (!state_->pool) {
    auto result = run_guarded(write);
    if (done) done(result);
    return;
  }
  ++state_->pending;
  auto& lane = state_->lanes[key];
  // A write still waiting is replaced; its waiters stay and get this one's result.
  lane.next = std::move(write);
  lane.next_done.push_back(std::move(done));
  if (!lane.running) state_->start(key);
}

asio::awaitable<StoreWriter::Result> StoreWriter::write(const std::string& key, Write write) {
  if (!state_->pool) co_return run_guarded(write);
  auto ex = co_await asio::this_coro::executor;
  auto ready = std::make_shared<asio::steady_timer>(ex, std::chrono::steady_clock::time_point::max());
  auto out = std::make_shared<std::optional<Result>>();
  submit(key, std::move(write), [ready, out](const Result& r) {
    *out = r;
    ready->cancel();
  });
  while (!out->has_value()) co_await ready->async_wait(asio::as_tuple(asio::use_awaitable));
  co_return std::move(**out);
}

std::size_t StoreWriter::pending() const { return state_->pending; }

void StoreWriter::on_finished(std::function<void()> f) { state_->on_finished = std::move(f); }

}  // namespace ferry::engine
