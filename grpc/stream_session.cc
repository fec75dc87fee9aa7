// The server side of a stream (StreamSession, transport_streams.h): reads
// call and cancel frames, hands calls to the handler, writes their replies
// coalesced, and ends once the client is done and every call was answered.
#include <utility>

#include "stream_frame.h"
#include "transport_streams.h"

namespace seed_transport {

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
      seed_stream::AppendReplyHeader(call->id(), status.code, status.ok() ? "" : status.message, body.size(),
                                     pending_.bytes());
      if (status.ok()) pending_.AppendPayload(std::move(body));  // a failed reply carries no body
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

}  // namespace seed_transport
