// The client side of streams (StreamPool, transport_streams.h): each
// ClientStream is a callback bidi reactor holding its calls in flight; the
// pool picks streams round robin, reopens broken ones and ends calls whose
// deadline passed.
#include <grpcpp/support/client_callback.h>

#include <algorithm>
#include <chrono>
#include <utility>

#include "stream_frame.h"
#include "transport_streams.h"

namespace seed_transport {

class ClientStream final : public grpc::ClientBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>,
                           public std::enable_shared_from_this<ClientStream> {
 public:
  ClientStream(size_t capacity, bool tls, bool tcp) : table_(capacity), tls_(tls), tcp_(tcp) {}

  void Open(grpc::GenericStub* stub, const std::string& authorization, bool wait_for_ready) {
    if (!authorization.empty()) ctx_.AddMetadata("authorization", authorization);
    ctx_.set_wait_for_ready(wait_for_ready);
    self_ = shared_from_this();  // released in OnDone, the reactor's last callback
    stub->PrepareBidiStreamingCall(&ctx_, kStreamMethod, grpc::StubOptions(), this);
    // Writes start from callers' threads, outside any reaction: the hold keeps
    // OnDone back until no write can start any more (ReleaseHoldIfIdle).
    AddHold();
    StartRead(&read_buffer_);
    StartCall();
  }

  // Sends a call, moving `request` out only when it takes the call; 0 (with *code, *message) when
  // this stream is closed or full.
  uint64_t Send(const std::string& method, std::string&& request, int64_t timeout_us, ResponseCallback done,
                int* code, std::string* message) {
    int64_t deadline = timeout_us < 0 ? -1 : NowMicros() + timeout_us;
    auto finish = [done = std::move(done), tls = tls_, tcp = tcp_](int c, std::string m, std::string body) {
      Status s{c, std::move(m)};
      if (s.code == grpc::StatusCode::UNAVAILABLE && tcp) s.message += ConnectHint(tls, s.message);
      done(s, std::move(body));
    };
    uint64_t id = table_.Add(std::move(finish), deadline, code, message);
    if (id == 0) return 0;
    Append([&](FrameBuffer* pending) {
      seed_stream::AppendCallHeader(id, timeout_us, method, request.size(), pending->bytes());
      pending->AppendPayload(std::move(request));
    });
    return id;
  }

  void Cancel(uint64_t id) {
    if (table_.Cancel(id)) SendCancels({id});
  }

  void Expire(int64_t now_us) {
    std::vector<uint64_t> ids = table_.Expire(now_us);
    if (!ids.empty()) SendCancels(ids);
  }

  int64_t NextDeadline() const { return table_.NextDeadline(); }
  bool closed() const { return table_.closed(); }

  void OnReadDone(bool ok) override {
    if (ok) {
      ReadMessage message(read_buffer_);
      read_buffer_.Clear();
      std::string_view data(message.head);
      seed_stream::Frame frame;
      std::string error;
      while (!data.empty() && ok) {
        if (!seed_stream::NextFrame(&data, &frame, &error, message.detached()) ||
            frame.kind != seed_stream::FrameKind::kReply) {
          bad_reply_ = error.empty() ? "the server sent a frame that is not a reply" : error;
          ctx_.TryCancel();  // OnDone fails every call in flight
          ok = false;
          break;
        }
        // false: ended already
        table_.Complete(frame.id, frame.code, frame.message,
                        message.detached() ? std::move(message.payload) : std::string(frame.payload));
      }
      if (ok) {
        StartRead(&read_buffer_);
        return;
      }
    }
    // The stream ended (or we end it): no write may start from now on.
    {
      std::lock_guard<std::mutex> lock(mu_);
      closing_ = true;
      pending_.Clear();
    }
    ReleaseHoldIfIdle();
  }

  void OnWriteDone(bool ok) override {
    bool write = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      writing_ = false;
      if (ok) write = TakeWriteLocked();
    }
    if (write) Write();
  }

  void OnDone(const grpc::Status& status) override {
    int code = status.ok() ? grpc::StatusCode::UNAVAILABLE : status.error_code();
    std::string message = status.ok() ? "the server closed the stream" : status.error_message();
    if (!bad_reply_.empty()) {
      code = grpc::StatusCode::INTERNAL;
      message = bad_reply_;
    } else if (code == grpc::StatusCode::CANCELLED) {
      code = grpc::StatusCode::UNAVAILABLE;  // the server went away (we cancel only on a bad reply)
      message = "the stream broke: " + message;
    }
    table_.Close(code, message);
    self_.reset();  // may delete this
  }

