// gRPC side of the op: an async generic (ByteBuffer) unary server and client.
// Compiled with hidden visibility and linked against Debian's static gRPC
// archives, so none of these symbols can bind to TensorFlow's own gRPC copy.
#include "transport.h"

#include "transport_streams.h"

#include <absl/synchronization/mutex.h>
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/support/byte_buffer.h>
#include <grpc/support/log.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <cstdlib>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>
#include <tuple>

// The OpenSSL linked in here is a static copy: its atexit cleanup would free
// state that gRPC threads (still reconnecting TLS channels) use at exit, and
// crash the process. Opt out before anything initializes OpenSSL.
__attribute__((constructor(101))) static void SeedNoOpensslAtexit() {
  OPENSSL_init_crypto(OPENSSL_INIT_NO_ATEXIT, nullptr);
}

namespace seed_transport {

bool ReadFile(const std::string& path, const std::string& what,
              std::string* out, std::string* error) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    *error = "cannot read " + what + " file '" + path + "'";
    return false;
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  *out = ss.str();
  if (out->empty()) {
    *error = what + " file '" + path + "' is empty";
    return false;
  }
  return true;
}

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

// Why a call found no usable connection, in words naming TLS, appended to
// gRPC's own message (which names the OpenSSL error at best).
std::string ConnectHint(bool tls, const std::string& m) {
  auto has = [&m](const char* s) { return m.find(s) != std::string::npos; };
  if (!tls && (has("Socket closed") || has("Connection reset"))) {
    return " (plaintext connection closed by the server: it probably requires TLS; give the client TLS credentials)";
  }
  if (!tls) return "";
  if (has("wrong version number")) return " (TLS handshake failed: the server does not use TLS)";
  if (has("certificate verify failed")) {
    return " (TLS: the server's certificate is not trusted: not signed by the given CA, expired or not yet valid)";
  }
  if (has("Peer name")) return " (TLS: the server's certificate is not issued for this host name)";
  if (has("Socket closed") || has("Connection reset") || has("handshake")) {
    return " (TLS handshake refused by the server: it may require a client certificate (mutual TLS) it trusts)";
  }
  return "";
}

namespace {

// A bearer token from a file or an environment variable, without the
// surrounding whitespace (files usually end in a newline).
bool ReadToken(const std::string& file, const std::string& env,
               std::string* token, std::string* error) {
  if (!file.empty() && !env.empty()) {
    *error = "give the auth token as a file or an environment variable, not both";
    return false;
  }
  if (!file.empty()) {
    if (!ReadFile(file, "auth token", token, error)) return false;
  } else {
    const char* value = std::getenv(env.c_str());
    if (value == nullptr) {
      *error = "environment variable " + env + " (the auth token) is not set";
      return false;
    }
    *token = value;
  }
  size_t begin = token->find_first_not_of(" \t\r\n");
  size_t end = token->find_last_not_of(" \t\r\n");
  *token = begin == std::string::npos ? "" : token->substr(begin, end - begin + 1);
  if (token->empty()) {
    *error = "the auth token " + (file.empty() ? "in $" + env : "file '" + file + "'") + " is empty";
    return false;
  }
  return true;
}

std::string Sha256(const char* data, size_t size) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(data, size, digest, &n, EVP_sha256(), nullptr);
  return std::string(reinterpret_cast<char*>(digest), n);
}

// Debian's abseil checks every gRPC mutex acquisition for lock-order cycles
// (a debugging aid costing a few % of each call); gRPC is tested without it.
[[maybe_unused]] const bool kNoDeadlockDetection = [] {
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  return true;
}();

}  // namespace

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

namespace {

// ---------------------------------------------------------------- server ---

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

