// Calls on long-lived bidirectional streams: the server's session and the
// client's stream pool (transport_streams.h). Compiled like transport.cc:
// gRPC headers only, hidden visibility.
#include "transport_streams.h"

#include <grpcpp/support/client_callback.h>

#include <algorithm>
#include <chrono>
#include <utility>

#include "stream_frame.h"

namespace seed_transport {

int64_t NowMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

grpc::Slice OwnedSlice(std::string&& s) {
  auto* owned = new std::string(std::move(s));
  return grpc::Slice(
      const_cast<char*>(owned->data()), owned->size(), [](void* p) { delete static_cast<std::string*>(p); }, owned);
}

void FrameBuffer::CloseBytes() {
  if (bytes_.empty()) return;
  slices_.push_back(OwnedSlice(std::move(bytes_)));
  bytes_.clear();
}

void FrameBuffer::AppendOwned(std::string&& payload) {
  CloseBytes();
  slices_.push_back(OwnedSlice(std::move(payload)));
}

void FrameBuffer::Clear() {
  bytes_.clear();
  slices_.clear();
}

grpc::ByteBuffer FrameBuffer::Take() {
  CloseBytes();
  grpc::ByteBuffer out(slices_.data(), slices_.size());
  slices_.clear();
  return out;
}

ReadMessage::ReadMessage(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  if (!buffer.Dump(&slices).ok()) return;
  const size_t total = buffer.Length();
  // The first bytes say whether the message is one frame with a large payload.
  constexpr size_t kPeek = seed_stream::kHeaderSize + 16 + seed_stream::kMaxMethodSize;
  std::string peek;
  for (const auto& s : slices) {
    if (peek.size() >= kPeek) break;
    peek.append(reinterpret_cast<const char*>(s.begin()), std::min(s.size(), kPeek - peek.size()));
  }
  size_t split = seed_stream::LonePayloadOffset(peek, total);
  if (split == 0 || total - split < FrameBuffer::kOwnSlice) split = total;
  head.reserve(split);
  payload.reserve(total - split);
  size_t at = 0;
  for (const auto& s : slices) {
    const char* p = reinterpret_cast<const char*>(s.begin());
    size_t n = s.size(), in_head = at < split ? std::min(n, split - at) : 0;
    head.append(p, in_head);
    payload.append(p + in_head, n - in_head);
    at += n;
  }
}

// ---------------------------------------------------------------- server ---

// One call on a stream, as the handler sees it.
class StreamSession::Call final : public ServerCall {
 public:
  Call(StreamSession* session, uint64_t id, std::string method, std::string request)
      : session_(session), id_(id), method_(std::move(method)), request_(std::move(request)) {}
  const std::string& method() const override { return method_; }
  std::string TakeRequest() override { return std::move(request_); }
  void Respond(std::string body, const Status& status) override {
    session_->Reply(this, std::move(body), status);
  }
  void OnCancel(std::function<void()> fn) override { session_->SetOnCancel(this, std::move(fn)); }

  uint64_t id() const { return id_; }
  // Guarded by the session's mutex.
  bool cancelled = false;
  std::function<void()> on_cancel;

 private:
  StreamSession* session_;
  const uint64_t id_;
  const std::string method_;
  std::string request_;
};

StreamSession::StreamSession(SessionHost* host, grpc::GenericServerAsyncReaderWriter* stream,
                             grpc::GenericServerContext* ctx, void* read_tag, void* write_tag,
                             void* finish_tag, std::function<void()> release)
    : host_(host), stream_(stream), ctx_(ctx), read_tag_(read_tag), write_tag_(write_tag),
      finish_tag_(finish_tag), release_(std::move(release)) {
  host_->StreamOpened();
}

StreamSession::~StreamSession() { host_->StreamClosed(); }

void StreamSession::Start() {
  std::lock_guard<std::mutex> lock(mu_);
  reading_ = true;
  stream_->Read(&read_buffer_, read_tag_);
}

void StreamSession::BreakLocked(int code, const std::string& message,
                                std::vector<std::function<void()>>* cancels) {
  if (!broken_) {
    broken_ = true;
    final_status_ = grpc::Status(static_cast<grpc::StatusCode>(code), message);
  }
  pending_.Clear();  // nobody left to read the replies
  for (auto& [id, call] : calls_) {
    if (call->cancelled) continue;
    call->cancelled = true;
    if (call->on_cancel) cancels->push_back(std::move(call->on_cancel));
  }
}

void StreamSession::OnRead(bool ok) {
  std::vector<Call*> arrived;
  std::vector<std::function<void()>> cancels;
  bool release = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    reading_ = false;
    if (!ok) {  // the client half-closed, or the stream is gone (the done tag says which)
      read_closed_ = true;
    } else {
      ReadMessage message(read_buffer_);
      read_buffer_.Clear();
      std::string_view data(message.head);
      seed_stream::Frame frame;
      std::string error;
      while (!data.empty() && !broken_) {
        if (!seed_stream::NextFrame(&data, &frame, &error, message.detached())) {
          BreakLocked(grpc::StatusCode::INVALID_ARGUMENT, error, &cancels);
          break;
        }
        if (frame.kind == seed_stream::FrameKind::kCall) {
          if (calls_.count(frame.id)) {
            BreakLocked(grpc::StatusCode::INVALID_ARGUMENT,
                        "malformed stream frame: call id " + std::to_string(frame.id) + " is in flight already",
                        &cancels);
            break;
          }
          Call* call = new Call(this, frame.id, std::string(frame.method),
                                message.detached() ? std::move(message.payload) : std::string(frame.payload));
          calls_.emplace(frame.id, call);
          arrived.push_back(call);
        } else if (frame.kind == seed_stream::FrameKind::kCancel) {
          auto it = calls_.find(frame.id);  // absent: answered already
          if (it != calls_.end() && !it->second->cancelled) {
            it->second->cancelled = true;
            if (it->second->on_cancel) cancels.push_back(std::move(it->second->on_cancel));
          }
        } else {
          BreakLocked(grpc::StatusCode::INVALID_ARGUMENT, "malformed stream frame: a reply sent to the server",
                      &cancels);
        }
      }
      if (!broken_) {
        reading_ = true;
        stream_->Read(&read_buffer_, read_tag_);
      }
    }
    MaybeFinishLocked();
    release = OverLocked();
  }
  // Calls cancelled in the message that started them are handed over too: the
  // handler's OnCancel then runs at once, and it answers them.
  if (!arrived.empty()) host_->StreamCalls(static_cast<int64_t>(arrived.size()));
  for (Call* call : arrived) host_->Dispatch(call);
  for (auto& fn : cancels) fn();
  if (release) Release();
}

