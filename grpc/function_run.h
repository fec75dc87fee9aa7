// A tf.function bound to a server (TensorFlow side, no gRPC): instantiated
// once in the kernel's FunctionLibraryRuntime, then run from gRPC threads with
// no Python. Shared by the tensor-RPC server and the PredictionService.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <vector>

#include "tensorflow/core/framework/cancellation.h"
#include "tensorflow/core/framework/function.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "transport.h"

namespace seed_rpc {

struct BoundFunction {
  tensorflow::FunctionLibraryRuntime* flr = nullptr;
  tensorflow::FunctionLibraryRuntime::Handle handle = tensorflow::kInvalidHandle;
  std::vector<tensorflow::Tensor> captures;
  // Runs of this function (shared: BoundFunction is copied into a method's list).
  std::shared_ptr<std::atomic<int64_t>> runs = std::make_shared<std::atomic<int64_t>>(0);
};

// Instantiates `fn` (grappler-optimized as an eager tf.function call is) with
// `num_inputs` host-memory arguments followed by `captures`.
absl::Status InstantiateBound(tensorflow::OpKernelContext* ctx, const tensorflow::NameAttrList& fn,
                              const tensorflow::OpInputList& captures, int num_inputs, int num_outputs,
                              BoundFunction* out);

using RunDoneFn = std::function<void(const absl::Status&, std::vector<tensorflow::Tensor>* rets)>;

// Runs `fn` on `args` (its captures appended) under a child of `parent`;
// `call`, if given, cancels the run when its client goes away. `done` runs
// once, on a TF thread.
void RunBound(const BoundFunction& fn, std::vector<tensorflow::Tensor> args, tensorflow::CancellationManager* parent,
              seed_transport::ServerCall* call, RunDoneFn done);

}  // namespace seed_rpc
