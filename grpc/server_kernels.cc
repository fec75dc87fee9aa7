// The server's TensorFlow ops: create a server, bind tf.functions to it,
// start, stop and read its stats. The server itself is in server.cc.
#include "tensorflow/core/framework/common_shape_fns.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/resource_handle.h"
#include "op_attrs.h"
#include "server.h"
#include "transport.h"
#include "wire.h"

namespace seed_rpc {

using namespace tensorflow;  // NOLINT: kernel code reads better unqualified.

REGISTER_OP("SeedRpcServerCreate")
    .Output("server_id: int64")
    .Attr("addresses: list(string)")
    .Attr("num_threads: int = 0")
    .Attr("max_message_size: int = 0")
    // Paths and a variable name only: the files are read when the server
    // starts, so no certificate key or token is ever stored in a graph.
    .Attr("cert_file: string = ''")
    .Attr("key_file: string = ''")
    .Attr("client_ca_file: string = ''")
    .Attr("token_file: string = ''")
    .Attr("token_env: string = ''")
    .SEED_ATTRS_DIGEST
    .SetIsStateful()
    .SetShapeFn(shape_inference::ScalarShape);

REGISTER_OP("SeedRpcServerBind")
    .Input("server_id: int64")
    .Input("captures: Tcaptures")
    .Attr("Tcaptures: list(type) >= 0")
    .Attr("fn: func")
    .Attr("method: string")
    .Attr("input_dtypes: list(type) >= 0")
    .Attr("input_shapes: list(shape) >= 0")
    .Attr("input_names: list(string) >= 0")
    .Attr("output_dtypes: list(type) >= 0")
    .Attr("output_shapes: list(shape) >= 0")
    .Attr("batch_size: int = 0")
    .Attr("flush_timeout_us: int = -1")
    .Attr("pad_mask: bool = false")
    .Attr("signature: string = ''")
    .Attr("append: bool = false")
    .SEED_ATTRS_DIGEST
    .SetIsStateful()
    .SetShapeFn(shape_inference::NoOutputs);

REGISTER_OP("SeedRpcServerStart")
    .Input("server_id: int64")
    .Output("ports: int32")
    .SetIsStateful()
    .SetShapeFn(shape_inference::UnknownShape);

REGISTER_OP("SeedRpcServerShutdown")
    .Input("server_id: int64")
    .SetIsStateful()
    .SetShapeFn(shape_inference::NoOutputs);

REGISTER_OP("SeedRpcServerComplete")
    .Input("server_id: int64")
    .Input("message: string")
    .SetIsStateful()
    .SetShapeFn(shape_inference::NoOutputs);

REGISTER_OP("SeedRpcServerStats")
    .Input("server_id: int64")
    .Output("stats_json: string")
    .SetIsStateful()
    .SetShapeFn(shape_inference::ScalarShape);

REGISTER_OP("SeedRpcGrpcVersion")
    .Output("version: string")
    .SetShapeFn(shape_inference::ScalarShape);

class ServerCreateOp : public OpKernel {
 public:
  explicit ServerCreateOp(OpKernelConstruction* c) : OpKernel(c) {
    OP_REQUIRES_OK(c, c->GetAttr("addresses", &addresses_));
    OP_REQUIRES_OK(c, c->GetAttr("num_threads", &num_threads_));
    OP_REQUIRES_OK(c, c->GetAttr("max_message_size", &max_message_size_));
    OP_REQUIRES_OK(c, c->GetAttr("cert_file", &security_.cert_file));
    OP_REQUIRES_OK(c, c->GetAttr("key_file", &security_.key_file));
    OP_REQUIRES_OK(c, c->GetAttr("client_ca_file", &security_.client_ca_file));
    OP_REQUIRES_OK(c, c->GetAttr("token_file", &security_.token_file));
    OP_REQUIRES_OK(c, c->GetAttr("token_env", &security_.token_env));
  }
  void Compute(OpKernelContext* ctx) override {
    OP_REQUIRES(ctx, !addresses_.empty(), absl::InvalidArgumentError("a server needs at least one address"));
    for (const std::string& a : addresses_) {
      bool is_unix = a.rfind("unix:", 0) == 0;
      OP_REQUIRES(ctx, is_unix ? a.size() > 5 : a.rfind(':') != std::string::npos && a.rfind(':') + 1 < a.size(),
                  absl::InvalidArgumentError("invalid address '" + a +
                                             "': expected 'unix:/path' or 'host:port'"));
    }
    Tensor* out;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, {}, &out));
    out->scalar<int64_t>()() = Registry<RpcServer>::Get().Add(
        std::make_shared<RpcServer>(addresses_, num_threads_, max_message_size_, security_));
  }

 private:
  std::vector<std::string> addresses_;
  int num_threads_;
  int64_t max_message_size_;
  seed_transport::ServerSecurity security_;
};

