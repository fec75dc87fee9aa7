// The gRPC side of the op, process-wide: OpenSSL and gRPC logging set up
// once, ByteBuffer <-> string. The server, the client, security and streams
// are transport_server.cc, transport_client.cc, transport_security.cc and
// transport_streams.cc. All of these are compiled with hidden visibility and
// linked against Debian's static gRPC archives, so none of their symbols can
// bind to TensorFlow's own gRPC copy.
#include "transport_grpc.h"

#include <absl/synchronization/mutex.h>
#include <grpc/support/log.h>
#include <grpcpp/grpcpp.h>
#include <openssl/crypto.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

// The OpenSSL linked in here is a static copy: its atexit cleanup would free
// state that gRPC threads (still reconnecting TLS channels) use at exit, and
// crash the process. Opt out before anything initializes OpenSSL.
__attribute__((constructor(101))) static void SeedNoOpensslAtexit() {
  OPENSSL_init_crypto(OPENSSL_INIT_NO_ATEXIT, nullptr);
}

namespace seed_transport {
namespace {

// gRPC logs every failed TLS handshake, and a channel that cannot connect
// retries each second: print each log site at most once per 10 s.
void RateLimitedLog(gpr_log_func_args* args) {
  static std::mutex* mu = new std::mutex;
  static auto* last = new std::map<std::pair<std::string, int>, std::chrono::steady_clock::time_point>;
  auto now = std::chrono::steady_clock::now();
  {
    std::lock_guard<std::mutex> lock(*mu);
    auto key = std::make_pair(std::string(args->file), args->line);
    auto it = last->find(key);
    if (it != last->end() && now - it->second < std::chrono::seconds(10)) return;
    (*last)[key] = now;
  }
  const char* base = std::strrchr(args->file, '/');
  std::fprintf(stderr, "%s grpc %s:%d] %s\n", gpr_log_severity_string(args->severity), base ? base + 1 : args->file,
               args->line, args->message);
}

[[maybe_unused]] const bool kRateLimitedLog = [] {
  gpr_set_log_function(RateLimitedLog);
  return true;
}();

}  // namespace

namespace {

// Debian's abseil checks every gRPC mutex acquisition for lock-order cycles
// (a debugging aid costing a few % of each call); gRPC is tested without it.
[[maybe_unused]] const bool kNoDeadlockDetection = [] {
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  return true;
}();

}  // namespace

grpc::Slice OwnedSlice(std::string&& s) {
  auto* owned = new std::string(std::move(s));
  return grpc::Slice(
      const_cast<char*>(owned->data()), owned->size(), [](void* p) { delete static_cast<std::string*>(p); }, owned);
}

grpc::ByteBuffer ToByteBuffer(std::string&& s) {
  grpc::Slice slice = OwnedSlice(std::move(s));
  return grpc::ByteBuffer(&slice, 1);
}

std::string FromByteBuffer(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  std::string out;
  if (!buffer.Dump(&slices).ok()) return out;
  out.reserve(buffer.Length());
  for (const auto& s : slices) {
    out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  return out;
}

std::string GrpcVersion() { return grpc::Version(); }

}  // namespace seed_transport
