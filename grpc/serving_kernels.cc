// seed.serve's ops: create the C++ gRPC front (serving_server.h), publish and
// unpublish model versions' signature functions, health, stats.
#include "tensorflow/core/framework/common_shape_fns.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "op_attrs.h"
#include "registry.h"
#include "serving_server.h"
#include "wire.h"

namespace seed_rpc {

using namespace tensorflow;  // NOLINT

REGISTER_OP("SeedServingCreate")
    .Output("server_id: int64")
    .Attr("address: string")
    .Attr("forward_address: string")
    .Attr("num_threads: int = 0")
    .Attr("max_request_bytes: int = 0")
    .Attr("max_response_bytes: int = 0")
    .Attr("cpp_predict: bool = true")
    .Attr("enable_batching: bool = false")
    .Attr("max_batch_size: int = 32")
    .Attr("batch_timeout_micros: int = 1000")
    .SEED_ATTRS_DIGEST
    .SetIsStateful()
    .SetShapeFn(shape_inference::ScalarShape);

REGISTER_OP("SeedServingStage")
    .Input("server_id: int64")
    .Input("captures: Tcaptures")
    .Attr("Tcaptures: list(type) >= 0")
    .Attr("fn: func")
    .Attr("model: string")
    .Attr("version: int")
    .Attr("signature: string")
    .Attr("input_names: list(string) >= 0")
    .Attr("input_dtypes: list(type) >= 0")
    .Attr("input_shapes: list(shape) >= 0")
    .Attr("output_names: list(string) >= 0")
    .Attr("output_dtypes: list(type) >= 0")
    .SEED_ATTRS_DIGEST
    .SetIsStateful()
    .SetShapeFn(shape_inference::NoOutputs);

REGISTER_OP("SeedServingPublish")
    .Input("server_id: int64")
    .Input("signature_def_map: string")
    .Attr("model: string")
    .Attr("version: int")
    .SEED_ATTRS_DIGEST
    .SetIsStateful()
    .SetShapeFn(shape_inference::NoOutputs);

REGISTER_OP("SeedServingUnpublish")
    .Input("server_id: int64")
    .Output("drained: bool")
    .Attr("model: string")
    .Attr("version: int")
    .Attr("timeout_ms: int = 30000")
    .SEED_ATTRS_DIGEST
    .SetIsStateful()
    .SetShapeFn(shape_inference::ScalarShape);

REGISTER_OP("SeedServingSetModels")
    .Input("server_id: int64")
    .Input("models: string")
    .Input("label_models: string")
    .Input("labels: string")
    .Input("label_versions: int64")
    .SetIsStateful()
    .SetShapeFn(shape_inference::NoOutputs);

REGISTER_OP("SeedServingStart")
    .Input("server_id: int64")
    .Output("port: int32")
    .SetIsStateful()
    .SetShapeFn(shape_inference::ScalarShape);

REGISTER_OP("SeedServingSetServing")
    .Input("server_id: int64")
    .Input("services: string")
    .Input("serving: bool")
    .SetIsStateful()
    .SetShapeFn(shape_inference::NoOutputs);

REGISTER_OP("SeedServingShutdown")
    .Input("server_id: int64")
    .SetIsStateful()
    .SetShapeFn(shape_inference::NoOutputs);

REGISTER_OP("SeedServingStats")
    .Input("server_id: int64")
    .Output("stats_json: string")
    .SetIsStateful()
    .SetShapeFn(shape_inference::ScalarShape);

namespace {

using Servers = Registry<ServingServer>;

absl::Status FindServer(OpKernelContext* ctx, std::shared_ptr<ServingServer>* out) {
  return Servers::Get().Find(ctx->input(0).scalar<int64_t>()(), out);
}

}  // namespace

class ServingCreateOp : public OpKernel {
 public:
  explicit ServingCreateOp(OpKernelConstruction* c) : OpKernel(c) {
    OP_REQUIRES_OK(c, c->GetAttr("address", &o_.address));
    OP_REQUIRES_OK(c, c->GetAttr("forward_address", &o_.forward_address));
    OP_REQUIRES_OK(c, c->GetAttr("num_threads", &o_.num_threads));
    OP_REQUIRES_OK(c, c->GetAttr("max_request_bytes", &o_.max_request_bytes));
    OP_REQUIRES_OK(c, c->GetAttr("max_response_bytes", &o_.max_response_bytes));
    OP_REQUIRES_OK(c, c->GetAttr("cpp_predict", &o_.cpp_predict));
    OP_REQUIRES_OK(c, c->GetAttr("enable_batching", &o_.batching.enabled));
    OP_REQUIRES_OK(c, c->GetAttr("max_batch_size", &o_.batching.max_batch_size));
    OP_REQUIRES_OK(c, c->GetAttr("batch_timeout_micros", &o_.batching.timeout_us));
  }
  void Compute(OpKernelContext* ctx) override {
    OP_REQUIRES(ctx, o_.batching.max_batch_size >= 1 && o_.batching.timeout_us >= 0,
                absl::InvalidArgumentError("max_batch_size must be >= 1 and batch_timeout_micros >= 0"));
    Tensor* out;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, {}, &out));
    out->scalar<int64_t>()() = Servers::Get().Add(std::make_shared<ServingServer>(o_));
  }

 private:
  ServingOptions o_;
};

