// Server side of the tensor RPC: ops that create a server, bind tf.functions
// to it, start and stop it, and the batching machinery. Bound functions run
// through TensorFlow's FunctionLibraryRuntime on gRPC threads: no Python.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <thread>

#include "tensorflow/core/common_runtime/device.h"
#include "tensorflow/core/common_runtime/device_mgr.h"
#include "tensorflow/core/framework/cancellation.h"
#include "tensorflow/core/framework/common_shape_fns.h"
#include "tensorflow/core/framework/function.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/resource_mgr.h"
#include "tensorflow/core/framework/tensor_util.h"
#include "tensorflow/core/grappler/grappler_item.h"
#include "tensorflow/core/grappler/optimizers/meta_optimizer.h"
#include "batcher.h"
#include "transport.h"
#include "wire.h"

namespace seed_rpc {

using namespace tensorflow;  // NOLINT: kernel code reads better unqualified.
using Clock = std::chrono::steady_clock;

constexpr char kMethodPrefix[] = "/seed/";
constexpr char kListMethods[] = "__methods__";

// ------------------------------------------------------------------ specs ---

struct BoundFunction {
  FunctionLibraryRuntime* flr;
  FunctionLibraryRuntime::Handle handle;
  std::vector<Tensor> captures;
};

struct Method {
  std::string name;
  std::vector<BoundFunction> functions;  // round robin
  std::atomic<uint64_t> next_function{0};
  DataTypeVector input_dtypes, output_dtypes;
  std::vector<PartialTensorShape> input_shapes, output_shapes;
  std::vector<TensorShape> element_shapes;  // batched: input shapes without the batch dim
  std::vector<std::string> input_names;
  int64_t batch_size = 0;  // 0: not batched
  int64_t flush_timeout_us = -1;
  bool pad_mask = false;
  std::string signature;
  Stats stats;
  std::unique_ptr<Batcher> batcher;  // batched methods only

  size_t client_inputs() const { return input_dtypes.size() - (pad_mask ? 1 : 0); }
};

std::string ShapeString(const PartialTensorShape& s) { return s.DebugString(); }

// ----------------------------------------------------------------- server ---

class RpcServer : public std::enable_shared_from_this<RpcServer> {
 public:
  RpcServer(std::vector<std::string> addresses, int num_threads, int64_t max_message_size)
      : addresses_(std::move(addresses)), num_threads_(num_threads),
        max_message_size_(max_message_size) {}
  ~RpcServer() { Shutdown(); }

  absl::Status Bind(std::unique_ptr<Method> method, BoundFunction fn, bool append) {
    std::lock_guard<std::mutex> lock(mu_);
    if (state_ != kCreated) {
      return absl::FailedPreconditionError("functions must be bound before the server starts");
    }
    auto it = methods_.find(method->name);
    if (append) {
      if (it == methods_.end()) return absl::InternalError("append to unbound method");
      it->second->functions.push_back(std::move(fn));
      return absl::OkStatus();
    }
    if (it != methods_.end()) {
      return absl::AlreadyExistsError("a function named '" + method->name + "' is already bound");
    }
    method->functions.push_back(std::move(fn));
    if (method->batch_size > 0) {
      Method* m = method.get();
      BatcherOptions options;
      options.batch_size = m->batch_size;
      options.flush_timeout_us = m->flush_timeout_us;
      options.pad_mask = m->pad_mask;
      options.dtypes.assign(m->input_dtypes.begin(), m->input_dtypes.begin() + m->client_inputs());
      options.element_shapes.assign(m->element_shapes.begin(), m->element_shapes.begin() + m->client_inputs());
      m->batcher = std::make_unique<Batcher>(options, [this, m](std::vector<Tensor> args, RunDone done) {
        Run(m, std::move(args), nullptr, [m, done](const absl::Status& s, std::vector<Tensor>* rets) {
          done(s.ok() ? CheckOutputs(*m, *rets, m->batch_size) : s, *rets);
        });
      }, &m->stats);
    }
    std::string name = method->name;
    methods_[name] = std::move(method);
    return absl::OkStatus();
  }