  // TLS credentials for TCP addresses and the token digest, from the files.
  bool LoadSecurity(const ServerSecurity& sec, std::string* error) {
    tcp_credentials_ = grpc::InsecureServerCredentials();
    if (!sec.cert_file.empty() || !sec.key_file.empty()) {
      if (sec.cert_file.empty() || sec.key_file.empty()) {
        *error = "TLS needs both a certificate and a private key file";
        return false;
      }
      grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
      if (!ReadFile(sec.cert_file, "TLS certificate", &pair.cert_chain, error) ||
          !ReadFile(sec.key_file, "TLS private key", &pair.private_key, error)) {
        return false;
      }
      grpc::SslServerCredentialsOptions ssl(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
      if (!sec.client_ca_file.empty()) {
        if (!ReadFile(sec.client_ca_file, "client CA", &ssl.pem_root_certs, error)) return false;
        ssl.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
      }
      ssl.pem_key_cert_pairs.push_back(std::move(pair));
      tcp_credentials_ = grpc::SslServerCredentials(ssl);
    } else if (!sec.client_ca_file.empty()) {
      *error = "a client CA (mutual TLS) needs the server's own certificate and key";
      return false;
    }
    if (!sec.token_file.empty() || !sec.token_env.empty()) {
      std::string token;
      if (!ReadToken(sec.token_file, sec.token_env, &token, error)) return false;
      token_digest_ = Sha256(token.data(), token.size());
    }
    return true;
  }

  bool Start(const ServerOptions& options, std::string* error) {
    log_ = options.log ? options.log : [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); };
    if (!LoadSecurity(options.security, error)) return false;
    grpc::ServerBuilder builder;
    ports_.assign(options.addresses.size(), 0);
    for (size_t i = 0; i < options.addresses.size(); ++i) {
      bool is_unix = options.addresses[i].rfind("unix:", 0) == 0;
      builder.AddListeningPort(options.addresses[i],
                               is_unix ? grpc::InsecureServerCredentials() : tcp_credentials_, &ports_[i]);
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
  int64_t refused_calls() const override { return refused_.load(); }
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

  // A call from a TCP peer must carry the token (when one is set); unix
  // peers reached an owner-only socket and need none. Constant time: both
  // sides are hashed first, so neither the content nor the length leaks.
  bool Authorized(const grpc::GenericServerContext& ctx) {
    if (token_digest_.empty() || ctx.peer().rfind("unix:", 0) == 0) return true;
    const auto& md = ctx.client_metadata();
    auto it = md.find("authorization");
    std::string presented = it == md.end() ? "" : std::string(it->second.data(), it->second.size());
    constexpr char kBearer[] = "Bearer ";
    bool ok = presented.rfind(kBearer, 0) == 0;
    std::string digest = Sha256(presented.data() + (ok ? strlen(kBearer) : 0),
                                presented.size() - (ok ? strlen(kBearer) : 0));
    ok = CRYPTO_memcmp(digest.data(), token_digest_.data(), digest.size()) == 0 && ok;
    if (!ok) Refused(ctx.peer(), it == md.end() ? "no auth token" : "wrong auth token");
    return ok;
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

// ---------------------------------------------------------------- client ---

struct ClientCall {
  bool tls = false, tcp = true;
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
      if (s.code == grpc::StatusCode::UNAVAILABLE && c->tcp) s.message += ConnectHint(c->tls, s.message);
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
  // Reads the security files; false (and *error) if any is unusable.
  bool Init(const std::string& address, int64_t max_message_size,
            const ChannelSecurity& sec, std::string* error) {
    std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
    grpc::ChannelArguments args;
    if (sec.tls) {
      grpc::SslCredentialsOptions ssl;
      if (!sec.ca_file.empty() && !ReadFile(sec.ca_file, "CA certificate", &ssl.pem_root_certs, error)) return false;
      if (!sec.cert_file.empty() || !sec.key_file.empty()) {
        if (sec.cert_file.empty() || sec.key_file.empty()) {
          *error = "a client certificate (mutual TLS) needs both the certificate and the key file";
          return false;
        }
        if (!ReadFile(sec.cert_file, "client certificate", &ssl.pem_cert_chain, error) ||
            !ReadFile(sec.key_file, "client private key", &ssl.pem_private_key, error)) {
          return false;
        }
      }
      credentials = grpc::SslCredentials(ssl);
      if (!sec.server_name.empty()) args.SetSslTargetNameOverride(sec.server_name);
    } else if (!sec.ca_file.empty() || !sec.cert_file.empty() || !sec.key_file.empty()) {
      *error = "certificate files given for a channel without TLS";
      return false;
    }
    if (!sec.token_file.empty() || !sec.token_env.empty()) {
      std::string token;
      if (!ReadToken(sec.token_file, sec.token_env, &token, error)) return false;
      authorization_ = "Bearer " + token;
    }
    tls_ = sec.tls;
    tcp_ = address.rfind("unix:", 0) != 0;
    if (max_message_size > 0) {
      int n = static_cast<int>(std::min<int64_t>(max_message_size, INT32_MAX));
      args.SetMaxReceiveMessageSize(n);
      args.SetMaxSendMessageSize(n);
    }
    // Detect a dead peer on an idle connection instead of waiting forever.
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 20000);
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
    args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    // A restarted server is found within a second, not after gRPC's default
    // backoff (up to two minutes).
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
    channel_ = grpc::CreateCustomChannel(address, credentials, args);
    stub_ = std::make_unique<grpc::GenericStub>(channel_);
    return true;
  }

  std::function<void()> Call(const std::string& method, std::string request,
                             const CallOptions& options,
                             ResponseCallback done) override {
    if (options.stream) return Streams()->Call(method, std::move(request), options, std::move(done));
    auto call = std::make_shared<ClientCall>();
    call->tls = tls_;
    call->tcp = tcp_;
    call->done = std::move(done);
    if (options.timeout_us >= 0) {
      call->ctx.set_deadline(std::chrono::system_clock::now() +
                             std::chrono::microseconds(options.timeout_us));
    }
    call->ctx.set_wait_for_ready(options.wait_for_ready);
    if (!authorization_.empty()) call->ctx.AddMetadata("authorization", authorization_);
    grpc::ByteBuffer req = ToByteBuffer(std::move(request));
    call->rpc = stub_->PrepareUnaryCall(&call->ctx, method, req,
                                        SharedClientQueues().Next());
    call->rpc->StartCall();
    auto* holder = new std::shared_ptr<ClientCall>(call);
    call->rpc->Finish(&call->response, &call->status, holder);
    return [call] { call->ctx.TryCancel(); };
  }

 private:
  // The stream pool, made on the first call that wants streams (it runs a
  // deadline thread: channels used only for unary calls do without).
  StreamPool* Streams() {
    std::call_once(streams_once_, [this] {
      streams_ = std::make_unique<StreamPool>(stub_.get(), authorization_, tls_, tcp_, kStreamsPerChannel,
                                              kCallsPerStream);
    });
    return streams_.get();
  }

  // Streams per channel and the calls each may hold in flight (its flow-control bound).
  static constexpr int kStreamsPerChannel = 2;
  static constexpr size_t kCallsPerStream = 1 << 16;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<grpc::GenericStub> stub_;
  std::once_flag streams_once_;
  std::unique_ptr<StreamPool> streams_;  // declared after stub_: destroyed before it
  std::string authorization_;  // "Bearer <token>" or empty
  bool tls_ = false;
  bool tcp_ = true;
};

}  // namespace

std::unique_ptr<Server> StartServer(const ServerOptions& options,
                                    Handler handler, std::string* error) {
  auto server = std::make_unique<GrpcServer>(std::move(handler));
  if (!server->Start(options, error)) return nullptr;
  return server;
}

std::shared_ptr<Channel> GetChannel(const std::string& address,
                                    int64_t max_message_size,
                                    const ChannelSecurity& sec,
                                    std::string* error) {
  using Key = std::tuple<std::string, int64_t, bool, std::string, std::string, std::string, std::string,
                         std::string, std::string>;
  static std::mutex* mu = new std::mutex;
  static auto* cache = new std::map<Key, std::shared_ptr<Channel>>;
  Key key{address, max_message_size, sec.tls, sec.ca_file, sec.cert_file, sec.key_file,
          sec.token_file, sec.token_env, sec.server_name};
  std::lock_guard<std::mutex> lock(*mu);
  auto it = cache->find(key);
  if (it != cache->end()) return it->second;
  auto channel = std::make_shared<GrpcChannel>();
  if (!channel->Init(address, max_message_size, sec, error)) return nullptr;
  (*cache)[key] = channel;
  return channel;
}

std::shared_ptr<Channel> GetChannel(const std::string& address,
                                    int64_t max_message_size) {
  std::string error;
  return GetChannel(address, max_message_size, ChannelSecurity(), &error);
}

std::string GrpcVersion() { return grpc::Version(); }

bool StreamsByDefault() {
  static const bool on = [] {
    const char* v = std::getenv("SEED_RPC_STREAMS");
    return v != nullptr && std::string(v) == "1";
  }();
  return on;
}

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
