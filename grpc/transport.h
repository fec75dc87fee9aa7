// Boundary between the TensorFlow side and the gRPC side of the op.
//
// Only std:: types cross this header: the TU that includes TensorFlow headers
// (TF's abseil, protobuf and bundled gRPC headers) must never see Debian's gRPC
// or abseil headers, and vice versa: TensorFlow exports its own gRPC and
// abseil symbols, and mixing the two copies in one TU crashes at run time.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace seed_transport {

// Status codes are gRPC's canonical codes, numerically equal to TF's.
struct Status {
  int code = 0;
  std::string message;
  bool ok() const { return code == 0; }
};

// One incoming unary call. The handler owns the obligation to call Respond
// exactly once, from any thread; the object is invalid afterwards.
class ServerCall {
 public:
  virtual ~ServerCall() = default;
  virtual const std::string& method() const = 0;
  // Moves the request payload out (call once).
  virtual std::string TakeRequest() = 0;
  // `body` is sent only when status.ok().
  virtual void Respond(std::string body, const Status& status) = 0;
  // Runs `fn` (once, on some thread) if the client cancels the call or its
  // deadline passes before Respond; at once if that already happened.
  virtual void OnCancel(std::function<void()> fn) = 0;
};

// Runs on a gRPC completion-queue thread; must not block.
using Handler = std::function<void(ServerCall* call)>;

// What TCP addresses require. Unix sockets are never encrypted nor checked:
// they are owner-only files in a private directory. Files are read at start;
// the token never leaves this process's memory (not logged, not in graphs).
struct ServerSecurity {
  std::string cert_file, key_file;    // PEM; set: TLS on every TCP address
  std::string client_ca_file;         // set: mutual TLS, clients need a cert it signed
  std::string token_file, token_env;  // one set: calls must carry "authorization: Bearer <token>"
};

struct ServerOptions {
  std::vector<std::string> addresses;  // "unix:/path", "host:port"
  int num_threads = 0;                 // completion-queue threads; 0 = cores
  int64_t max_message_size = 0;        // bytes, both directions
  int64_t max_send_message_size = 0;   // bytes; > 0 overrides max_message_size for responses
  // Serve grpc.health.v1.Health (gRPC's own Check and Watch), SERVING once started.
  bool health = false;
  ServerSecurity security;
  // Receives one line per refused call (peer address, reason; never a token),
  // rate limited. Default: stderr.
  std::function<void(const std::string&)> log;
};

struct StreamStats {
  int64_t open = 0, opened = 0, calls = 0;
};

class Server {
 public:
  virtual ~Server() = default;
  // Ports actually bound, one per address (0 for unix sockets).
  virtual std::vector<int> ports() const = 0;
  // Stops accepting calls, cancels calls not yet answered after `grace_ms`,
  // drains the completion queues and joins their threads. Idempotent.
  virtual void Shutdown(int64_t grace_ms) = 0;
  // Calls refused before reaching the handler: missing or wrong token.
  virtual int64_t refused_calls() const = 0;
  // Streams open now, streams opened in all, and calls that arrived on streams.
  virtual StreamStats stream_stats() const = 0;
  // With ServerOptions::health: what Health.Check and Watch report for
  // `services` (they become known to the health service), and for "".
  virtual void SetServing(const std::vector<std::string>& services, bool serving) = 0;
};

// Starts a server; on failure returns nullptr and sets *error.
std::unique_ptr<Server> StartServer(const ServerOptions& options,
                                    Handler handler, std::string* error);

using ResponseCallback = std::function<void(const Status&, std::string body)>;

// Whether calls go on streams unless told otherwise: yes, unless
// SEED_RPC_STREAMS=0 in the environment (read once per process).
bool StreamsByDefault();

struct CallOptions {
  int64_t timeout_us = -1;      // < 0: no deadline
  bool wait_for_ready = false;  // wait for the server instead of failing fast
  bool stream = StreamsByDefault();  // on one of the channel's long-lived streams, not a call of its own
};

// A cached channel to one address. Thread-safe; calls never share a lock on
// the hot path beyond gRPC's own.
class Channel {
 public:
  virtual ~Channel() = default;
  // Starts a unary call; `done` runs on a client completion-queue thread.
  // Returns a cancel function valid until `done` has run.
  virtual std::function<void()> Call(const std::string& method,
                                     std::string request,
                                     const CallOptions& options,
                                     ResponseCallback done) = 0;
};

// How a channel connects. Files are read when the channel is first made.
struct ChannelSecurity {
  bool tls = false;
  std::string ca_file;              // PEM roots that must sign the server's cert
  std::string cert_file, key_file;  // client certificate for mutual TLS
  std::string token_file, token_env;  // bearer token sent with every call
  std::string server_name;          // expected name in the server's cert (default: the address's host)
};

// Process-wide channel cache keyed by address, limits and security. On
// failure (unreadable file, bad PEM) returns nullptr and sets *error.
std::shared_ptr<Channel> GetChannel(const std::string& address,
                                    int64_t max_message_size,
                                    const ChannelSecurity& security,
                                    std::string* error);
std::shared_ptr<Channel> GetChannel(const std::string& address,
                                    int64_t max_message_size);

// Reads a whole file; false (with *error naming the file) if it cannot.
bool ReadFile(const std::string& path, const std::string& what,
              std::string* out, std::string* error);

std::string GrpcVersion();

}  // namespace seed_transport
