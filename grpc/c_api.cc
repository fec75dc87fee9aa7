// The transport's C API, called from Python through ctypes (seed/grpc.py):
// eager calls skip TensorFlow's op dispatch (which runs every eager op as a
// function). Python frames tensors itself; ctypes releases the GIL while
// C++ runs, and waiting is sliced so Python stays interruptible (Ctrl-C
// cancels the call).
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "transport.h"

namespace seed_transport {
namespace {

struct PendingCall {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  seed_transport::Status status;
  std::string body;
  std::function<void()> cancel;
};

}  // namespace
}  // namespace seed_transport

#define SEED_EXPORT extern "C" __attribute__((visibility("default")))

// A cached channel (valid for the process's life), or null with the reason
// in `error` (`error_size` bytes, NUL-terminated).
SEED_EXPORT void* seed_rpc_channel(const char* address, long long max_message_size, int tls, const char* ca_file,
                                   const char* cert_file, const char* key_file, const char* token_file,
                                   const char* token_env, const char* server_name, char* error,
                                   size_t error_size) {
  using namespace seed_transport;  // NOLINT
  ChannelSecurity sec;
  sec.tls = tls != 0;
  sec.ca_file = ca_file;
  sec.cert_file = cert_file;
  sec.key_file = key_file;
  sec.token_file = token_file;
  sec.token_env = token_env;
  sec.server_name = server_name;
  std::string message;
  std::shared_ptr<Channel> channel = GetChannel(address, max_message_size, sec, &message);
  if (channel == nullptr) {
    std::snprintf(error, error_size, "%s", message.c_str());
    return nullptr;
  }
  return channel.get();  // the cache keeps it alive
}

// Starts a call and waits up to `wait_ms` for it (one GIL release per call
// from Python in the common case); seed_rpc_wait continues a longer wait.
SEED_EXPORT void* seed_rpc_start(void* channel, const char* method, const char* request, size_t size,
                                 long long timeout_us, int wait_for_ready, int stream, int wait_ms) {
  using namespace seed_transport;  // NOLINT
  auto* pending = new PendingCall;
  CallOptions options;
  options.timeout_us = timeout_us;
  options.wait_for_ready = wait_for_ready != 0;
  if (stream >= 0) options.stream = stream == 1;  // < 0: the process default
  auto cancel = static_cast<Channel*>(channel)
                    ->Call(method, std::string(request, size), options,
                           [pending](const Status& s, std::string body) {
                             std::lock_guard<std::mutex> lock(pending->mu);
                             pending->status = s;
                             pending->body = std::move(body);
                             pending->done = true;
                             pending->cv.notify_all();
                           });
  std::unique_lock<std::mutex> lock(pending->mu);
  if (!pending->done) pending->cancel = std::move(cancel);
  pending->cv.wait_for(lock, std::chrono::milliseconds(wait_ms), [pending] { return pending->done; });
  return pending;
}

SEED_EXPORT int seed_rpc_done(void* handle) {
  auto* p = static_cast<seed_transport::PendingCall*>(handle);
  std::lock_guard<std::mutex> lock(p->mu);
  return p->done ? 1 : 0;
}

// 1 when the call has completed, 0 if `timeout_ms` passed first.
SEED_EXPORT int seed_rpc_wait(void* handle, int timeout_ms) {
  auto* p = static_cast<seed_transport::PendingCall*>(handle);
  std::unique_lock<std::mutex> lock(p->mu);
  return p->cv.wait_for(lock, std::chrono::milliseconds(timeout_ms), [p] { return p->done; }) ? 1 : 0;
}

// After wait() returned 1: the status code, message and response body.
SEED_EXPORT int seed_rpc_result(void* handle, const char** body, size_t* size, const char** message) {
  auto* p = static_cast<seed_transport::PendingCall*>(handle);
  *body = p->body.data();
  *size = p->body.size();
  *message = p->status.message.c_str();
  return p->status.code;
}

SEED_EXPORT void seed_rpc_cancel(void* handle) {
  auto* p = static_cast<seed_transport::PendingCall*>(handle);
  std::function<void()> cancel;
  {
    std::lock_guard<std::mutex> lock(p->mu);
    if (!p->done) cancel = p->cancel;
  }
  if (cancel) cancel();
}

// Frees a call; it must have completed (cancel, then wait, if needed).
SEED_EXPORT void seed_rpc_free(void* handle) { delete static_cast<seed_transport::PendingCall*>(handle); }
