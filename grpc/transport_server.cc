// The server side of the transport: an async generic (ByteBuffer) gRPC
// server on completion queues, one thread per queue. A unary call is read,
// checked (token) and handed to the handler; a call to kStreamMethod becomes
// a StreamSession (transport_streams.h) carrying many calls.
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/grpcpp.h>
#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <thread>

#include "transport_grpc.h"
#include "transport_streams.h"

namespace seed_transport {
namespace {

class GrpcServer;

// What a call or stream refused for its token hears.
const grpc::Status kUnauthenticated(grpc::StatusCode::UNAUTHENTICATED,
                                    "missing or wrong auth token (the server requires "
                                    "'authorization: Bearer <token>')");

// Completion-queue tag: which step of which call completed.
struct Tag {
  enum Kind { kRequest, kRead, kWrite, kFinish, kDone } kind;
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
  Tag request_tag_{Tag::kRequest, this}, read_tag_{Tag::kRead, this}, write_tag_{Tag::kWrite, this},
      finish_tag_{Tag::kFinish, this}, done_tag_{Tag::kDone, this};
  // Set when the call is a stream (kStreamMethod): every later tag is the session's.
  std::unique_ptr<StreamSession> session_;
  std::mutex mu_;
  bool responded_ = false, cancelled_ = false;
  int outstanding_ = 2;  // finish + done
  std::function<void()> on_cancel_;
};


class GrpcServer final : public Server, public SessionHost {
 public:
  GrpcServer(Handler handler) : handler_(std::move(handler)) {}
  ~GrpcServer() override { Shutdown(0); }

  bool Start(const ServerOptions& options, std::string* error) {
    log_ = options.log ? options.log : [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); };
    if (!LoadServerSecurity(options.security, &tcp_credentials_, &token_digest_, error)) return false;
    grpc::ServerBuilder builder;
    ports_.assign(options.addresses.size(), 0);
    for (size_t i = 0; i < options.addresses.size(); ++i) {
      bool is_unix = options.addresses[i].rfind("unix:", 0) == 0;
      builder.AddListeningPort(options.addresses[i],
                               is_unix ? grpc::InsecureServerCredentials() : tcp_credentials_, &ports_[i]);
    }
    auto clamp = [](int64_t n) { return static_cast<int>(std::min<int64_t>(n, INT32_MAX)); };
    if (options.max_message_size > 0) {
      builder.SetMaxReceiveMessageSize(clamp(options.max_message_size));
      builder.SetMaxSendMessageSize(clamp(options.max_message_size));
    }
    if (options.max_send_message_size > 0) builder.SetMaxSendMessageSize(clamp(options.max_send_message_size));
    // Clients ping idle connections every 20 s (to detect a dead server);
    // accept that instead of answering GOAWAY "too many pings", and ping
    // idle clients too so a vanished peer is noticed.
    // A port another process holds is an error, not a silently shared port.
    builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
    builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 5000);
    builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
    builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 20000);
    builder.AddChannelArgument(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 8 << 20);
    builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
    builder.RegisterAsyncGenericService(&service_);
    int threads = options.num_threads > 0
                      ? options.num_threads
                      : std::max(1u, std::thread::hardware_concurrency());
    for (int i = 0; i < threads; ++i) cqs_.push_back(builder.AddCompletionQueue());
    {
      // The switch is process-wide and read by BuildAndStart: set it only around this build.
      static std::mutex health_mu;
      std::lock_guard<std::mutex> lock(health_mu);
      grpc::EnableDefaultHealthCheckService(options.health);
      server_ = builder.BuildAndStart();
      grpc::EnableDefaultHealthCheckService(false);
    }
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
  int64_t refused_calls() const override { return refused_.load(); }
  void SetServing(const std::vector<std::string>& services, bool serving) override {
    grpc::HealthCheckServiceInterface* health = server_ ? server_->GetHealthCheckService() : nullptr;
    if (health == nullptr) return;
    health->SetServingStatus("", serving);
    for (const std::string& s : services) health->SetServingStatus(s, serving);
  }
  StreamStats stream_stats() const override {
    return {streams_open_.load(), streams_total_.load(), stream_calls_.load()};
  }
  void StreamOpened() override {
    std::lock_guard<std::mutex> lock(active_mu_);
    ++streams_open_;
    ++streams_total_;
  }
  void StreamClosed() override {
    std::lock_guard<std::mutex> lock(active_mu_);
    if (--streams_open_ == 0) active_cv_.notify_all();
  }
  void StreamCalls(int64_t n) override { stream_calls_ += n; }

