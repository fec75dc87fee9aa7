// The client side of the transport: cached channels; unary calls on shared
// completion queues (one thread each), calls on streams through the
// channel's StreamPool (transport_streams.h).
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <map>
#include <mutex>
#include <thread>
#include <tuple>

#include "transport_grpc.h"
#include "transport_streams.h"

namespace seed_transport {
namespace {

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
    std::shared_ptr<grpc::ChannelCredentials> credentials;
    grpc::ChannelArguments args;
    if (!LoadChannelSecurity(sec, &credentials, &args, &authorization_, error)) return false;
    tls_ = sec.tls;
    tcp_ = address.rfind("unix:", 0) != 0;
    if (max_message_size > 0) {
      int n = static_cast<int>(std::min<int64_t>(max_message_size, INT32_MAX));
      args.SetMaxReceiveMessageSize(n);
      args.SetMaxSendMessageSize(n);
    }
    // Detect a dead peer on an idle connection instead of waiting forever.
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 20000);
    args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 8 << 20);
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

bool StreamsByDefault() {
  static const bool on = [] {
    const char* v = std::getenv("SEED_RPC_STREAMS");
    return v == nullptr || std::string(v) != "0";
  }();
  return on;
}

}  // namespace seed_transport
