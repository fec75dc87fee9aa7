// gRPC side of the op: an async generic (ByteBuffer) unary server and client.
// Compiled with hidden visibility and linked against Debian's static gRPC
// archives, so none of these symbols can bind to TensorFlow's own gRPC copy.
#include "transport.h"

#include <absl/synchronization/mutex.h>
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/support/byte_buffer.h>
#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

namespace seed_transport {
namespace {

// Debian's abseil checks every gRPC mutex acquisition for lock-order cycles
// (a debugging aid costing a few % of each call); gRPC is tested without it.
[[maybe_unused]] const bool kNoDeadlockDetection = [] {
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  return true;
}();

// Wraps a std::string into a ByteBuffer without copying it.
grpc::ByteBuffer ToByteBuffer(std::string&& s) {
  auto* owned = new std::string(std::move(s));
  grpc::Slice slice(
      const_cast<char*>(owned->data()), owned->size(),
      [](void* p) { delete static_cast<std::string*>(p); }, owned);
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

// ---------------------------------------------------------------- server ---

class GrpcServer;

// Completion-queue tag: which step of which call completed.
struct Tag {
  enum Kind { kRequest, kRead, kFinish, kDone } kind;
  class Call* call;
};

class Call final : public ServerCall {
 public:
  Call(GrpcServer* server, grpc::ServerCompletionQueue* cq);
  void Proceed(Tag::Kind kind, bool ok);

  const std::string& method() const override { return method_; }
  std::string TakeRequest() override { return std::move(request_); }
  void Respond(std::string body, const Status& status) override;
  void OnCancel(std::function<void()> fn) override;

 private:
  // Deletes the call once both the finish and the done tags are back.
  void Release();

  GrpcServer* server_;
  grpc::ServerCompletionQueue* cq_;
  grpc::GenericServerContext ctx_;
  grpc::GenericServerAsyncReaderWriter stream_;
  grpc::ByteBuffer read_buffer_;
  std::string method_, request_;
  Tag request_tag_{Tag::kRequest, this}, read_tag_{Tag::kRead, this},
      finish_tag_{Tag::kFinish, this}, done_tag_{Tag::kDone, this};
  std::mutex mu_;
  bool responded_ = false, cancelled_ = false;
  int outstanding_ = 2;  // finish + done
  std::function<void()> on_cancel_;
};

class GrpcServer final : public Server {
 public:
  GrpcServer(Handler handler) : handler_(std::move(handler)) {}
  ~GrpcServer() override { Shutdown(0); }

  bool Start(const ServerOptions& options, std::string* error) {
    grpc::ServerBuilder builder;
    ports_.assign(options.addresses.size(), 0);
    for (size_t i = 0; i < options.addresses.size(); ++i) {
      builder.AddListeningPort(options.addresses[i],
                               grpc::InsecureServerCredentials(), &ports_[i]);
    }
    if (options.max_message_size > 0) {
      int n = static_cast<int>(std::min<int64_t>(options.max_message_size,
                                                 INT32_MAX));
      builder.SetMaxReceiveMessageSize(n);
      builder.SetMaxSendMessageSize(n);
    }
    // Clients ping idle connections every 20 s (to detect a dead server);
    // accept that instead of answering GOAWAY "too many pings", and ping
    // idle clients too so a vanished peer is noticed.
    builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 5000);
    builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
    builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 20000);
    builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
    builder.RegisterAsyncGenericService(&service_);
    int threads = options.num_threads > 0
                      ? options.num_threads
                      : std::max(1u, std::thread::hardware_concurrency());
    for (int i = 0; i < threads; ++i) cqs_.push_back(builder.AddCompletionQueue());
    server_ = builder.BuildAndStart();
    if (server_ == nullptr) {
      *error = "could not start a gRPC server on any of the addresses";
      cqs_.clear();
      return false;
    }
    for (size_t i = 0; i < options.addresses.size(); ++i) {
      const std::string& a = options.addresses[i];
      bool is_unix = a.rfind("unix:", 0) == 0;
      if (!is_unix && ports_[i] == 0) {
        *error = "could not bind address '" + a + "'";
        server_->Shutdown();
        DrainAndJoin();
        return false;
      }
      if (is_unix) {
        ports_[i] = 0;
        std::string path = a.substr(5);
        if (path.rfind("//", 0) == 0) path = path.substr(2);
        // Owner-only: anyone who can connect can run the bound functions.
        if (chmod(path.c_str(), S_IRUSR | S_IWUSR) != 0) {
          *error = "could not bind unix socket '" + a + "'";
          server_->Shutdown();
          DrainAndJoin();
          return false;
        }
      }
    }
    // Several calls pre-posted per queue so bursts are accepted at once.
    for (auto& cq : cqs_) {
      for (int j = 0; j < 64; ++j) new Call(this, cq.get());
      threads_.emplace_back([this, q = cq.get()] { Poll(q); });
    }
    return true;
  }

  std::vector<int> ports() const override { return ports_; }

