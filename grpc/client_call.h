// What the client ops share (TensorFlow side, no gRPC headers): their
// channel attributes, a call cancelled with the op's step, zeroed outputs.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "tensorflow/core/framework/op_kernel.h"
#include "transport.h"

namespace seed_rpc {

// The TLS and token attributes every client op declares: paths and a
// variable name, read at run time, so no secret lands in a graph.
#define SEED_RPC_CHANNEL_ATTRS                  \
  Attr("max_message_size: int = 0")             \
      .Attr("tls: bool = false")                \
      .Attr("ca_file: string = ''")             \
      .Attr("cert_file: string = ''")           \
      .Attr("key_file: string = ''")            \
      .Attr("token_file: string = ''")          \
      .Attr("token_env: string = ''")           \
      .Attr("server_name: string = ''")

// The cached channel to `address` with the op's SEED_RPC_CHANNEL_ATTRS.
absl::Status ChannelFromAttrs(tensorflow::OpKernelConstruction* c, const std::string& address,
                              std::shared_ptr<seed_transport::Channel>* channel);

using CallFinish = std::function<void(const seed_transport::Status& status, std::string response)>;

// Starts `path` on `channel`; the op's cancellation manager (step or eager
// context cancelled) cancels it. `finish` runs once, then `done`.
void StartCancellableCall(tensorflow::OpKernelContext* ctx, seed_transport::Channel* channel, const std::string& path,
                          std::string request, const seed_transport::CallOptions& options, const std::string& where,
                          CallFinish finish, tensorflow::AsyncOpKernel::DoneCallback done);

// A tensor of zeros ("" for strings).
tensorflow::Tensor ZeroTensor(tensorflow::DataType dtype, const tensorflow::TensorShape& shape);

// The status outputs of a *_with_status op: 0 the code (int32 scalar), 1 the message (string scalar).
void SetStatusOutputs(tensorflow::OpKernelContext* ctx, const absl::Status& status);

}  // namespace seed_rpc