  // A TCP call or stream without the token (when one is set) is refused, counted and logged.
  bool Authorized(const grpc::GenericServerContext& ctx) {
    const char* reason = "";
    if (TokenAccepted(token_digest_, ctx, &reason)) return true;
    Refused(ctx.peer(), reason);
    return false;
  }

  void Shutdown(int64_t grace_ms) override {
    std::lock_guard<std::mutex> guard(shutdown_mu_);
    if (server_ == nullptr || shut_down_) return;
    shut_down_ = true;
    server_->Shutdown(std::chrono::system_clock::now() +
                      std::chrono::milliseconds(grace_ms));
    // Calls handed to the handler must be answered, and streams (whose tags
    // start further operations) must end, before the queues go.
    {
      std::unique_lock<std::mutex> lock(active_mu_);
      active_cv_.wait(lock, [this] { return active_ == 0 && streams_open_ == 0; });
    }
    DrainAndJoin();
  }

  void Dispatch(ServerCall* call) override {
    {
      std::lock_guard<std::mutex> lock(active_mu_);
      ++active_;
    }
    handler_(call);
  }
  void Answered() override {
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

  // Counts a refused call and logs it, at most one line per second.
  void Refused(const std::string& peer, const char* reason) {
    int64_t n = ++refused_;
    int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::steady_clock::now().time_since_epoch()).count();
    int64_t last = last_log_ms_.load();
    if (now - last < 1000 || !last_log_ms_.compare_exchange_strong(last, now)) return;
    log_("refused a call from " + peer + ": " + reason + " (" + std::to_string(n) + " refused so far)");
  }

  Handler handler_;
  std::shared_ptr<grpc::ServerCredentials> tcp_credentials_;
  std::string token_digest_;  // empty: no token required
  std::function<void(const std::string&)> log_;
  std::atomic<int64_t> refused_{0};
  std::atomic<int64_t> streams_open_{0}, streams_total_{0}, stream_calls_{0};
  std::atomic<int64_t> last_log_ms_{-1000000};
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
      if (method_ == kStreamMethod) {
        if (!server_->Authorized(ctx_)) {  // checked once, when the stream opens
          stream_.Finish(kUnauthenticated, &finish_tag_);
          return;
        }
        session_ = std::make_unique<StreamSession>(server_, &stream_, &ctx_, &read_tag_, &write_tag_,
                                                   &finish_tag_, [this] { delete this; });
        session_->Start();
        return;
      }
      stream_.Read(&read_buffer_, &read_tag_);
      return;
    case Tag::kRead:
      if (session_) return session_->OnRead(ok);
      if (!ok) {
        // No message: the client half-closed early or sent something larger
        // than the limit (gRPC already answers RESOURCE_EXHAUSTED then).
        stream_.Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                    "no request message received"),
                       &finish_tag_);
        return;
      }
      if (!server_->Authorized(ctx_)) {
        stream_.Finish(kUnauthenticated, &finish_tag_);
        return;
      }
      request_ = FromByteBuffer(read_buffer_);
      read_buffer_.Clear();
      server_->Dispatch(this);
      return;
    case Tag::kWrite:
      return session_->OnWrite(ok);
    case Tag::kFinish:
      if (session_) return session_->OnFinish();
      Release();
      return;
    case Tag::kDone: {
      if (session_) return session_->OnDone();
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

}  // namespace

std::unique_ptr<Server> StartServer(const ServerOptions& options,
                                    Handler handler, std::string* error) {
  auto server = std::make_unique<GrpcServer>(std::move(handler));
  if (!server->Start(options, error)) return nullptr;
  return server;
}

}  // namespace seed_transport