  absl::Status Start(std::vector<int>* ports) {
    std::lock_guard<std::mutex> lock(mu_);
    if (state_ == kStarted) return absl::FailedPreconditionError("server already started");
    if (state_ == kShutDown) return absl::FailedPreconditionError("server was shut down; create a new one");
    if (methods_.empty()) {
      return absl::FailedPreconditionError("bind at least one function before starting the server");
    }
    seed_transport::ServerOptions options;
    options.addresses = addresses_;
    options.num_threads = num_threads_;
    options.max_message_size = max_message_size_;
    std::string error;
    accepting_ = true;  // calls may arrive before StartServer returns
    transport_ = seed_transport::StartServer(
        options,
        [this](seed_transport::ServerCall* call) { Handle(call); }, &error);
    if (transport_ == nullptr) {
      accepting_ = false;
      return absl::UnavailableError(error);
    }
    *ports = transport_->ports();
    state_ = kStarted;
    return absl::OkStatus();
  }

  // Cancels running functions and waiting batch slots, answers every call,
  // then stops the transport. Safe to call more than once.
  void Shutdown() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (state_ != kStarted) {
        state_ = kShutDown;
        return;
      }
      state_ = kShutDown;
      accepting_ = false;
    }
    for (auto& [name, method] : methods_) {
      if (method->batcher) method->batcher->Shutdown();
    }
    cancellation_.StartCancel();
    {
      std::unique_lock<std::mutex> lock(runs_mu_);
      runs_cv_.wait(lock, [this] { return running_ == 0; });
    }
    transport_->Shutdown(/*grace_ms=*/100);
  }

  std::string StatsJson() {
    std::ostringstream os;
    os << "{";
    bool first = true;
    for (auto& [name, m] : methods_) {
      if (!first) os << ", ";
      first = false;
      int64_t batches = m->stats.batches.load(), slots = m->stats.slots.load();
      double fill = (m->batch_size > 0 && batches > 0)
                        ? static_cast<double>(slots) / (batches * m->batch_size) : 0.0;
      os << "\"" << name << "\": {\"calls\": " << m->stats.calls.load()
         << ", \"errors\": " << m->stats.errors.load() << ", \"batches\": " << batches
         << ", \"slots\": " << slots << ", \"batch_size\": " << m->batch_size
         << ", \"mean_batch_fill\": " << fill << "}";
    }
    os << "}";
    return os.str();
  }

 private:
  enum State { kCreated, kStarted, kShutDown };

  // Runs on a gRPC completion-queue thread for every incoming call.
  void Handle(seed_transport::ServerCall* call) {
    if (!accepting_) return Fail(call, absl::UnavailableError("server is shutting down"));
    const std::string& path = call->method();
    std::string name = path.rfind(kMethodPrefix, 0) == 0 ? path.substr(strlen(kMethodPrefix)) : "";
    if (name == kListMethods) return ListMethods(call);
    auto it = methods_.find(name);  // methods_ is frozen once started
    if (it == methods_.end()) {
      std::string known;
      for (auto& [n, m] : methods_) known += (known.empty() ? "" : ", ") + n;
      return Fail(call, absl::UnimplementedError("unknown method '" + path + "'; bound methods: " + known));
    }
    Method* m = it->second.get();
    m->stats.calls++;
    std::vector<Tensor> inputs;
    absl::Status s = ParseTensors(call->TakeRequest(), &inputs);
    int64_t rows = 0;
    bool single = false;
    if (s.ok()) s = Validate(*m, inputs, &rows, &single);
    if (!s.ok()) {
      m->stats.errors++;
      return Fail(call, s);
    }
    if (m->batch_size == 0) return RunUnbatched(m, call, std::move(inputs));
    m->batcher->Enqueue(call, inputs, rows, single);
  }

  void ListMethods(seed_transport::ServerCall* call) {
    Tensor names(DT_STRING, TensorShape({static_cast<int64_t>(methods_.size())}));
    Tensor sigs(DT_STRING, names.shape());
    int i = 0;
    for (auto& [n, m] : methods_) {
      names.flat<tstring>()(i) = n;
      sigs.flat<tstring>()(i) = m->signature;
      ++i;
    }
    Reply(call, {names, sigs});
  }

  absl::Status Validate(const Method& m, const std::vector<Tensor>& inputs, int64_t* rows, bool* single) {
    if (inputs.size() != m.client_inputs()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "method '", m.name, "' takes ", m.client_inputs(), " input(s), got ", inputs.size()));
    }
    *rows = -1;
    for (size_t i = 0; i < inputs.size(); ++i) {
      const Tensor& t = inputs[i];
      auto where = [&] { return absl::StrCat("method '", m.name, "', input ", i, " ('", m.input_names[i], "'): "); };
      if (t.dtype() != m.input_dtypes[i]) {
        return absl::InvalidArgumentError(absl::StrCat(where(), "expected dtype ", DataTypeString(m.input_dtypes[i]),
                                                       ", got ", DataTypeString(t.dtype())));
      }
      const PartialTensorShape& spec = m.input_shapes[i];
      if (m.batch_size == 0) {
        if (!spec.IsCompatibleWith(t.shape())) {
          return absl::InvalidArgumentError(absl::StrCat(where(), "expected shape ", ShapeString(spec),
                                                         ", got ", t.shape().DebugString()));
        }
        continue;
      }
      // Batched: one element (spec without its leading dim) or k <= batch rows.
      const TensorShape& element = m.element_shapes[i];
      bool is_single = t.shape() == element;
      int64_t k = 1;
      if (!is_single) {
        bool rows_match = t.dims() == element.dims() + 1;
        for (int d = 0; rows_match && d < element.dims(); ++d) rows_match = t.dim_size(d + 1) == element.dim_size(d);
        if (!rows_match) {
          return absl::InvalidArgumentError(absl::StrCat(
              where(), "expected one element of shape ", element.DebugString(), " or a batch of shape ",
              PartialTensorShape({-1}).Concatenate(element).DebugString(), ", got ", t.shape().DebugString()));
        }
        k = t.dim_size(0);
        if (k == 0) return absl::InvalidArgumentError(where() + "empty batch (0 rows)");
        if (k > m.batch_size) {
          return absl::InvalidArgumentError(absl::StrCat(where(), "a call carries ", k, " rows but the batch size is ",
                                                         m.batch_size));
        }
      }
      if (*rows == -1) {
        *rows = k;
        *single = is_single;
      } else if (*rows != k || *single != is_single) {
        return absl::InvalidArgumentError(absl::StrCat("method '", m.name,
                                                       "': all inputs must carry the same number of rows"));
      }
    }
    if (*rows == -1) *rows = 0;
    return absl::OkStatus();
  }

  // Starts `m`'s next function on `args`; `done` gets the status and outputs.
  // `call`, if given, is the one caller of an unbatched run: its
  // cancellation (client gone, deadline passed) cancels the run.
  void Run(Method* m, std::vector<Tensor> args, seed_transport::ServerCall* call,
           std::function<void(const absl::Status&, std::vector<Tensor>*)> done) {
    const BoundFunction& fn = m->functions[m->next_function.fetch_add(1) % m->functions.size()];
    for (const Tensor& c : fn.captures) args.push_back(c);
    {
      std::lock_guard<std::mutex> lock(runs_mu_);
      ++running_;
    }
    FunctionLibraryRuntime::Options opts;
    // A child per run: a failing multi-device function cancels its own
    // manager, which must not cancel every other run.
    auto cancel = std::make_shared<CancellationManager>(&cancellation_);
    opts.cancellation_manager = cancel.get();
    if (call != nullptr) call->OnCancel([cancel] { cancel->StartCancel(); });
    opts.create_rendezvous = true;
    FunctionLibraryRuntime* flr = fn.flr;
    auto* step = new ScopedStepContainer(opts.step_id, [flr](const std::string& name) {
      for (Device* d : flr->device_mgr()->ListDevices()) d->resource_manager()->Cleanup(name).IgnoreError();
    });
    opts.step_container = step;
    auto* args_ptr = new std::vector<Tensor>(std::move(args));
    auto* rets = new std::vector<Tensor>;
    auto self = shared_from_this();
    flr->Run(opts, fn.handle, *args_ptr, rets,
             [self, step, cancel, args_ptr, rets, done = std::move(done)](const absl::Status& s) {
               delete step;
               delete args_ptr;
               done(s, rets);
               delete rets;
               std::lock_guard<std::mutex> lock(self->runs_mu_);
               if (--self->running_ == 0) self->runs_cv_.notify_all();
             });
  }

  void RunUnbatched(Method* m, seed_transport::ServerCall* call, std::vector<Tensor> inputs) {
    Run(m, std::move(inputs), call, [this, m, call](const absl::Status& s, std::vector<Tensor>* rets) {
      absl::Status status = s.ok() ? CheckOutputs(*m, *rets, -1) : s;
      if (!status.ok()) {
        m->stats.errors++;
        return Fail(call, status);
      }
      Reply(call, *rets);
    });
  }

  static absl::Status CheckOutputs(const Method& m, const std::vector<Tensor>& rets, int64_t batch) {
    if (rets.size() != m.output_dtypes.size()) {
      return absl::InternalError(absl::StrCat("function of '", m.name, "' returned ", rets.size(),
                                              " outputs, expected ", m.output_dtypes.size()));
    }
    for (size_t i = 0; i < rets.size(); ++i) {
      if (!IsSupportedDtype(rets[i].dtype())) {
        return absl::InvalidArgumentError(absl::StrCat("method '", m.name, "' output ", i, " has dtype ",
                                                       DataTypeString(rets[i].dtype()), " which cannot be sent"));
      }
      if (batch >= 0 && (rets[i].dims() == 0 || rets[i].dim_size(0) != batch)) {
        return absl::InternalError(absl::StrCat("batched method '", m.name, "' output ", i, " has shape ",
                                                rets[i].shape().DebugString(), ", expected leading dimension ",
                                                batch));
      }
    }
    return absl::OkStatus();
  }

  const std::vector<std::string> addresses_;
  const int num_threads_;
  const int64_t max_message_size_;
  std::mutex mu_;  // guards state_, methods_ until start (frozen after)
  State state_ = kCreated;
  std::atomic<bool> accepting_{false};
  std::map<std::string, std::unique_ptr<Method>> methods_;
  std::unique_ptr<seed_transport::Server> transport_;
  CancellationManager cancellation_;
  std::mutex runs_mu_;
  std::condition_variable runs_cv_;
  int64_t running_ = 0;
};

