// Servers by the id their kernels pass around (an int64 scalar, so graphs
// and eager code hold no C++ pointer). One registry per server type.
#pragma once

#include <map>
#include <memory>
#include <mutex>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace seed_rpc {

template <typename T>
class Registry {
 public:
  static Registry& Get() {
    static auto* r = new Registry;
    return *r;
  }
  int64_t Add(std::shared_ptr<T> s) {
    std::lock_guard<std::mutex> lock(mu_);
    servers_[++last_id_] = std::move(s);
    return last_id_;
  }
  absl::Status Find(int64_t id, std::shared_ptr<T>* out) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = servers_.find(id);
    if (it == servers_.end()) return absl::NotFoundError(absl::StrCat("no server with id ", id));
    *out = it->second;
    return absl::OkStatus();
  }
  std::shared_ptr<T> Remove(int64_t id) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = servers_.find(id);
    if (it == servers_.end()) return nullptr;
    auto s = std::move(it->second);
    servers_.erase(it);
    return s;
  }

 private:
  std::mutex mu_;
  int64_t last_id_ = 0;
  std::map<int64_t, std::shared_ptr<T>> servers_;
};

}  // namespace seed_rpc
