// Client side of the tensor RPC: an asynchronous op that sends its inputs to
// a bound function on a server and returns its outputs. Works eagerly and in
// graphs (and in SavedModels: the address is an attribute, not a resource).
#include <memory>
#include <mutex>

#include "tensorflow/core/framework/cancellation.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "client_call.h"
#include "op_attrs.h"
#include "transport.h"
#include "wire.h"

namespace seed_rpc {

using namespace tensorflow;  // NOLINT

namespace {

absl::Status OutputShapesFn(shape_inference::InferenceContext* c, int first) {
  std::vector<PartialTensorShape> shapes;
  DataTypeVector tout;
  TF_RETURN_IF_ERROR(c->GetAttr("Tout", &tout));
  if (c->GetAttr("output_shapes", &shapes).ok() && shapes.size() == tout.size()) {
    for (size_t i = 0; i < shapes.size(); ++i) {
      shape_inference::ShapeHandle h;
      TF_RETURN_IF_ERROR(c->MakeShapeFromPartialTensorShape(shapes[i], &h));
      c->set_output(first + i, h);
    }
  } else {
    for (size_t i = 0; i < tout.size(); ++i) c->set_output(first + i, c->UnknownShape());
  }
  return absl::OkStatus();
}

}  // namespace

#define SEED_RPC_CALL_ATTRS                                  \
  Input("inputs: Tin")                                       \
      .Attr("Tin: list(type) >= 0")                          \
      .Attr("Tout: list(type) >= 0")                         \
      .Attr("output_shapes: list(shape) >= 0")               \
      .Attr("address: string")                               \
      .Attr("method: string")                                \
      .Attr("timeout_ms: int = -1")                          \
      .Attr("wait_for_ready: bool = false")                  \
      /* -1: the process default (SEED_RPC_STREAMS), 0: a   */ \
      /* unary call, 1: on the channel's long-lived streams */ \
      .Attr("stream: int = -1")                              \
      .SEED_RPC_CHANNEL_ATTRS                                \
      .SEED_ATTRS_DIGEST                                     \
      .SetIsStateful()

REGISTER_OP("SeedRpcCall")
    .SEED_RPC_CALL_ATTRS
    .Output("outputs: Tout")
    .SetShapeFn([](shape_inference::InferenceContext* c) { return OutputShapesFn(c, 0); });

REGISTER_OP("SeedRpcCallWithStatus")
    .SEED_RPC_CALL_ATTRS
    .Output("code: int32")
    .Output("message: string")
    .Output("outputs: Tout")
    .SetShapeFn([](shape_inference::InferenceContext* c) {
      c->set_output(0, c->Scalar());
      c->set_output(1, c->Scalar());
      return OutputShapesFn(c, 2);
    });

template <bool kWithStatus>
class CallOp : public AsyncOpKernel {
 public:
  explicit CallOp(OpKernelConstruction* c) : AsyncOpKernel(c) {
    std::string address, method;
    OP_REQUIRES_OK(c, c->GetAttr("address", &address));
    OP_REQUIRES_OK(c, c->GetAttr("method", &method));
    OP_REQUIRES_OK(c, c->GetAttr("Tout", &tout_));
    OP_REQUIRES_OK(c, c->GetAttr("output_shapes", &output_shapes_));
    OP_REQUIRES_OK(c, c->GetAttr("timeout_ms", &timeout_ms_));
    OP_REQUIRES_OK(c, c->GetAttr("wait_for_ready", &wait_for_ready_));
    int64_t stream;
    OP_REQUIRES_OK(c, c->GetAttr("stream", &stream));
    stream_ = stream < 0 ? seed_transport::StreamsByDefault() : stream == 1;
    path_ = "/seed/" + method;
    where_ = " [method '" + method + "' at " + address + "]";
    absl::Status s = ChannelFromAttrs(c, address, &channel_);
    OP_REQUIRES(c, s.ok(), absl::Status(s.code(), std::string(s.message()) + where_));
  }

  void ComputeAsync(OpKernelContext* ctx, DoneCallback done) override {
    std::vector<Tensor> inputs;
    for (int i = 0; i < ctx->num_inputs(); ++i) {
      OP_REQUIRES_ASYNC(ctx, IsSupportedDtype(ctx->input(i).dtype()),
                        absl::InvalidArgumentError("input " + std::to_string(i) + " has dtype " +
                                                   DataTypeString(ctx->input(i).dtype()) +
                                                   " which cannot be sent over RPC"),
                        done);
      inputs.push_back(ctx->input(i));
    }
    std::string body;
    SerializeTensors(inputs, &body);
    inputs.clear();

    seed_transport::CallOptions options;
    options.timeout_us = timeout_ms_ >= 0 ? timeout_ms_ * 1000 : -1;
    options.wait_for_ready = wait_for_ready_;
    options.stream = stream_;

    StartCancellableCall(
        ctx, channel_.get(), path_, std::move(body), options, where_,
        [this, ctx](const seed_transport::Status& s, std::string response) { Finish(ctx, s, response); }, done);
  }

 private:
  void Finish(OpKernelContext* ctx, const seed_transport::Status& s, const std::string& response) {
    absl::Status status;
    std::vector<Tensor> outputs;
    if (!s.ok()) {
      status = absl::Status(static_cast<absl::StatusCode>(s.code), s.message + where_);
    } else {
      status = ParseTensors(response, &outputs);
      if (status.ok() && outputs.size() != tout_.size()) {
        status = absl::InternalError("server returned " + std::to_string(outputs.size()) + " outputs, expected " +
                                     std::to_string(tout_.size()) + where_);
      }
      for (size_t i = 0; status.ok() && i < outputs.size(); ++i) {
        if (outputs[i].dtype() != tout_[i]) {
          status = absl::InternalError("server returned output " + std::to_string(i) + " with dtype " +
                                       DataTypeString(outputs[i].dtype()) + ", expected " +
                                       DataTypeString(tout_[i]) + where_);
        }
      }
    }
    if (!kWithStatus) {
      if (!status.ok()) {
        ctx->SetStatus(status);
        return;
      }
      for (size_t i = 0; i < outputs.size(); ++i) ctx->set_output(i, outputs[i]);
      return;
    }
    SetStatusOutputs(ctx, status);
    if (status.ok()) {
      for (size_t i = 0; i < outputs.size(); ++i) ctx->set_output(2 + i, outputs[i]);
      return;
    }
    // Failed call: outputs of the declared shape (unknown dims as 0), zeroed.
    for (size_t i = 0; i < tout_.size(); ++i) {
      TensorShape shape;
      if (i < output_shapes_.size() && output_shapes_[i].dims() >= 0) {
        for (int64_t d : output_shapes_[i].dim_sizes()) shape.AddDim(d < 0 ? 0 : d);
      }
      ctx->set_output(2 + i, ZeroTensor(tout_[i], shape));
    }
  }

  DataTypeVector tout_;
  std::vector<PartialTensorShape> output_shapes_;
  int64_t timeout_ms_;
  bool wait_for_ready_;
  bool stream_;
  std::string path_, where_;
  std::shared_ptr<seed_transport::Channel> channel_;
};

REGISTER_KERNEL_BUILDER(Name("SeedRpcCall").Device(DEVICE_CPU), CallOp<false>);
REGISTER_KERNEL_BUILDER(Name("SeedRpcCallWithStatus").Device(DEVICE_CPU), CallOp<true>);

}  // namespace seed_rpc
