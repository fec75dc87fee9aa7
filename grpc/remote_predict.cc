// Seed 004's RemotePredict op: a graph calls Predict on any TF Serving
// PredictionService (ours or tensorflow_model_server), asynchronously, with a
// deadline. With fail_op_on_rpc_error=false a failed call yields its gRPC code
// and message and zero scalars instead of an error.
#include "absl/strings/str_cat.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "client_call.h"
#include "op_attrs.h"
#include "predict_proto.h"

namespace seed_rpc {

using namespace tensorflow;  // NOLINT

REGISTER_OP("SeedRemotePredict")
    .Input("input_tensor_aliases: string")
    .Input("input_tensors: T")
    .Input("output_tensor_aliases: string")
    .Output("status_code: int32")
    .Output("status_error_message: string")
    .Output("output_tensors: output_types")
    .Attr("T: list(type) >= 0")
    .Attr("output_types: list(type) >= 0")
    .Attr("target_address: string")
    .Attr("model_name: string")
    .Attr("model_version: int = -1")
    .Attr("signature_name: string = 'serving_default'")
    .Attr("max_rpc_deadline_millis: int = 30000")
    .Attr("fail_op_on_rpc_error: bool = true")
    .SEED_RPC_CHANNEL_ATTRS
    .SEED_ATTRS_DIGEST
    .SetIsStateful()
    .SetShapeFn([](shape_inference::InferenceContext* c) {
      c->set_output(0, c->Scalar());
      c->set_output(1, c->Scalar());
      for (int i = 2; i < c->num_outputs(); ++i) c->set_output(i, c->UnknownShape());
      return absl::OkStatus();
    });

class RemotePredictOp : public AsyncOpKernel {
 public:
  explicit RemotePredictOp(OpKernelConstruction* c) : AsyncOpKernel(c) {
    std::string address;
    OP_REQUIRES_OK(c, c->GetAttr("target_address", &address));
    OP_REQUIRES_OK(c, c->GetAttr("model_name", &model_));
    OP_REQUIRES_OK(c, c->GetAttr("model_version", &version_));
    OP_REQUIRES_OK(c, c->GetAttr("signature_name", &signature_));
    OP_REQUIRES_OK(c, c->GetAttr("max_rpc_deadline_millis", &deadline_ms_));
    OP_REQUIRES_OK(c, c->GetAttr("fail_op_on_rpc_error", &fail_on_error_));
    OP_REQUIRES_OK(c, c->GetAttr("output_types", &output_types_));
    where_ = absl::StrCat(" [Predict of model '", model_, "' at ", address, "]");
    absl::Status s = ChannelFromAttrs(c, address, &channel_);
    OP_REQUIRES(c, s.ok(), absl::Status(s.code(), std::string(s.message()) + where_));
  }

  void ComputeAsync(OpKernelContext* ctx, DoneCallback done) override {
    OpInputList inputs;
    OP_REQUIRES_OK_ASYNC(ctx, ctx->input_list("input_tensors", &inputs), done);
    const Tensor& in_aliases = ctx->input(0);
    const Tensor& out_aliases = ctx->input(ctx->num_inputs() - 1);
    OP_REQUIRES_ASYNC(ctx, in_aliases.dims() == 1 && in_aliases.NumElements() == inputs.size(),
                      absl::InvalidArgumentError(absl::StrCat("input_tensor_aliases must be a vector of ",
                                                              inputs.size(), " names, one per input tensor")),
                      done);
    OP_REQUIRES_ASYNC(ctx, out_aliases.dims() == 1 && out_aliases.NumElements() == output_types_.size(),
                      absl::InvalidArgumentError(absl::StrCat("output_tensor_aliases must be a vector of ",
                                                              output_types_.size(), " names, one per output type")),
                      done);
    std::vector<std::string> aliases, outputs;
    std::vector<Tensor> tensors;
    for (int i = 0; i < inputs.size(); ++i) {
      aliases.emplace_back(in_aliases.flat<tstring>()(i));
      tensors.push_back(inputs[i]);
    }
    for (int64_t i = 0; i < out_aliases.NumElements(); ++i) outputs.emplace_back(out_aliases.flat<tstring>()(i));
    std::string request = SerializePredictRequest(model_, version_, signature_, aliases, tensors, outputs);
    seed_transport::CallOptions options;
    options.timeout_us = deadline_ms_ > 0 ? deadline_ms_ * 1000 : -1;
    options.stream = false;  // a standard unary Predict: any PredictionService answers it
    StartCancellableCall(
        ctx, channel_.get(), "/tensorflow.serving.PredictionService/Predict", std::move(request), options, where_,
        [this, ctx, outputs](const seed_transport::Status& s, std::string response) {
          Finish(ctx, outputs, s, response);
        },
        done);
  }

 private:
  void Finish(OpKernelContext* ctx, const std::vector<std::string>& aliases, const seed_transport::Status& s,
              const std::string& response) {
    absl::Status status(static_cast<absl::StatusCode>(s.code), s.message);
    std::vector<Tensor> outputs;
    if (status.ok()) status = ReadOutputs(aliases, response, &outputs);
    if (!status.ok() && fail_on_error_) {
      ctx->SetStatus(absl::Status(status.code(), std::string(status.message()) + where_));
      return;
    }
    SetStatusOutputs(ctx, status);
    for (size_t i = 0; i < output_types_.size(); ++i) {
      ctx->set_output(2 + i, status.ok() ? outputs[i] : ZeroTensor(output_types_[i], {}));
    }
  }

  absl::Status ReadOutputs(const std::vector<std::string>& aliases, const std::string& response,
                           std::vector<Tensor>* outputs) {
    std::vector<std::pair<std::string, std::string_view>> got;
    TF_RETURN_IF_ERROR(ParsePredictResponse(response, &got));
    for (size_t i = 0; i < aliases.size(); ++i) {
      const std::string_view* bytes = nullptr;
      for (const auto& [name, b] : got) {
        if (name == aliases[i]) bytes = &b;
      }
      if (bytes == nullptr) {
        return absl::InternalError(absl::StrCat("the response has no output '", aliases[i], "'"));
      }
      Tensor t;
      TF_RETURN_IF_ERROR(TensorFromProtoBytes(aliases[i], *bytes, &t));
      if (t.dtype() != output_types_[i]) {
        return absl::InvalidArgumentError(absl::StrCat("output '", aliases[i], "' has dtype ", DtypeName(t.dtype()),
                                                       ", expected ", DtypeName(output_types_[i])));
      }
      outputs->push_back(std::move(t));
    }
    return absl::OkStatus();
  }

  std::string model_, signature_, where_;
  int64_t version_, deadline_ms_;
  bool fail_on_error_;
  DataTypeVector output_types_;
  std::shared_ptr<seed_transport::Channel> channel_;
};

REGISTER_KERNEL_BUILDER(Name("SeedRemotePredict").Device(DEVICE_CPU), RemotePredictOp);

}  // namespace seed_rpc