class ServingStageOp : public OpKernel {
 public:
  explicit ServingStageOp(OpKernelConstruction* c) : OpKernel(c) {
    OP_REQUIRES_OK(c, c->GetAttr("fn", &fn_));
    OP_REQUIRES_OK(c, c->GetAttr("model", &model_));
    OP_REQUIRES_OK(c, c->GetAttr("version", &version_));
    OP_REQUIRES_OK(c, c->GetAttr("signature", &sig_.name));
    OP_REQUIRES_OK(c, c->GetAttr("input_names", &sig_.input_names));
    OP_REQUIRES_OK(c, c->GetAttr("input_dtypes", &sig_.input_dtypes));
    std::vector<TensorShapeProto> shapes;
    OP_REQUIRES_OK(c, c->GetAttr("input_shapes", &shapes));
    for (const auto& s : shapes) sig_.input_shapes.emplace_back(s);
    OP_REQUIRES_OK(c, c->GetAttr("output_names", &sig_.output_names));
    OP_REQUIRES_OK(c, c->GetAttr("output_dtypes", &sig_.output_dtypes));
    OP_REQUIRES(c, sig_.input_names.size() == sig_.input_dtypes.size() &&
                       sig_.input_shapes.size() == sig_.input_dtypes.size() &&
                       sig_.output_names.size() == sig_.output_dtypes.size(),
                absl::InvalidArgumentError("inconsistent signature attributes"));
    sig_.batchable = !sig_.input_shapes.empty();
    for (const auto& s : sig_.input_shapes) {
      if (s.unknown_rank() || s.dims() == 0 || s.dim_size(0) >= 0) sig_.batchable = false;
    }
  }
  void Compute(OpKernelContext* ctx) override {
    std::shared_ptr<ServingServer> server;
    OP_REQUIRES_OK(ctx, FindServer(ctx, &server));
    OpInputList captures;
    OP_REQUIRES_OK(ctx, ctx->input_list("captures", &captures));
    auto sig = std::make_unique<ServingSignature>(sig_);
    OP_REQUIRES_OK(ctx, InstantiateBound(ctx, fn_, captures, sig->input_dtypes.size(), sig->output_dtypes.size(),
                                         &sig->fn));
    server->predict().Stage(model_, version_, std::move(sig));
  }

 private:
  NameAttrList fn_;
  std::string model_;
  int64_t version_;
  ServingSignature sig_;
};

class ServingPublishOp : public OpKernel {
 public:
  explicit ServingPublishOp(OpKernelConstruction* c) : OpKernel(c) {
    OP_REQUIRES_OK(c, c->GetAttr("model", &model_));
    OP_REQUIRES_OK(c, c->GetAttr("version", &version_));
  }
  void Compute(OpKernelContext* ctx) override {
    std::shared_ptr<ServingServer> server;
    OP_REQUIRES_OK(ctx, FindServer(ctx, &server));
    OP_REQUIRES_OK(ctx, server->predict().Publish(model_, version_, std::string(ctx->input(1).scalar<tstring>()())));
  }

 private:
  std::string model_;
  int64_t version_;
};

