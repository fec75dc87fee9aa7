// The client's calls in flight on one stream (issue 26): ids, callbacks,
// deadlines and a bound.
//
// Every call added here ends exactly once, whichever comes first: its reply,
// its deadline (DEADLINE_EXCEEDED), a cancel (CANCELLED) or the stream's end
// (Close: UNAVAILABLE for a broken stream). A reply that arrives after the
// call ended is dropped. The bound is the flow control: a stream holds at most
// `capacity` calls, so a slow server cannot make a client buffer without end.
// Callbacks run outside the lock, on the thread that ended the call. Only
// std:: types (no gRPC, no TensorFlow).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace seed_stream {

// gRPC's canonical codes used here.
inline constexpr int kCancelled = 1, kDeadlineExceeded = 4, kResourceExhausted = 8, kUnavailable = 14;

class InFlight {
 public:
  using Done = std::function<void(int code, std::string message, std::string body)>;

  explicit InFlight(size_t capacity) : capacity_(capacity) {}

  // Registers a call ending by `deadline_us` (steady clock, microseconds; < 0:
  // none). Returns its id (> 0); 0 when the stream is full or closed, with
  // *code and *message saying which (`done` is then not kept or run).
  uint64_t Add(Done done, int64_t deadline_us, int* code, std::string* message);

  // Ends call `id` with the server's reply; false when it had already ended.
  bool Complete(uint64_t id, int code, std::string_view message, std::string body);

  // Ends call `id` with CANCELLED; true when it was in flight (the caller then
  // tells the server).
  bool Cancel(uint64_t id);

  // Ends every call whose deadline is <= now_us with DEADLINE_EXCEEDED and
  // returns their ids (to tell the server).
  std::vector<uint64_t> Expire(int64_t now_us);

  // The earliest deadline of a call in flight; -1 when none has one.
  int64_t NextDeadline() const;

  // Ends every call in flight with (code, message); later Adds fail the same way.
  void Close(int code, const std::string& message);

  size_t size() const;
  bool closed() const;

 private:
  struct Entry {
    Done done;
    int64_t deadline_us;
  };
  // Removes `id` (the lock held); an empty Done when it was not in flight.
  Done TakeLocked(uint64_t id);

  const size_t capacity_;
  mutable std::mutex mu_;
  uint64_t next_id_ = 1;
  std::unordered_map<uint64_t, Entry> calls_;
  std::multimap<int64_t, uint64_t> deadlines_;
  bool closed_ = false;
  int close_code_ = 0;
  std::string close_message_;
};

}  // namespace seed_stream