  void Shutdown(int64_t grace_ms) override {
    std::lock_guard<std::mutex> guard(shutdown_mu_);
    if (server_ == nullptr || shut_down_) return;
    shut_down_ = true;
    server_->Shutdown(std::chrono::system_clock::now() +
                      std::chrono::milliseconds(grace_ms));
    // Calls handed to the handler must be answered before the queues go.
    {
      std::unique_lock<std::mutex> lock(active_mu_);
      active_cv_.wait(lock, [this] { return active_ == 0; });
    }
    DrainAndJoin();
  }

  void Dispatch(Call* call) {
    {
      std::lock_guard<std::mutex> lock(active_mu_);
      ++active_;
    }
    handler_(call);
  }
  void Answered() {
    std::lock_guard<std::mutex> lock(active_mu_);
    if (--active_ == 0) active_cv_.notify_all();
  }
  grpc::AsyncGenericService* service() { return &service_; }

 private:
  void DrainAndJoin() {
    for (auto& cq : cqs_) cq->Shutdown();
    for (auto& t : threads_) t.join();
    threads_.clear();
    // Queues that never got a thread (start failed) still need draining.
    for (auto& cq : cqs_) {
      void* tag;
      bool ok;
      while (cq->Next(&tag, &ok)) {
        static_cast<Tag*>(tag)->call->Proceed(static_cast<Tag*>(tag)->kind, ok);
      }
    }
  }

  void Poll(grpc::ServerCompletionQueue* cq) {
    void* raw;
    bool ok;
    while (cq->Next(&raw, &ok)) {
      Tag* tag = static_cast<Tag*>(raw);
      tag->call->Proceed(tag->kind, ok);
    }
  }

  Handler handler_;
  grpc::AsyncGenericService service_;
  std::unique_ptr<grpc::Server> server_;
  std::vector<std::unique_ptr<grpc::ServerCompletionQueue>> cqs_;
  std::vector<std::thread> threads_;
  std::vector<int> ports_;
  std::mutex shutdown_mu_;
  bool shut_down_ = false;
  std::mutex active_mu_;
  std::condition_variable active_cv_;
  int64_t active_ = 0;
};

Call::Call(GrpcServer* server, grpc::ServerCompletionQueue* cq)
    : server_(server), cq_(cq), stream_(&ctx_) {
  ctx_.AsyncNotifyWhenDone(&done_tag_);
  server_->service()->RequestCall(&ctx_, &stream_, cq_, cq_, &request_tag_);
}

void Call::Proceed(Tag::Kind kind, bool ok) {
  switch (kind) {
    case Tag::kRequest:
      if (!ok) {  // server shutting down; the done tag never comes
        delete this;
        return;
      }
      new Call(server_, cq_);  // keep a call posted for the next client
      method_ = ctx_.method();
      stream_.Read(&read_buffer_, &read_tag_);
      return;
    case Tag::kRead:
      if (!ok) {
        // No message: the client half-closed early or sent something larger
        // than the limit (gRPC already answers RESOURCE_EXHAUSTED then).
        stream_.Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                    "no request message received"),
                       &finish_tag_);
        return;
      }
      request_ = FromByteBuffer(read_buffer_);
      read_buffer_.Clear();
      server_->Dispatch(this);
      return;
    case Tag::kFinish:
      Release();
      return;
    case Tag::kDone: {
      std::function<void()> cancel;
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (ctx_.IsCancelled() && !responded_) {
          cancelled_ = true;
          cancel = std::move(on_cancel_);
        }
      }
      if (cancel) cancel();
      Release();
      return;
    }
  }
}

void Call::Release() {
  bool last;
  {
    std::lock_guard<std::mutex> lock(mu_);
    last = --outstanding_ == 0;
  }
  if (last) delete this;
}

void Call::OnCancel(std::function<void()> fn) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!cancelled_) {
      on_cancel_ = std::move(fn);
      return;
    }
  }
  fn();
}

void Call::Respond(std::string body, const Status& status) {
  GrpcServer* server = server_;
  std::function<void()> drop;  // destroyed outside the lock
  {
    std::lock_guard<std::mutex> lock(mu_);
    responded_ = true;
    drop = std::move(on_cancel_);
  }
  if (status.ok()) {
    grpc::ByteBuffer out = ToByteBuffer(std::move(body));
    stream_.WriteAndFinish(out, grpc::WriteOptions(), grpc::Status::OK,
                           &finish_tag_);
  } else {
    stream_.Finish(grpc::Status(static_cast<grpc::StatusCode>(status.code),
                                status.message),
                   &finish_tag_);
  }
  server->Answered();  // `this` may already be deleted by a CQ thread
}

// ---------------------------------------------------------------- client ---

struct ClientCall {
  grpc::ClientContext ctx;
  grpc::ByteBuffer response;
  grpc::Status status;
  std::unique_ptr<grpc::GenericClientAsyncResponseReader> rpc;
  ResponseCallback done;
};

