#include "function_run.h"

#include "tensorflow/core/common_runtime/device.h"
#include "tensorflow/core/common_runtime/device_mgr.h"
#include "tensorflow/core/common_runtime/rendezvous_mgr.h"
#include "tensorflow/core/framework/resource_handle.h"
#include "tensorflow/core/framework/resource_mgr.h"
#include "tensorflow/core/grappler/grappler_item.h"
#include "tensorflow/core/grappler/optimizers/meta_optimizer.h"
#include "run_cancellation.h"
#include "tensorflow/core/platform/cpu_info.h"
#include "tensorflow/core/platform/logging.h"
#include "tensorflow/core/platform/threadpool.h"

namespace seed_rpc {

using namespace tensorflow;  // NOLINT

namespace {

// Where bound functions' executors schedule their ops, as eager's inter-op pool does
// for eager calls: one pool for the process (never freed), sized and spinning as that one.
thread::ThreadPool* InterOpPool(const ConfigProto* config) {
  static thread::ThreadPool* pool = [config] {
    int threads = config != nullptr ? config->inter_op_parallelism_threads() : 0;
    if (threads <= 0) threads = port::MaxParallelism();
    const bool spin = config == nullptr || !config->experimental().disable_thread_spinning();
    return new thread::ThreadPool(Env::Default(), ThreadOptions(), "seed_bound_runs", threads, spin);
  }();
  return pool;
}

}  // namespace

absl::Status InstantiateBound(OpKernelContext* ctx, const NameAttrList& fn, const OpInputList& captures,
                              int num_inputs, int num_outputs, BoundFunction* out) {
  FunctionLibraryRuntime* kernel_flr = ctx->function_library();
  if (kernel_flr == nullptr) return absl::InternalError("no function library runtime");
  const FunctionLibraryDefinition* kernel_lib = kernel_flr->GetFunctionLibraryDefinition();
  const FunctionDef* fdef = kernel_lib->Find(fn.name());
  if (fdef == nullptr) return absl::NotFoundError(absl::StrCat("function ", fn.name(), " is not in the library"));
  auto runtime = std::make_shared<BoundRuntime>();
  runtime->lib_def = std::make_unique<FunctionLibraryDefinition>(kernel_lib->ReachableDefinitions(*fdef));
  if (!runtime->lib_def->Contains(fn.name())) TF_RETURN_IF_ERROR(runtime->lib_def->AddFunctionDef(*fdef));
  const ConfigProto* config = kernel_flr->config_proto();
  runtime->pflr = std::make_unique<ProcessFunctionLibraryRuntime>(
      kernel_flr->device_mgr(), kernel_flr->env(), config, kernel_flr->graph_def_version(), runtime->lib_def.get(),
      config != nullptr ? config->graph_options().optimizer_options() : OptimizerOptions(),
      InterOpPool(config), /*parent=*/nullptr, /*session_metadata=*/nullptr,
      Rendezvous::Factory([](const int64_t, const DeviceMgr* device_mgr, tsl::core::RefCountPtr<Rendezvous>* r) {
        *r = tsl::core::RefCountPtr<Rendezvous>(new RefCountedIntraProcessRendezvous(device_mgr));
        return absl::OkStatus();
      }));
  FunctionLibraryRuntime* flr = runtime->pflr->GetFLR(kernel_flr->device()->name());
  if (flr == nullptr) return absl::InternalError(absl::StrCat("no function runtime for ", kernel_flr->device()->name()));
  FunctionLibraryRuntime::InstantiateOptions opts;
  opts.target = flr->device()->name();
  opts.is_multi_device_function = true;
  // Arguments arrive in host memory; captured resources live where they were created.
  for (int i = 0; i < num_inputs; ++i) opts.input_devices.push_back(opts.target);
  for (int i = 0; i < captures.size(); ++i) {
    const Tensor& t = captures[i];
    if (t.dtype() == DT_RESOURCE && !t.scalar<ResourceHandle>()().device().empty()) {
      opts.input_devices.push_back(t.scalar<ResourceHandle>()().device());
    } else {
      opts.input_devices.push_back(opts.target);
    }
  }
  for (int i = 0; i < num_outputs; ++i) opts.output_devices.push_back(opts.target);
  // Grappler, as eager calls of a tf.function get it: constant folding,
  // pruning and op fusion. Without it every Shape/StridedSlice/Pack the
  // tracer emitted runs on each call (~500 ops for the learner's inference).
  opts.optimize_graph_fn = [name = fn.name()](std::vector<std::string> ret_nodes, std::vector<std::string> keep_nodes,
                                              FunctionLibraryDefinition* lib, const DeviceSet& devices, Device* cpu,
                                              std::unique_ptr<Graph>* graph) {
    grappler::GrapplerItem::OptimizationOptions options;
    options.allow_pruning_stateful_and_dataset_ops = true;  // control outputs are kept
    options.is_eager_mode = true;
    options.optimize_function_library = false;  // nested calls are optimized when instantiated
    return grappler::OptimizeGraph(std::move(ret_nodes), std::move(keep_nodes), lib, devices, cpu, ConfigProto(),
                                   name, options, graph);
  };
  TF_RETURN_IF_ERROR(flr->Instantiate(fn.name(), AttrSlice(&fn.attr()), opts, &out->handle));
  out->runtime = std::move(runtime);
  out->flr = flr;
  for (int i = 0; i < captures.size(); ++i) out->captures.push_back(captures[i]);
  return absl::OkStatus();
}

void ReleaseBound(BoundFunction* fn) {
  if (fn->handle == kInvalidHandle) return;
  absl::Status s = fn->flr->ReleaseHandle(fn->handle);
  if (!s.ok()) LOG(WARNING) << "releasing a bound function: " << s;
  fn->handle = kInvalidHandle;
  fn->captures.clear();
  fn->runtime.reset();  // the last copy frees the runtime
}

void RunBound(const BoundFunction& fn, std::vector<Tensor> args, CancellationManager* parent,
              seed_transport::ServerCall* call, RunDoneFn done) {
  fn.runs->fetch_add(1);
  for (const Tensor& c : fn.captures) args.push_back(c);
  FunctionLibraryRuntime::Options opts;
  // A child per run: a failing multi-device function cancels its own
  // manager, which must not cancel every other run.
  std::shared_ptr<CancellationManager> cancel = NewRunCancellation(parent);
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
  flr->Run(opts, fn.handle, *args_ptr, rets,
           [runtime = fn.runtime, step, cancel, args_ptr, rets, done = std::move(done)](const absl::Status& s) {
             delete step;
             delete args_ptr;
             done(s, rets);
             delete rets;
           });
}

}  // namespace seed_rpc