class ServerBindOp : public OpKernel {
 public:
  explicit ServerBindOp(OpKernelConstruction* c) : OpKernel(c) {
    OP_REQUIRES_OK(c, c->GetAttr("fn", &fn_));
    OP_REQUIRES_OK(c, c->GetAttr("method", &method_));
    OP_REQUIRES_OK(c, c->GetAttr("input_dtypes", &input_dtypes_));
    OP_REQUIRES_OK(c, c->GetAttr("input_shapes", &input_shapes_));
    OP_REQUIRES_OK(c, c->GetAttr("input_names", &input_names_));
    OP_REQUIRES_OK(c, c->GetAttr("output_dtypes", &output_dtypes_));
    OP_REQUIRES_OK(c, c->GetAttr("output_shapes", &output_shapes_));
    OP_REQUIRES_OK(c, c->GetAttr("batch_size", &batch_size_));
    OP_REQUIRES_OK(c, c->GetAttr("flush_timeout_us", &flush_timeout_us_));
    OP_REQUIRES_OK(c, c->GetAttr("pad_mask", &pad_mask_));
    OP_REQUIRES_OK(c, c->GetAttr("signature", &signature_));
    OP_REQUIRES_OK(c, c->GetAttr("append", &append_));
  }

  void Compute(OpKernelContext* ctx) override {
    std::shared_ptr<RpcServer> server;
    OP_REQUIRES_OK(ctx, Registry<RpcServer>::Get().Find(ctx->input(0).scalar<int64_t>()(), &server));
    OP_REQUIRES(ctx, input_shapes_.size() == input_dtypes_.size() && input_names_.size() == input_dtypes_.size() &&
                         output_shapes_.size() == output_dtypes_.size(),
                absl::InvalidArgumentError("inconsistent signature attributes"));
    for (DataType d : input_dtypes_) {
      OP_REQUIRES(ctx, IsSupportedDtype(d),
                  absl::InvalidArgumentError("input dtype " + DataTypeString(d) + " cannot be sent over RPC"));
    }
    OpInputList captures;
    OP_REQUIRES_OK(ctx, ctx->input_list("captures", &captures));
    BoundFunction bound;
    OP_REQUIRES_OK(ctx, InstantiateBound(ctx, fn_, captures, input_dtypes_.size(), output_dtypes_.size(), &bound));

    auto m = std::make_unique<Method>();
    m->name = method_;
    m->input_dtypes = input_dtypes_;
    m->input_names = input_names_;
    m->output_dtypes = output_dtypes_;
    for (const auto& s : input_shapes_) m->input_shapes.emplace_back(s);
    for (const auto& s : output_shapes_) m->output_shapes.emplace_back(s);
    m->batch_size = batch_size_;
    m->flush_timeout_us = flush_timeout_us_;
    m->pad_mask = pad_mask_;
    m->signature = signature_;
    if (batch_size_ > 0) {
      for (size_t i = 0; i < m->input_shapes.size(); ++i) {
        const auto& s = m->input_shapes[i];
        OP_REQUIRES(ctx, s.IsFullyDefined() && s.dims() >= 1 && s.dim_size(0) == batch_size_,
                    absl::InvalidArgumentError(absl::StrCat("batched function input ", i, " has shape ",
                                                            s.DebugString(), "; expected fully defined [",
                                                            batch_size_, ", ...]")));
        TensorShape element;
        s.AsTensorShape(&element);
        element.RemoveDim(0);
        m->element_shapes.push_back(element);
      }
    }
    OP_REQUIRES_OK(ctx, server->Bind(std::move(m), std::move(bound), append_));
  }

