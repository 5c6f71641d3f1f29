// StoreWriter on a real thread pool: what the engine relies on when its store is the Kubernetes
// API. Writes of one object land in order and never overwrite a newer version with an older one;
// writes of different objects run side by side; results come back on the engine's thread.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "engine/store_writer.hpp"

namespace ferry::engine {
namespace {

using namespace std::chrono_literals;
using ::testing::ElementsAre;

// A store that takes `delay` per write and keeps what each key holds and the order of writes.
struct SlowStore {
  std::chrono::milliseconds delay{50};
  std::mutex mutex;
  std::map<std::string, int> value;
  std::vector<std::string> log;
  std::atomic<int> running{0}, most{0};

  StoreWriter::Write put(std::string key, int v) {
    return [this, key, v]() -> StoreWriter::Result {
      int now = ++running;
      for (int m = most; now > m && !most.compare_exchange_weak(m, now);) {
      }
      std::this_thread::sleep_for(delay);
      --running;
      std::lock_guard lock(mutex);
      value[key] = v;
      log.push_back(key + "=" + std::to_string(v));
      if (v < 0) return std::unexpected("refused " + key);
      return {};
    };
  }
};

void run_until(boost::asio::io_context& io, const std::function<bool()>& done) {
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!done() && std::chrono::steady_clock::now() < deadline) {
    io.restart();
    io.run_for(5ms);
  }
}

TEST(StoreWriter, OneObjectsWritesLandInOrderAndAWaitingOneIsReplacedByTheNewest) {
  boost::asio::io_context io;
  boost::asio::thread_pool pool(4);
  SlowStore store;
  StoreWriter writer(io.get_executor(), pool.get_executor());
  std::vector<int> answered;
  const auto engine_thread = std::this_thread::get_id();
  for (int v = 1; v <= 4; ++v) {
    writer.submit("ir/a", store.put("ir/a", v), [&, v](const StoreWriter::Result& r) {
      EXPECT_TRUE(r.has_value());
      EXPECT_EQ(std::this_thread::get_id(), engine_thread);
      answered.push_back(v);
    });
  }
  EXPECT_EQ(writer.pending(), 4u);
  run_until(io, [&] { return writer.pending() == 0; });
  // 1 was running when 2, 3, 4 came; 4 replaced 2 and 3 while they waited: two writes, the newest last.
  EXPECT_THAT(store.log, ElementsAre("ir/a=1", "ir/a=4"));
  EXPECT_EQ(store.value["ir/a"], 4);
  EXPECT_THAT(answered, ElementsAre(1, 2, 3, 4));  // every waiter heard back
  EXPECT_EQ(store.most.load(), 1);  // never two writes of one object at once
}

TEST(StoreWriter, DifferentObjectsAreWrittenSideBySideAndTheEngineThreadStaysFree) {
  boost::asio::io_context io;
  boost::asio::thread_pool pool(4);
  SlowStore store;
  store.delay = 100ms;
  StoreWriter writer(io.get_executor(), pool.get_executor());
  for (int i = 0; i < 8; ++i) writer.submit("ir/" + std::to_string(i), store.put("ir/" + std::to_string(i), i));
  // The engine's loop keeps turning while the writes are under way: a timer every 5 ms fires.
  int ticks = 0;
  boost::asio::co_spawn(
      io,
      [&]() -> boost::asio::awaitable<void> {
        boost::asio::steady_timer t(io);
        while (writer.pending() > 0) {
          t.expires_after(5ms);
          co_await t.async_wait(boost::asio::use_awaitable);
          ++ticks;
        }
      },
      boost::asio::detached);
  run_until(io, [&] { return writer.pending() == 0; });
  EXPECT_EQ(store.value.size(), 8u);
  EXPECT_EQ(store.most.load(), 4);  // as many at once as the pool has threads
  EXPECT_GT(ticks, 10);             // 8 writes of 100 ms on 4 threads: ~200 ms of 5 ms ticks
}

TEST(StoreWriter, AnAwaitedWriteReturnsItsFailure) {
  boost::asio::io_context io;
  boost::asio::thread_pool pool(2);
  SlowStore store;
  StoreWriter writer(io.get_executor(), pool.get_executor());
  std::optional<StoreWriter::Result> got;
  boost::asio::co_spawn(
      io, [&]() -> boost::asio::awaitable<void> { got = co_await writer.write("ir/x", store.put("ir/x", -1)); },
      boost::asio::detached);
  run_until(io, [&] { return got.has_value(); });
  ASSERT_TRUE(got.has_value());
  ASSERT_FALSE(got->has_value());
  EXPECT_EQ(got->error(), "refused ir/x");
}

TEST(StoreWriter, WithoutAPoolAWriteRunsAtOnce) {
  boost::asio::io_context io;
  SlowStore store;
  store.delay = 0ms;
  StoreWriter writer(io.get_executor(), {});
  bool answered = false;
  writer.submit("ir/a", store.put("ir/a", 7), [&](const StoreWriter::Result& r) { answered = r.has_value(); });
  EXPECT_TRUE(answered);  // before submit returned, without running the loop
  EXPECT_EQ(store.value["ir/a"], 7);
  EXPECT_EQ(writer.pending(), 0u);
}

}  // namespace
}  // namespace ferry::engine
