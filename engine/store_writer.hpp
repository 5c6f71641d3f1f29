// The engine's writes to its record store, off the engine's thread when the store blocks on the
// network (KubeStore: one or two API round trips per write). Copies in flight, polls and the
// notification endpoint run on the engine's thread; a slow API server must not stop them.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <cstddef>
#include <expected>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace ferry::engine {

// Writes are ordered per key (an object's name): one runs at a time for a key, in the order they
// were submitted, so an older status never overwrites a newer one. A write submitted while
// another for the same key still waits to start replaces it (the newer version of the object
// carries the older one's content): its waiters get the newer write's result. Different keys
// run side by side, as many as the pool has threads.
//
// Without a pool (a local store: the state directory, the engine's unit tests) a write runs at
// once on the caller's thread, and its result is handed over before submit() returns.
//
// Engine thread only, except the write functions, which run on the pool and must touch nothing
// but what they captured and the store.
class StoreWriter {
 public:
  using Result = std::expected<void, std::string>;
  using Write = std::function<Result()>;
  using Done = std::function<void(const Result&)>;

  // `engine`: where `done` runs; `pool`: where writes run (empty: inline).
  StoreWriter(boost::asio::any_io_executor engine, boost::asio::any_io_executor pool);
  ~StoreWriter();
  StoreWriter(const StoreWriter&) = delete;
  StoreWriter& operator=(const StoreWriter&) = delete;

  // Queues `write` for `key`; `done`, when set, gets its result on the engine's thread.
  void submit(const std::string& key, Write write, Done done = {});
  // The same, awaited on the engine's thread: returns once the write (or the newer one that
  // replaced it) is durable or failed.
  boost::asio::awaitable<Result> write(const std::string& key, Write write);
  // Writes queued or running.
  std::size_t pending() const;
  // Called on the engine's thread after each write ends (a stop waits for pending() to reach 0).
  void on_finished(std::function<void()> f);

  struct State;

 private:
  std::shared_ptr<State> state_;
};

}  // namespace ferry::engine
