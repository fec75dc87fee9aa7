// The raw C++ gRPC ceiling for scripts/bench_rpc.py: an echo server and a
// closed-loop client built on transport.h only (no TensorFlow), i.e. the same
// async generic unary server, client completion queues and channel cache the
// tensor-RPC op uses, minus tensor framing, batching and the TF runtime.
//
//   echo_bench server ADDRESS [THREADS]
//       Echoes every request body back. Prints "READY <port>" (port 0 for unix
//       sockets) once listening; runs until stdin reaches EOF or it receives
//       SIGTERM/SIGINT, then shuts down and exits 0.
//
//   echo_bench client|stream-client ADDRESS CONCURRENCY PAYLOAD_BYTES SECONDS [WARMUP_SECONDS]
//       (stream-client: every call on the channel's long-lived streams, not a
//       unary call of its own.) Keeps CONCURRENCY calls in flight: each completion immediately issues
//       the next call of its caller (closed loop). After the warm-up, counts
//       completed calls for SECONDS and prints "CALLS_PER_SEC <rate>" and
//       "ERRORS <n>". A response that is not byte-identical to the request is
//       an error; exits 1 if there was any error.
#include <errno.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>

#include "transport.h"

namespace {

using Clock = std::chrono::steady_clock;

int Usage() {
  std::fprintf(stderr,
               "usage: echo_bench server ADDRESS [THREADS]\n"
               "       echo_bench client|stream-client ADDRESS CONCURRENCY PAYLOAD_BYTES SECONDS "
               "[WARMUP_SECONDS]\n");
  return 2;
}

// ---------------------------------------------------------------- server ---

int RunServer(const std::string& address, int threads) {
  // Block the stop signals in every thread (gRPC's threads inherit the mask)
  // so that only sigwait() below receives them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGUSR1);  // raised by the stdin watcher on EOF
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  seed_transport::ServerOptions options;
  options.addresses = {address};
  options.num_threads = threads;
  std::string error;
  auto server = seed_transport::StartServer(
      options,
      [](seed_transport::ServerCall* call) {
        call->Respond(call->TakeRequest(), {});
      },
      &error);
  if (server == nullptr) {
    std::fprintf(stderr, "echo_bench: %s\n", error.c_str());
    return 1;
  }
  std::printf("READY %d\n", server->ports()[0]);
  std::fflush(stdout);

  // EOF on stdin (the parent went away or closed the pipe) stops the server.
  std::thread([] {
    char buf[256];
    while (true) {
      ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));
      if (n == 0 || (n < 0 && errno != EINTR)) break;
    }
    kill(getpid(), SIGUSR1);
  }).detach();

  int sig = 0;
  sigwait(&stop_signals, &sig);
  server->Shutdown(/*grace_ms=*/100);
  server.reset();
  return 0;
}

// ---------------------------------------------------------------- client ---

std::string Pattern(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 131 + 7) & 0xff);
  return s;
}

class ClosedLoop {
 public:
  ClosedLoop(const std::string& address, size_t payload_bytes, bool stream)
      : channel_(seed_transport::GetChannel(address, /*max_message_size=*/256 << 20)),
        payload_(Pattern(payload_bytes)) {
    options_.timeout_us = 30 * 1000 * 1000;
    options_.wait_for_ready = true;
    options_.stream = stream;
  }

  void Start(int concurrency) {
    in_flight_ = concurrency;
    for (int i = 0; i < concurrency; ++i) Issue();
  }

  // Stops issuing; waits for the calls in flight. False on timeout.
  bool Stop(std::chrono::seconds timeout) {
    stop_ = true;
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [this] { return in_flight_.load() == 0; });
  }

  int64_t completed() const { return completed_.load(std::memory_order_relaxed); }
  int64_t errors() const { return errors_.load(); }

 private:
  void Issue() {
    channel_->Call("/seed/echo", payload_, options_,
                   [this](const seed_transport::Status& s, std::string body) {
                     OnDone(s, body);
                   });
  }

  // Runs on a client completion-queue thread.
  void OnDone(const seed_transport::Status& s, const std::string& body) {
    bool ok = s.ok() && body.size() == payload_.size() &&
              std::memcmp(body.data(), payload_.data(), body.size()) == 0;
    if (ok) {
      completed_.fetch_add(1, std::memory_order_relaxed);
    } else if (errors_.fetch_add(1) == 0) {
      std::fprintf(stderr, "echo_bench: first error: code %d '%s', %zu bytes back for %zu sent\n",
                   s.code, s.message.c_str(), body.size(), payload_.size());
    }
    // A failed caller retires rather than spinning against a dead server.
    if (ok && !stop_.load()) return Issue();
    if (in_flight_.fetch_sub(1) == 1) {
      std::lock_guard<std::mutex> lock(mu_);
      cv_.notify_all();
    }
  }

  std::shared_ptr<seed_transport::Channel> channel_;
  const std::string payload_;
  seed_transport::CallOptions options_;
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> completed_{0}, errors_{0};
  std::atomic<int> in_flight_{0};
  std::mutex mu_;
  std::condition_variable cv_;
};

int RunClient(const std::string& address, bool stream, int concurrency, size_t payload_bytes,
              double seconds, double warmup) {
  ClosedLoop loop(address, payload_bytes, stream);
  loop.Start(concurrency);
  std::this_thread::sleep_for(std::chrono::duration<double>(warmup));
  const int64_t c0 = loop.completed();
  const auto t0 = Clock::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  const int64_t c1 = loop.completed();
  const auto t1 = Clock::now();
  const bool drained = loop.Stop(std::chrono::seconds(30));
  const double elapsed = std::chrono::duration<double>(t1 - t0).count();
  std::printf("CALLS_PER_SEC %.1f\n", (c1 - c0) / elapsed);
  std::printf("ERRORS %lld\n", static_cast<long long>(loop.errors()));
  if (!drained) std::fprintf(stderr, "echo_bench: calls still in flight after 30s\n");
  std::fflush(stdout);
  std::fflush(stderr);
  // transport.cc's client completion queues are process-wide and never torn
  // down (by design); leave without running static destructors under them.
  std::_Exit(loop.errors() == 0 && drained ? 0 : 1);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) return Usage();
  const std::string mode = argv[1], address = argv[2];
  if (mode == "server" && argc <= 4) {
    return RunServer(address, argc == 4 ? std::atoi(argv[3]) : 0);
  }
  if ((mode == "client" || mode == "stream-client") && (argc == 6 || argc == 7)) {
    const int concurrency = std::atoi(argv[3]);
    const long long payload = std::atoll(argv[4]);
    const double seconds = std::atof(argv[5]);
    const double warmup = argc == 7 ? std::atof(argv[6]) : 0.5;
    if (concurrency < 1 || payload < 0 || seconds <= 0 || warmup < 0) return Usage();
    return RunClient(address, mode == "stream-client", concurrency, static_cast<size_t>(payload), seconds,
                     warmup);
  }
  return Usage();
}
