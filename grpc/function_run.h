// A tf.function bound to a server (TensorFlow side, no gRPC): instantiated
// once in a function runtime of its own, then run from gRPC threads with no
// Python. Shared by the tensor-RPC server and the PredictionService.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <vector>

#include "tensorflow/core/common_runtime/process_function_library_runtime.h"
#include "tensorflow/core/framework/cancellation.h"
#include "tensorflow/core/framework/function.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "transport.h"

namespace seed_rpc {

// A bound function's own runtime: the functions reachable from it, copied, and a
// process function library runtime over the kernel's devices. The kernel's own
// runtime is not the process's: in eager mode it belongs to a cached instantiation
// of the binding op, which TensorFlow drops when it clears its kernel cache
// (tf.random.set_seed and tf_keras's clear_session do: a server bound before
// either used to crash on its next call), and which, kept, holds a copy of the
// function's library (constants included) for every binding.
struct BoundRuntime {
  std::unique_ptr<tensorflow::FunctionLibraryDefinition> lib_def;
  std::unique_ptr<tensorflow::ProcessFunctionLibraryRuntime> pflr;  // destroyed first: it borrows lib_def
};

struct BoundFunction {
  std::shared_ptr<BoundRuntime> runtime;  // shared by copies; a run holds it until it ends
  tensorflow::FunctionLibraryRuntime* flr = nullptr;  // runtime's, on the kernel's device
  tensorflow::FunctionLibraryRuntime::Handle handle = tensorflow::kInvalidHandle;
  std::vector<tensorflow::Tensor> captures;
  // Runs of this function (shared: BoundFunction is copied into a method's list).
  std::shared_ptr<std::atomic<int64_t>> runs = std::make_shared<std::atomic<int64_t>>(0);
};

// Instantiates `fn` (grappler-optimized as an eager tf.function call is) in a
// runtime of its own, with `num_inputs` host-memory arguments followed by `captures`.
absl::Status InstantiateBound(tensorflow::OpKernelContext* ctx, const tensorflow::NameAttrList& fn,
                              const tensorflow::OpInputList& captures, int num_inputs, int num_outputs,
                              BoundFunction* out);

// Releases `fn`'s instantiation, captures and runtime (a no-op the second time),
// once no run of it can start: the instantiated graphs, their kernels and
// constants stay in memory until then.
void ReleaseBound(BoundFunction* fn);

using RunDoneFn = std::function<void(const absl::Status&, std::vector<tensorflow::Tensor>* rets)>;

// Runs `fn` on `args` (its captures appended) under a child of `parent`;
// `call`, if given, cancels the run when its client goes away. `done` runs
// once, on a TF thread.
void RunBound(const BoundFunction& fn, std::vector<tensorflow::Tensor> args, tensorflow::CancellationManager* parent,
              seed_transport::ServerCall* call, RunDoneFn done);

}  // namespace seed_rpc