// --------------------------------------------------------------- registry ---

class Registry {
 public:
  static Registry& Get() {
    static Registry* r = new Registry;
    return *r;
  }
  int64_t Add(std::shared_ptr<RpcServer> s) {
    std::lock_guard<std::mutex> lock(mu_);
    servers_[++last_id_] = std::move(s);
    return last_id_;
  }
  absl::Status Find(int64_t id, std::shared_ptr<RpcServer>* out) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = servers_.find(id);
    if (it == servers_.end()) return absl::NotFoundError(absl::StrCat("no server with id ", id));
    *out = it->second;
    return absl::OkStatus();
  }
  std::shared_ptr<RpcServer> Remove(int64_t id) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = servers_.find(id);
    if (it == servers_.end()) return nullptr;
    auto s = std::move(it->second);
    servers_.erase(it);
    return s;
  }

 private:
  std::mutex mu_;
  int64_t last_id_ = 0;
  std::map<int64_t, std::shared_ptr<RpcServer>> servers_;
};

// ---------------------------------------------------------------- kernels ---

REGISTER_OP("SeedRpcServerCreate")
    .Output("server_id: int64")
    .Attr("addresses: list(string)")
    .Attr("num_threads: int = 0")
    .Attr("max_message_size: int = 0")
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
    out->scalar<int64_t>()() = Registry::Get().Add(
        std::make_shared<RpcServer>(addresses_, num_threads_, max_message_size_));
  }

 private:
  std::vector<std::string> addresses_;
  int num_threads_;
  int64_t max_message_size_;
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
    OP_REQUIRES_OK(ctx, Registry::Get().Find(ctx->input(0).scalar<int64_t>()(), &server));
    OP_REQUIRES(ctx, input_shapes_.size() == input_dtypes_.size() && input_names_.size() == input_dtypes_.size() &&
                         output_shapes_.size() == output_dtypes_.size(),
                absl::InvalidArgumentError("inconsistent signature attributes"));
    for (DataType d : input_dtypes_) {
      OP_REQUIRES(ctx, IsSupportedDtype(d),
                  absl::InvalidArgumentError("input dtype " + DataTypeString(d) + " cannot be sent over RPC"));
    }
    FunctionLibraryRuntime* flr = ctx->function_library();
    OP_REQUIRES(ctx, flr != nullptr, absl::InternalError("no function library runtime"));
    OpInputList captures;
    OP_REQUIRES_OK(ctx, ctx->input_list("captures", &captures));

    FunctionLibraryRuntime::InstantiateOptions opts;
    opts.target = flr->device()->name();
    opts.is_multi_device_function = true;
    // Arguments arrive in host memory; captured resources live where they were created.
    for (size_t i = 0; i < input_dtypes_.size(); ++i) opts.input_devices.push_back(opts.target);
    for (int i = 0; i < captures.size(); ++i) {
      const Tensor& t = captures[i];
      if (t.dtype() == DT_RESOURCE && !t.scalar<ResourceHandle>()().device().empty()) {
        opts.input_devices.push_back(t.scalar<ResourceHandle>()().device());
      } else {
        opts.input_devices.push_back(opts.target);
      }
    }
    for (size_t i = 0; i < output_dtypes_.size(); ++i) opts.output_devices.push_back(opts.target);
    // Grappler, as eager calls of a tf.function get it: constant folding,
    // pruning and op fusion. Without it every Shape/StridedSlice/Pack the
    // tracer emitted runs on each call (~500 ops for the learner's inference).
    opts.optimize_graph_fn = [name = fn_.name()](std::vector<std::string> ret_nodes,
                                                 std::vector<std::string> keep_nodes,
                                                 FunctionLibraryDefinition* lib, const DeviceSet& devices,
                                                 Device* cpu, std::unique_ptr<Graph>* graph) {
      grappler::GrapplerItem::OptimizationOptions options;
      options.allow_pruning_stateful_and_dataset_ops = true;  // control outputs are kept
      options.is_eager_mode = true;
      options.optimize_function_library = false;  // nested calls are optimized when instantiated
      return grappler::OptimizeGraph(std::move(ret_nodes), std::move(keep_nodes), lib, devices, cpu,
                                     ConfigProto(), name, options, graph);
    };
    BoundFunction bound;
    bound.flr = flr;
    OP_REQUIRES_OK(ctx, flr->Instantiate(fn_.name(), AttrSlice(&fn_.attr()), opts, &bound.handle));
    for (int i = 0; i < captures.size(); ++i) bound.captures.push_back(captures[i]);

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
    OP_REQUIRES_OK(ctx, Registry::Get().Find(ctx->input(0).scalar<int64_t>()(), &server));
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
    std::shared_ptr<RpcServer> server = Registry::Get().Remove(ctx->input(0).scalar<int64_t>()());
    if (server) server->Shutdown();
  }
};

class ServerStatsOp : public OpKernel {
 public:
  using OpKernel::OpKernel;
  void Compute(OpKernelContext* ctx) override {
    std::shared_ptr<RpcServer> server;
    OP_REQUIRES_OK(ctx, Registry::Get().Find(ctx->input(0).scalar<int64_t>()(), &server));
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
REGISTER_KERNEL_BUILDER(Name("SeedRpcServerStats").Device(DEVICE_CPU), ServerStatsOp);
REGISTER_KERNEL_BUILDER(Name("SeedRpcGrpcVersion").Device(DEVICE_CPU), GrpcVersionOp);

}  // namespace seed_rpc
