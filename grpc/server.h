// The tensor RPC server (TensorFlow side): methods bound to tf.functions,
// validation of incoming calls, and runs through FunctionLibraryRuntime on
// gRPC threads, no Python. Batched methods queue their calls in a Batcher.
#pragma once

#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "tensorflow/core/framework/cancellation.h"
#include "tensorflow/core/framework/function.h"
#include "batcher.h"
#include "function_run.h"
#include "registry.h"
#include "transport.h"

namespace seed_rpc {

struct Method {
  std::string name;
  std::vector<BoundFunction> functions;  // round robin
  std::atomic<uint64_t> next_function{0};
  tensorflow::DataTypeVector input_dtypes, output_dtypes;
  std::vector<tensorflow::PartialTensorShape> input_shapes, output_shapes;
  std::vector<tensorflow::TensorShape> element_shapes;  // batched: input shapes without the batch dim
  std::vector<std::string> input_names;
  int64_t batch_size = 0;  // 0: not batched
  int64_t flush_timeout_us = -1;
  bool pad_mask = false;
  std::string signature;
  Stats stats;
  std::unique_ptr<Batcher> batcher;  // batched methods only, made by Bind

  size_t client_inputs() const { return input_dtypes.size() - (pad_mask ? 1 : 0); }
};

class RpcServer : public std::enable_shared_from_this<RpcServer> {
 public:
  RpcServer(std::vector<std::string> addresses, int num_threads, int64_t max_message_size,
            seed_transport::ServerSecurity security)
      : addresses_(std::move(addresses)),
        num_threads_(num_threads),
        max_message_size_(max_message_size),
        security_(std::move(security)) {}
  ~RpcServer() { Shutdown(); }

  // `append` adds `fn` to the round robin of an already bound method.
  absl::Status Bind(std::unique_ptr<Method> method, BoundFunction fn, bool append);
  absl::Status Start(std::vector<int>* ports);
  // Cancels running functions and waiting batch slots, answers every call,
  // then stops the transport. Safe to call more than once.
  void Shutdown();
  // From now on every call (new connections too) is answered OUT_OF_RANGE
  // with `message`: clients learn the run is over and stop instead of
  // retrying. Calls already running finish normally.
  void Complete(const std::string& message);
  std::string StatsJson();

 private:
  enum State { kCreated, kStarted, kShutDown };

  // Runs on a gRPC completion-queue thread for every incoming call.
  void Handle(seed_transport::ServerCall* call);
  void ListMethods(seed_transport::ServerCall* call);
  absl::Status Validate(const Method& m, const std::vector<tensorflow::Tensor>& inputs, int64_t* rows,
                        bool* single);
  // Starts `m`'s next function on `args`; `done` gets the status and outputs.
  // `call`, if given, is the one caller of an unbatched run: its
  // cancellation (client gone, deadline passed) cancels the run.
  void Run(Method* m, std::vector<tensorflow::Tensor> args, seed_transport::ServerCall* call,
           std::function<void(const absl::Status&, std::vector<tensorflow::Tensor>*)> done);
  void RunUnbatched(Method* m, seed_transport::ServerCall* call, std::vector<tensorflow::Tensor> inputs);
  // `batch` >= 0: every output must have that leading dimension.
  static absl::Status CheckOutputs(const Method& m, const std::vector<tensorflow::Tensor>& rets, int64_t batch);

  const std::vector<std::string> addresses_;
  const int num_threads_;
  const int64_t max_message_size_;
  const seed_transport::ServerSecurity security_;
  std::mutex complete_mu_;
  std::atomic<bool> complete_{false};
  std::atomic<int64_t> completed_calls_{0};  // calls answered "run complete"
  std::string complete_message_;  // set once, before complete_
  std::mutex mu_;  // guards state_, methods_ until start (frozen after)
  State state_ = kCreated;
  std::atomic<bool> accepting_{false};
  std::map<std::string, std::unique_ptr<Method>> methods_;
  std::unique_ptr<seed_transport::Server> transport_;
  tensorflow::CancellationManager cancellation_;
  std::mutex runs_mu_;
  std::condition_variable runs_cv_;
  int64_t running_ = 0;
};

}  // namespace seed_rpc