class ServingUnpublishOp : public OpKernel {
 public:
  explicit ServingUnpublishOp(OpKernelConstruction* c) : OpKernel(c) {
    OP_REQUIRES_OK(c, c->GetAttr("model", &model_));
    OP_REQUIRES_OK(c, c->GetAttr("version", &version_));
    OP_REQUIRES_OK(c, c->GetAttr("timeout_ms", &timeout_ms_));
  }
  void Compute(OpKernelContext* ctx) override {
    std::shared_ptr<ServingServer> server;
    OP_REQUIRES_OK(ctx, FindServer(ctx, &server));
    Tensor* out;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, {}, &out));
    out->scalar<bool>()() = server->predict().Unpublish(model_, version_, timeout_ms_);
  }

 private:
  std::string model_;
  int64_t version_, timeout_ms_;
};

class ServingSetModelsOp : public OpKernel {
 public:
  using OpKernel::OpKernel;
  void Compute(OpKernelContext* ctx) override {
    std::shared_ptr<ServingServer> server;
    OP_REQUIRES_OK(ctx, FindServer(ctx, &server));
    auto models = ctx->input(1).flat<tstring>();
    auto label_models = ctx->input(2).flat<tstring>();
    auto labels = ctx->input(3).flat<tstring>();
    auto versions = ctx->input(4).flat<int64_t>();
    OP_REQUIRES(ctx, label_models.size() == labels.size() && labels.size() == versions.size(),
                absl::InvalidArgumentError("label_models, labels and label_versions differ in length"));
    std::map<std::string, std::map<std::string, int64_t>> by_model;
    for (int64_t i = 0; i < models.size(); ++i) by_model[std::string(models(i))];
    for (int64_t i = 0; i < labels.size(); ++i) by_model[std::string(label_models(i))][std::string(labels(i))] = versions(i);
    server->predict().SetModels(by_model);
  }
};

class ServingStartOp : public OpKernel {
 public:
  using OpKernel::OpKernel;
  void Compute(OpKernelContext* ctx) override {
    std::shared_ptr<ServingServer> server;
    OP_REQUIRES_OK(ctx, FindServer(ctx, &server));
    int port = 0;
    OP_REQUIRES_OK(ctx, server->Start(&port));
    Tensor* out;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, {}, &out));
    out->scalar<int32_t>()() = port;
  }
};

class ServingSetServingOp : public OpKernel {
 public:
  using OpKernel::OpKernel;
  void Compute(OpKernelContext* ctx) override {
    std::shared_ptr<ServingServer> server;
    OP_REQUIRES_OK(ctx, FindServer(ctx, &server));
    std::vector<std::string> services;
    auto f = ctx->input(1).flat<tstring>();
    for (int64_t i = 0; i < f.size(); ++i) services.emplace_back(f(i));
    server->SetServing(services, ctx->input(2).scalar<bool>()());
  }
};

class ServingShutdownOp : public OpKernel {
 public:
  using OpKernel::OpKernel;
  void Compute(OpKernelContext* ctx) override {
    std::shared_ptr<ServingServer> server = Servers::Get().Remove(ctx->input(0).scalar<int64_t>()());
    if (server) server->Shutdown();
  }
};

class ServingStatsOp : public OpKernel {
 public:
  using OpKernel::OpKernel;
  void Compute(OpKernelContext* ctx) override {
    std::shared_ptr<ServingServer> server;
    OP_REQUIRES_OK(ctx, FindServer(ctx, &server));
    Tensor* out;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, {}, &out));
    out->scalar<tstring>()() = server->predict().StatsJson();
  }
};

REGISTER_KERNEL_BUILDER(Name("SeedServingCreate").Device(DEVICE_CPU), ServingCreateOp);
REGISTER_KERNEL_BUILDER(Name("SeedServingStage").Device(DEVICE_CPU), ServingStageOp);
REGISTER_KERNEL_BUILDER(Name("SeedServingPublish").Device(DEVICE_CPU), ServingPublishOp);
REGISTER_KERNEL_BUILDER(Name("SeedServingUnpublish").Device(DEVICE_CPU), ServingUnpublishOp);
REGISTER_KERNEL_BUILDER(Name("SeedServingSetModels").Device(DEVICE_CPU), ServingSetModelsOp);
REGISTER_KERNEL_BUILDER(Name("SeedServingStart").Device(DEVICE_CPU), ServingStartOp);
REGISTER_KERNEL_BUILDER(Name("SeedServingSetServing").Device(DEVICE_CPU), ServingSetServingOp);
REGISTER_KERNEL_BUILDER(Name("SeedServingShutdown").Device(DEVICE_CPU), ServingShutdownOp);
REGISTER_KERNEL_BUILDER(Name("SeedServingStats").Device(DEVICE_CPU), ServingStatsOp);

}  // namespace seed_rpc