// Completion queues shared by every channel of the process.
class ClientQueues {
 public:
  explicit ClientQueues(int n) {
    for (int i = 0; i < n; ++i) {
      cqs_.push_back(std::make_unique<grpc::CompletionQueue>());
      threads_.emplace_back([q = cqs_.back().get()] { Poll(q); });
    }
  }
  ~ClientQueues() {
    for (auto& cq : cqs_) cq->Shutdown();
    for (auto& t : threads_) t.join();
  }
  grpc::CompletionQueue* Next() {
    return cqs_[next_.fetch_add(1, std::memory_order_relaxed) % cqs_.size()]
        .get();
  }

 private:
  static void Poll(grpc::CompletionQueue* cq) {
    void* tag;
    bool ok;
    while (cq->Next(&tag, &ok)) {
      std::shared_ptr<ClientCall>* holder =
          static_cast<std::shared_ptr<ClientCall>*>(tag);
      ClientCall* c = holder->get();
      Status s{static_cast<int>(c->status.error_code()),
               c->status.error_message()};
      std::string body;
      if (s.ok()) body = FromByteBuffer(c->response);
      c->response.Clear();
      ResponseCallback done = std::move(c->done);
      delete holder;
      done(s, std::move(body));
    }
  }
  std::vector<std::unique_ptr<grpc::CompletionQueue>> cqs_;
  std::vector<std::thread> threads_;
  std::atomic<uint64_t> next_{0};
};

ClientQueues& SharedClientQueues() {
  static ClientQueues* queues = new ClientQueues(
      std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / 2));
  return *queues;
}

class GrpcChannel final : public Channel {
 public:
  GrpcChannel(const std::string& address, int64_t max_message_size) {
    grpc::ChannelArguments args;
    if (max_message_size > 0) {
      int n = static_cast<int>(std::min<int64_t>(max_message_size, INT32_MAX));
      args.SetMaxReceiveMessageSize(n);
      args.SetMaxSendMessageSize(n);
    }
    // Detect a dead peer on an idle connection instead of waiting forever.
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 20000);
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
    args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    channel_ = grpc::CreateCustomChannel(
        address, grpc::InsecureChannelCredentials(), args);
    stub_ = std::make_unique<grpc::GenericStub>(channel_);
  }

  std::function<void()> Call(const std::string& method, std::string request,
                             const CallOptions& options,
                             ResponseCallback done) override {
    auto call = std::make_shared<ClientCall>();
    call->done = std::move(done);
    if (options.timeout_us >= 0) {
      call->ctx.set_deadline(std::chrono::system_clock::now() +
                             std::chrono::microseconds(options.timeout_us));
    }
    call->ctx.set_wait_for_ready(options.wait_for_ready);
    grpc::ByteBuffer req = ToByteBuffer(std::move(request));
    call->rpc = stub_->PrepareUnaryCall(&call->ctx, method, req,
                                        SharedClientQueues().Next());
    call->rpc->StartCall();
    auto* holder = new std::shared_ptr<ClientCall>(call);
    call->rpc->Finish(&call->response, &call->status, holder);
    return [call] { call->ctx.TryCancel(); };
  }

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<grpc::GenericStub> stub_;
};

}  // namespace

std::unique_ptr<Server> StartServer(const ServerOptions& options,
                                    Handler handler, std::string* error) {
  auto server = std::make_unique<GrpcServer>(std::move(handler));
  if (!server->Start(options, error)) return nullptr;
  return server;
}

std::shared_ptr<Channel> GetChannel(const std::string& address,
                                    int64_t max_message_size) {
  static std::mutex* mu = new std::mutex;
  static auto* cache =
      new std::map<std::pair<std::string, int64_t>, std::shared_ptr<Channel>>;
  std::lock_guard<std::mutex> lock(*mu);
  auto& slot = (*cache)[{address, max_message_size}];
  if (slot == nullptr) {
    slot = std::make_shared<GrpcChannel>(address, max_message_size);
  }
  return slot;
}

std::string GrpcVersion() { return grpc::Version(); }

}  // namespace seed_transport

// ------------------------------------------------------ C API for Python ---
// Eager calls from Python skip TensorFlow's op dispatch (which runs every
// eager op as a function): Python frames tensors itself and calls these via
// ctypes, which releases the GIL while C++ runs. Waiting is sliced so Python
// stays interruptible (Ctrl-C cancels the call).

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

// Starts a call and waits up to `wait_ms` for it (one GIL release per call
// from Python in the common case); seed_rpc_wait continues a longer wait.
SEED_EXPORT void* seed_rpc_start(const char* address, const char* method, const char* request, size_t size,
                                 long long timeout_us, int wait_for_ready, long long max_message_size,
                                 int wait_ms) {
  using namespace seed_transport;  // NOLINT
  auto* pending = new PendingCall;
  CallOptions options;
  options.timeout_us = timeout_us;
  options.wait_for_ready = wait_for_ready != 0;
  auto cancel = GetChannel(address, max_message_size)
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
