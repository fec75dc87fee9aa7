#include "stream_calls.h"

#include <utility>

namespace seed_stream {

uint64_t InFlight::Add(Done done, int64_t deadline_us, int* code, std::string* message) {
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_) {
    *code = close_code_;
    *message = close_message_;
    return 0;
  }
  if (calls_.size() >= capacity_) {
    *code = kResourceExhausted;
    *message = "the stream has " + std::to_string(capacity_) + " calls in flight (its bound)";
    return 0;
  }
  uint64_t id = next_id_++;
  calls_.emplace(id, Entry{std::move(done), deadline_us});
  if (deadline_us >= 0) deadlines_.emplace(deadline_us, id);
  return id;
}

InFlight::Done InFlight::TakeLocked(uint64_t id) {
  auto it = calls_.find(id);
  if (it == calls_.end()) return nullptr;
  Done done = std::move(it->second.done);
  int64_t deadline = it->second.deadline_us;
  calls_.erase(it);
  if (deadline >= 0) {
    auto [first, last] = deadlines_.equal_range(deadline);
    for (auto d = first; d != last; ++d) {
      if (d->second == id) {
        deadlines_.erase(d);
        break;
      }
    }
  }
  return done;
}

bool InFlight::Complete(uint64_t id, int code, std::string_view message, std::string body) {
  Done done;
  {
    std::lock_guard<std::mutex> lock(mu_);
    done = TakeLocked(id);
  }
  if (!done) return false;
  done(code, std::string(message), std::move(body));
  return true;
}

bool InFlight::Cancel(uint64_t id) {
  Done done;
  {
    std::lock_guard<std::mutex> lock(mu_);
    done = TakeLocked(id);
  }
  if (!done) return false;
  done(kCancelled, "the call was cancelled", "");
  return true;
}

std::vector<uint64_t> InFlight::Expire(int64_t now_us) {
  std::vector<uint64_t> ids;
  std::vector<Done> expired;
  {
    std::lock_guard<std::mutex> lock(mu_);
    while (!deadlines_.empty() && deadlines_.begin()->first <= now_us) {
      uint64_t id = deadlines_.begin()->second;
      ids.push_back(id);
      expired.push_back(TakeLocked(id));
    }
  }
  for (Done& done : expired) done(kDeadlineExceeded, "the call's deadline passed", "");
  return ids;
}

int64_t InFlight::NextDeadline() const {
  std::lock_guard<std::mutex> lock(mu_);
  return deadlines_.empty() ? -1 : deadlines_.begin()->first;
}

void InFlight::Close(int code, const std::string& message) {
  std::unordered_map<uint64_t, Entry> ended;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!closed_) {
      closed_ = true;
      close_code_ = code;
      close_message_ = message;
    }
    ended.swap(calls_);
    deadlines_.clear();
  }
  for (auto& [id, entry] : ended) entry.done(code, message, "");
}

size_t InFlight::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return calls_.size();
}

bool InFlight::closed() const {
  std::lock_guard<std::mutex> lock(mu_);
  return closed_;
}

}  // namespace seed_stream