void StreamSession::StartWriteLocked() {
  write_buffer_ = pending_.Take();
  writing_ = true;
  stream_->Write(write_buffer_, write_tag_);
}

void StreamSession::OnWrite(bool ok) {
  std::vector<std::function<void()>> cancels;
  bool release;
  {
    std::lock_guard<std::mutex> lock(mu_);
    writing_ = false;
    if (!ok) {
      BreakLocked(grpc::StatusCode::UNAVAILABLE, "the stream broke while replies were written", &cancels);
    } else if (!pending_.empty() && !broken_) {
      StartWriteLocked();
    }
    MaybeFinishLocked();
    release = OverLocked();
  }
  for (auto& fn : cancels) fn();
  if (release) Release();
}

void StreamSession::MaybeFinishLocked() {
  if (finish_started_ || writing_) return;
  bool drained = read_closed_ && calls_.empty() && pending_.empty();
  if (!broken_ && !drained) return;
  // A session that broke finishes once its read is back too, so no tag is outstanding but finish's.
  if (reading_) {
    if (!broken_) return;
    ctx_->TryCancel();  // ends the read
    return;
  }
  finish_started_ = true;
  stream_->Finish(broken_ ? final_status_ : grpc::Status::OK, finish_tag_);
}

void StreamSession::OnFinish() {
  bool release;
  {
    std::lock_guard<std::mutex> lock(mu_);
    finished_ = true;
    release = OverLocked();
  }
  if (release) Release();
}

void StreamSession::OnDone() {
  std::vector<std::function<void()>> cancels;
  bool release;
  {
    std::lock_guard<std::mutex> lock(mu_);
    done_ = true;
    if (ctx_->IsCancelled()) {
      BreakLocked(grpc::StatusCode::CANCELLED, "the stream was cancelled", &cancels);
    }
    MaybeFinishLocked();
    release = OverLocked();
  }
  for (auto& fn : cancels) fn();
  if (release) Release();
}

void StreamSession::Release() {
  std::function<void()> release = std::move(release_);  // it deletes this session: run it from the stack
  release();
}

bool StreamSession::OverLocked() {
  if (released_ || !finished_ || !done_ || reading_ || writing_ || !calls_.empty()) return false;
  released_ = true;
  return true;
}

void StreamSession::Reply(Call* call, std::string body, const Status& status) {
  bool release;
  {
    std::lock_guard<std::mutex> lock(mu_);
    calls_.erase(call->id());
    if (!broken_ && !call->cancelled) {
      if (status.ok() && body.size() >= FrameBuffer::kOwnSlice) {
        seed_stream::AppendReplyHeader(call->id(), 0, "", body.size(), pending_.bytes());
        pending_.AppendOwned(std::move(body));
      } else {
        seed_stream::AppendReply(call->id(), status.code, status.ok() ? "" : status.message, body, pending_.bytes());
      }
      if (!writing_ && !finish_started_) StartWriteLocked();
    }
    MaybeFinishLocked();
    release = OverLocked();
  }
  delete call;
  host_->Answered();
  if (release) Release();
}

void StreamSession::SetOnCancel(Call* call, std::function<void()> fn) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!call->cancelled) {
      call->on_cancel = std::move(fn);
      return;
    }
  }
  fn();
}

// ---------------------------------------------------------------- client ---

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
      if (request.size() >= FrameBuffer::kOwnSlice) {
        seed_stream::AppendCallHeader(id, timeout_us, method, request.size(), pending->bytes());
        pending->AppendOwned(std::move(request));
      } else {
        seed_stream::AppendCall(id, timeout_us, method, request, pending->bytes());
      }
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
