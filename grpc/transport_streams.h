// Calls on long-lived bidirectional streams (issue 26), gRPC side: the server's
// per-stream session (stream_session.cc) and the client's stream pool
// (stream_pool.cc), and what both share (transport_streams.cc). Internal to the gRPC
// translation units (transport_grpc.h): no TensorFlow code may include it.
//
// A client opens a stream with the method kStreamMethod; every gRPC message on
// it carries stream frames (stream_frame.h). Each call is tagged with an id, so
// replies come back in any order and one write may answer many callers. The
// token and TLS apply when the stream opens; a call's deadline and cancel are
// the client's (it answers DEADLINE_EXCEEDED/CANCELLED at once and tells the
// server, which drops the call from its batch); a stream that breaks fails
// exactly its calls in flight with UNAVAILABLE, and the next call opens a new
// stream.
#pragma once

#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/support/byte_buffer.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "stream_calls.h"
#include "transport_grpc.h"

namespace seed_transport {

inline constexpr char kStreamMethod[] = "/seed.Stream/Open";

// Frames waiting for a write, as one gRPC message: small frames are copied
// together, a large payload goes as a slice of its own (moved, never copied).
class FrameBuffer {
 public:
  // Payloads this large travel as their own slice.
  static constexpr size_t kOwnSlice = 4096;
  std::string* bytes() { return &bytes_; }  // appends go to the open run of small frames
  // A frame's payload after its header (AppendCallHeader, AppendReplyHeader):
  // copied into the run of small frames, or a slice of its own if large.
  void AppendPayload(std::string&& payload);
  bool empty() const { return bytes_.empty() && slices_.empty(); }
  void Clear();
  grpc::ByteBuffer Take();  // and leaves this empty

 private:
  void CloseBytes();
  void AppendOwned(std::string&& payload);
  std::string bytes_;
  std::vector<grpc::Slice> slices_;
};

// A received message ready for NextFrame: its frames in `head`, or, when it
// is one call or reply with a large payload, that frame without its payload
// in `head` and the payload in `payload`, each byte copied once.
struct ReadMessage {
  explicit ReadMessage(const grpc::ByteBuffer& buffer);
  std::string head, payload;
  size_t detached() const { return payload.size(); }
};

// What a stream session needs from its server.
class SessionHost {
 public:
  virtual ~SessionHost() = default;
  virtual void Dispatch(ServerCall* call) = 0;  // hands a call to the handler
  virtual void Answered() = 0;                  // after that call's Respond
  virtual void StreamOpened() = 0;
  virtual void StreamClosed() = 0;
  virtual void StreamCalls(int64_t n) = 0;  // calls arrived on a stream
};

// The server side of one stream, driven by its completion-queue tags (read,
// write, finish, done) and by its calls' Respond from any thread. `release`
// runs once, when no operation is outstanding and every call was answered:
// it deletes whatever owns the stream (and this session).
class StreamSession {
 public:
  StreamSession(SessionHost* host, grpc::GenericServerAsyncReaderWriter* stream,
                grpc::GenericServerContext* ctx, void* read_tag, void* write_tag,
                void* finish_tag, std::function<void()> release);
  ~StreamSession();
  void Start();  // posts the first read
  void OnRead(bool ok);
  void OnWrite(bool ok);
  void OnFinish();
  void OnDone();

 private:
  class Call;
  friend class Call;
  void Reply(Call* call, std::string body, const Status& status);
  void SetOnCancel(Call* call, std::function<void()> fn);
  // Each *Locked runs with mu_ held.
  void StartWriteLocked();
  void MaybeFinishLocked();
  void BreakLocked(int code, const std::string& message, std::vector<std::function<void()>>* cancels);
  // Whether release should run now (at most once); mu_ held.
  bool OverLocked();
  void Release();

  SessionHost* host_;
  grpc::GenericServerAsyncReaderWriter* stream_;
  grpc::GenericServerContext* ctx_;
  void *read_tag_, *write_tag_, *finish_tag_;
  std::function<void()> release_;
  std::mutex mu_;
  std::unordered_map<uint64_t, Call*> calls_;
  FrameBuffer pending_;  // reply frames waiting for the write in flight
  grpc::ByteBuffer read_buffer_, write_buffer_;
  bool reading_ = false, writing_ = false, read_closed_ = false, broken_ = false;
  bool finish_started_ = false, finished_ = false, done_ = false, released_ = false;
  grpc::Status final_status_;
};

class ClientStream;

// A channel's streams: calls go round robin over `streams` of them, opened on
// first use and reopened after they break; one thread ends calls whose
// deadline passed.
class StreamPool {
 public:
  StreamPool(grpc::GenericStub* stub, std::string authorization, bool tls, bool tcp, int streams,
             size_t calls_per_stream);
  ~StreamPool();
  std::function<void()> Call(const std::string& method, std::string request, const CallOptions& options,
                             ResponseCallback done);
  int64_t streams_opened() const { return opened_.load(); }

 private:
  std::shared_ptr<ClientStream> Pick(bool wait_for_ready);
  void WatchDeadlines();
  void Wake(int64_t deadline_us);

  grpc::GenericStub* stub_;
  const std::string authorization_;
  const bool tls_, tcp_;
  const size_t calls_per_stream_;
  std::mutex mu_;
  // [wait_for_ready][i]: a stream that waits for the server and one that fails fast.
  std::vector<std::shared_ptr<ClientStream>> streams_[2];
  std::atomic<uint64_t> next_{0};
  std::atomic<int64_t> opened_{0};
  std::condition_variable cv_;
  int64_t wake_at_us_ = -1;
  bool stop_ = false;
  std::thread deadline_thread_;
};

int64_t NowMicros();  // steady clock

}  // namespace seed_transport