 private:
  // Appends frames; starts a write when none is in flight.
  template <typename Fn>
  void Append(Fn&& append) {
    bool write;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (closing_) return;  // the table ends these calls when the stream is done
      append(&pending_);
      write = TakeWriteLocked();
    }
    if (write) Write();
  }

  void SendCancels(const std::vector<uint64_t>& ids) {
    Append([&](FrameBuffer* pending) {
      for (uint64_t id : ids) seed_stream::AppendCancel(id, pending->bytes());
    });
  }

  // Moves the pending frames into the write buffer when no write is in flight;
  // the caller then calls Write() after releasing mu_ (gRPC may run a reaction
  // inline from a Start* call, and OnWriteDone takes mu_).
  bool TakeWriteLocked() {
    if (writing_ || closing_ || pending_.empty()) return false;
    write_buffer_ = pending_.Take();
    writing_ = true;
    ++starting_;
    return true;
  }

  void Write() {
    StartWrite(&write_buffer_);
    {
      std::lock_guard<std::mutex> lock(mu_);
      --starting_;
    }
    ReleaseHoldIfIdle();
  }

  // Removes the hold (once) when the stream is closing and no write is being started.
  void ReleaseHoldIfIdle() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!closing_ || starting_ > 0 || hold_released_) return;
      hold_released_ = true;
    }
    RemoveHold();
  }

  grpc::ClientContext ctx_;
  seed_stream::InFlight table_;
  const bool tls_, tcp_;
  std::shared_ptr<ClientStream> self_;
  std::mutex mu_;
  FrameBuffer pending_;
  grpc::ByteBuffer read_buffer_, write_buffer_;
  bool writing_ = false, closing_ = false, hold_released_ = false;
  int starting_ = 0;       // writes taken but not yet started
  std::string bad_reply_;  // written on the read path, read in OnDone
};

StreamPool::StreamPool(grpc::GenericStub* stub, std::string authorization, bool tls, bool tcp, int streams,
                       size_t calls_per_stream)
    : stub_(stub), authorization_(std::move(authorization)), tls_(tls), tcp_(tcp),
      calls_per_stream_(calls_per_stream) {
  streams_[0].resize(std::max(1, streams));
  streams_[1].resize(std::max(1, streams));
  deadline_thread_ = std::thread([this] { WatchDeadlines(); });
}

StreamPool::~StreamPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  deadline_thread_.join();
}

std::shared_ptr<ClientStream> StreamPool::Pick(bool wait_for_ready) {
  auto& slots = streams_[wait_for_ready ? 1 : 0];
  std::lock_guard<std::mutex> lock(mu_);
  std::shared_ptr<ClientStream>& slot = slots[next_.fetch_add(1, std::memory_order_relaxed) % slots.size()];
  if (slot == nullptr || slot->closed()) {
    slot = std::make_shared<ClientStream>(calls_per_stream_, tls_, tcp_);
    slot->Open(stub_, authorization_, wait_for_ready);
    ++opened_;
  }
  return slot;
}

std::function<void()> StreamPool::Call(const std::string& method, std::string request, const CallOptions& options,
                                       ResponseCallback done) {
  // A stream found closed (it broke after it was picked) did not take the call:
  // one more try on a fresh stream sends it once.
  for (int attempt = 0; attempt < 2; ++attempt) {
    std::shared_ptr<ClientStream> stream = Pick(options.wait_for_ready);
    int code = 0;
    std::string message;
    // Send moves the request out only when it took the call (id != 0): a retry still has it.
    uint64_t id = stream->Send(method, std::move(request), options.timeout_us, done, &code, &message);
    if (id != 0) {
      if (options.timeout_us >= 0) Wake(NowMicros() + options.timeout_us);
      std::weak_ptr<ClientStream> weak = stream;
      return [weak, id] {
        if (auto s = weak.lock()) s->Cancel(id);
      };
    }
    if (code != grpc::StatusCode::UNAVAILABLE || attempt == 1) {
      done(Status{code, message}, "");
      return [] {};
    }
  }
  return [] {};
}

void StreamPool::Wake(int64_t deadline_us) {
  std::lock_guard<std::mutex> lock(mu_);
  if (wake_at_us_ < 0 || deadline_us < wake_at_us_) {
    wake_at_us_ = deadline_us;
    cv_.notify_all();
  }
}

void StreamPool::WatchDeadlines() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    if (wake_at_us_ < 0) {
      cv_.wait(lock);
      continue;
    }
    int64_t now = NowMicros();
    if (now < wake_at_us_) {
      cv_.wait_for(lock, std::chrono::microseconds(wake_at_us_ - now));
      continue;
    }
    std::vector<std::shared_ptr<ClientStream>> streams;
    for (auto& slots : streams_) {
      for (auto& s : slots) {
        if (s) streams.push_back(s);
      }
    }
    wake_at_us_ = -1;  // a Wake from now on sets it afresh
    lock.unlock();
    int64_t next = -1;
    for (auto& s : streams) {
      s->Expire(NowMicros());
      int64_t d = s->NextDeadline();
      if (d >= 0 && (next < 0 || d < next)) next = d;
    }
    lock.lock();
    if (next >= 0 && (wake_at_us_ < 0 || next < wake_at_us_)) wake_at_us_ = next;
  }
}

}  // namespace seed_transport
