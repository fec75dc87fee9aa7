#include "client_call.h"

#include <cstring>
#include <mutex>

#include "tensorflow/core/framework/cancellation.h"

namespace seed_rpc {

using namespace tensorflow;  // NOLINT

absl::Status ChannelFromAttrs(OpKernelConstruction* c, const std::string& address,
                              std::shared_ptr<seed_transport::Channel>* channel) {
  int64_t max_message_size;
  seed_transport::ChannelSecurity sec;
  TF_RETURN_IF_ERROR(c->GetAttr("max_message_size", &max_message_size));
  TF_RETURN_IF_ERROR(c->GetAttr("tls", &sec.tls));
  TF_RETURN_IF_ERROR(c->GetAttr("ca_file", &sec.ca_file));
  TF_RETURN_IF_ERROR(c->GetAttr("cert_file", &sec.cert_file));
  TF_RETURN_IF_ERROR(c->GetAttr("key_file", &sec.key_file));
  TF_RETURN_IF_ERROR(c->GetAttr("token_file", &sec.token_file));
  TF_RETURN_IF_ERROR(c->GetAttr("token_env", &sec.token_env));
  TF_RETURN_IF_ERROR(c->GetAttr("server_name", &sec.server_name));
  if (address.empty()) return absl::InvalidArgumentError("empty server address");
  std::string error;
  *channel = seed_transport::GetChannel(address, max_message_size, sec, &error);
  if (*channel == nullptr) return absl::InvalidArgumentError(error);
  return absl::OkStatus();
}

void StartCancellableCall(OpKernelContext* ctx, seed_transport::Channel* channel, const std::string& path,
                          std::string request, const seed_transport::CallOptions& options, const std::string& where,
                          CallFinish finish, AsyncOpKernel::DoneCallback done) {
  // The slot covers a cancel that arrives before the call starts.
  struct CancelSlot {
    std::mutex mu;
    std::function<void()> cancel;
    bool cancelled = false;
  };
  auto slot = std::make_shared<CancelSlot>();
  CancellationManager* cm = ctx->cancellation_manager();
  CancellationToken token = CancellationManager::kInvalidToken;
  if (cm != nullptr) {
    token = cm->get_cancellation_token();
    bool registered = cm->RegisterCallback(token, [slot] {
      std::lock_guard<std::mutex> lock(slot->mu);
      slot->cancelled = true;
      if (slot->cancel) slot->cancel();
    });
    if (!registered) {
      ctx->SetStatus(absl::CancelledError("call cancelled before it started" + where));
      done();
      return;
    }
  }
  auto cancel = channel->Call(path, std::move(request), options,
                              [finish = std::move(finish), done, cm, token](const seed_transport::Status& s,
                                                                            std::string response) {
                                if (cm != nullptr) cm->DeregisterCallback(token);
                                finish(s, std::move(response));
                                done();
                              });
  std::lock_guard<std::mutex> lock(slot->mu);
  slot->cancel = std::move(cancel);
  if (slot->cancelled) slot->cancel();
}

void SetStatusOutputs(OpKernelContext* ctx, const absl::Status& status) {
  Tensor code(DT_INT32, {}), message(DT_STRING, {});
  code.scalar<int32_t>()() = static_cast<int32_t>(status.code());
  message.scalar<tstring>()() = std::string(status.message());
  ctx->set_output(0, code);
  ctx->set_output(1, message);
}

Tensor ZeroTensor(DataType dtype, const TensorShape& shape) {
  Tensor t(dtype, shape);
  if (dtype != DT_STRING && t.TotalBytes() > 0) std::memset(const_cast<char*>(t.tensor_data().data()), 0, t.TotalBytes());
  return t;
}

}  // namespace seed_rpc
