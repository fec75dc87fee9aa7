#include "serving_server.h"

#include "tensorflow/core/platform/logging.h"

namespace seed_rpc {

namespace {
// Forwarded calls (ModelService reloads load models) get this long at most.
constexpr int64_t kForwardTimeoutUs = 600LL * 1000 * 1000;
}  // namespace

absl::Status ServingServer::Start(int* port) {
  std::lock_guard<std::mutex> lock(mu_);
  if (transport_ != nullptr || shut_down_) return absl::FailedPreconditionError("server already started");
  std::string error;
  forward_ = seed_transport::GetChannel(options_.forward_address, std::max(options_.max_request_bytes,
                                                                           options_.max_response_bytes));
  if (forward_ == nullptr) return absl::InvalidArgumentError("cannot reach " + options_.forward_address);
  seed_transport::ServerOptions options;
  options.addresses = {options_.address};
  options.num_threads = options_.num_threads;
  options.max_message_size = options_.max_request_bytes;
  options.max_send_message_size = options_.max_response_bytes;
  options.health = true;
  options.log = [](const std::string& line) { LOG(WARNING) << "seed.serve: " << line; };
  transport_ = seed_transport::StartServer(
      options, [this](seed_transport::ServerCall* call) { Handle(call); }, &error);
  if (transport_ == nullptr) return absl::UnavailableError(error);
  *port = transport_->ports()[0];
  return absl::OkStatus();
}

void ServingServer::SetServing(const std::vector<std::string>& services, bool serving) {
  std::lock_guard<std::mutex> lock(mu_);
  if (transport_ != nullptr) transport_->SetServing(services, serving);
}

void ServingServer::Handle(seed_transport::ServerCall* call) {
  if (options_.cpp_predict && call->method().rfind(kPredictionService, 0) == 0) return predict_.Handle(call);
  Forward(call);
}

void ServingServer::Forward(seed_transport::ServerCall* call) {
  // The client may go away while the Python servicer works: cancel the forwarded call then.
  struct Slot {
    std::mutex mu;
    std::function<void()> cancel;
    bool finished = false, cancelled = false;
  };
  auto slot = std::make_shared<Slot>();
  call->OnCancel([slot] {
    std::lock_guard<std::mutex> lock(slot->mu);
    slot->cancelled = true;
    if (!slot->finished && slot->cancel) slot->cancel();
  });
  seed_transport::CallOptions options;
  options.timeout_us = kForwardTimeoutUs;
  options.stream = false;
  auto cancel = forward_->Call(call->method(), call->TakeRequest(), options,
                               [call, slot](const seed_transport::Status& s, std::string body) {
                                 {
                                   std::lock_guard<std::mutex> lock(slot->mu);
                                   slot->finished = true;
                                   slot->cancel = nullptr;
                                 }
                                 call->Respond(std::move(body), s);
                               });
  std::lock_guard<std::mutex> lock(slot->mu);
  if (slot->finished) return;
  slot->cancel = std::move(cancel);
  if (slot->cancelled) slot->cancel();
}

void ServingServer::Shutdown() {
  std::unique_ptr<seed_transport::Server> transport;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (shut_down_) return;
    shut_down_ = true;
    transport = std::move(transport_);
  }
  predict_.Shutdown();
  if (transport != nullptr) transport->Shutdown(/*grace_ms=*/100);
}

}  // namespace seed_rpc