 private:
  NameAttrList fn_;
  std::string method_, signature_;
  DataTypeVector input_dtypes_, output_dtypes_;
  std::vector<TensorShapeProto> input_shapes_, output_shapes_;
  std::vector<std::string> input_names_;
  int64_t batch_size_, flush_timeout_us_;
  bool pad_mask_, append_;
};

class ServerStartOp : public OpKernel {
 public:
  using OpKernel::OpKernel;
  void Compute(OpKernelContext* ctx) override {
    std::shared_ptr<RpcServer> server;
    OP_REQUIRES_OK(ctx, Registry<RpcServer>::Get().Find(ctx->input(0).scalar<int64_t>()(), &server));
    std::vector<int> ports;
    OP_REQUIRES_OK(ctx, server->Start(&ports));
    Tensor* out;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({static_cast<int64_t>(ports.size())}), &out));
    for (size_t i = 0; i < ports.size(); ++i) out->flat<int32_t>()(i) = ports[i];
  }
};

class ServerShutdownOp : public OpKernel {
 public:
  using OpKernel::OpKernel;
  void Compute(OpKernelContext* ctx) override {
    std::shared_ptr<RpcServer> server = Registry<RpcServer>::Get().Remove(ctx->input(0).scalar<int64_t>()());
    if (server) server->Shutdown();
  }
};

class ServerCompleteOp : public OpKernel {
 public:
  using OpKernel::OpKernel;
  void Compute(OpKernelContext* ctx) override {
    std::shared_ptr<RpcServer> server;
    OP_REQUIRES_OK(ctx, Registry<RpcServer>::Get().Find(ctx->input(0).scalar<int64_t>()(), &server));
    server->Complete(std::string(ctx->input(1).scalar<tstring>()()));
  }
};

class ServerStatsOp : public OpKernel {
 public:
  using OpKernel::OpKernel;
  void Compute(OpKernelContext* ctx) override {
    std::shared_ptr<RpcServer> server;
    OP_REQUIRES_OK(ctx, Registry<RpcServer>::Get().Find(ctx->input(0).scalar<int64_t>()(), &server));
    Tensor* out;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, {}, &out));
    out->scalar<tstring>()() = server->StatsJson();
  }
};

class GrpcVersionOp : public OpKernel {
 public:
  using OpKernel::OpKernel;
  void Compute(OpKernelContext* ctx) override {
    Tensor* out;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, {}, &out));
    out->scalar<tstring>()() = seed_transport::GrpcVersion();
  }
};

REGISTER_KERNEL_BUILDER(Name("SeedRpcServerCreate").Device(DEVICE_CPU), ServerCreateOp);
REGISTER_KERNEL_BUILDER(Name("SeedRpcServerBind").Device(DEVICE_CPU), ServerBindOp);
REGISTER_KERNEL_BUILDER(Name("SeedRpcServerStart").Device(DEVICE_CPU), ServerStartOp);
REGISTER_KERNEL_BUILDER(Name("SeedRpcServerShutdown").Device(DEVICE_CPU), ServerShutdownOp);
REGISTER_KERNEL_BUILDER(Name("SeedRpcServerComplete").Device(DEVICE_CPU), ServerCompleteOp);
REGISTER_KERNEL_BUILDER(Name("SeedRpcServerStats").Device(DEVICE_CPU), ServerStatsOp);
REGISTER_KERNEL_BUILDER(Name("SeedRpcGrpcVersion").Device(DEVICE_CPU), GrpcVersionOp);

}  // namespace seed_rpc
