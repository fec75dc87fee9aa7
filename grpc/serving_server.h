// seed.serve's gRPC port in C++ (TensorFlow side, no gRPC headers): the
// PredictionService answered here (predict_service.h), gRPC's health service,
// and every other method (ModelService, ...) forwarded as a unary call to the
// Python grpcio server on a private unix socket.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "predict_service.h"
#include "transport.h"

namespace seed_rpc {

struct ServingOptions {
  std::string address;        // "host:port"
  std::string forward_address;  // "unix:/private/dir/socket": the Python servicers
  int num_threads = 0;
  int64_t max_request_bytes = 0, max_response_bytes = 0;
  bool cpp_predict = true;  // false: PredictionService is forwarded too (the Python path)
  BatchingOptions batching;
};

class ServingServer {
 public:
  explicit ServingServer(ServingOptions options) : options_(std::move(options)), predict_(options_.batching) {}
  ~ServingServer() { Shutdown(); }

  absl::Status Start(int* port);
  // Health reports SERVING (or NOT_SERVING) for "" and these services.
  void SetServing(const std::vector<std::string>& services, bool serving);
  // Answers every call, stops the transport. Idempotent.
  void Shutdown();
  PredictService& predict() { return predict_; }

 private:
  void Handle(seed_transport::ServerCall* call);
  void Forward(seed_transport::ServerCall* call);

  const ServingOptions options_;
  PredictService predict_;
  std::shared_ptr<seed_transport::Channel> forward_;
  std::mutex mu_;
  std::unique_ptr<seed_transport::Server> transport_;
  bool shut_down_ = false;
};

}  // namespace seed_rpc
