// Batch assembly for batched methods (TensorFlow side, no gRPC headers).
//
// Calls carrying rows of a method's inputs are packed into fixed-size
// batches; a full batch (or a partial one after the flush timeout, padded
// with zeros) goes to a run callback, and every caller gets its rows of the
// outputs back. The batcher knows nothing about functions or methods: what a
// batch runs is the callback's business.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "tensorflow/core/framework/tensor.h"
#include "transport.h"

namespace seed_rpc {

struct Stats {
  std::atomic<int64_t> calls{0}, errors{0}, batches{0}, slots{0};
  std::atomic<int64_t> dropped{0};  // calls cancelled (or expired) while their rows waited: taken out
};

// Answers `call` with `outputs`, or with a failed status.
void Reply(seed_transport::ServerCall* call, const std::vector<tensorflow::Tensor>& outputs);
void Fail(seed_transport::ServerCall* call, const absl::Status& s);

struct BatcherOptions {
  int64_t batch_size = 0;
  int64_t flush_timeout_us = -1;  // < 0: only full batches run
  bool pad_mask = false;          // append a [batch_size] bool mask, true = real row
  // false: a partial batch runs with only its filled rows (the function takes any leading dimension).
  bool pad = true;
  // How a call is answered with rows [first, first + rows) of a batch's outputs; default: the tensor wire format.
  std::function<void(seed_transport::ServerCall* call, const std::vector<tensorflow::Tensor>& outputs, int64_t first,
                     int64_t rows)>
      respond;
  tensorflow::DataTypeVector dtypes;                     // per input
  std::vector<tensorflow::TensorShape> element_shapes;  // per input, without the batch dim
};

// `done` must be called exactly once, with outputs of batch_size rows each
// (of the rows filled, without padding) unless the status is an error.
using RunDone = std::function<void(const absl::Status&, const std::vector<tensorflow::Tensor>& outputs)>;
using RunBatch = std::function<void(std::vector<tensorflow::Tensor> inputs, RunDone done)>;

struct PendingCall;
struct Batch;

class Batcher {
 public:
  // `stats` (batches, slots, errors) must outlive the batcher.
  Batcher(BatcherOptions options, RunBatch run, Stats* stats);
  // Shuts down, then waits for launched batches to come back.
  ~Batcher();

  // Queues `rows` rows of `inputs` (one element without the batch dim if
  // `single`) and answers `call` once all of them came back from batches.
  // A call cancelled by its client (or whose deadline passed) while rows of
  // it wait in the open batch is taken out of that batch, the rows behind
  // it moving up, and answered Cancelled (the transport drops that answer);
  // rows already in a running batch run, and the call is answered once,
  // when the last of them comes back.
  void Enqueue(seed_transport::ServerCall* call, const std::vector<tensorflow::Tensor>& inputs, int64_t rows,
               bool single);

  // Joins the flusher and answers calls waiting in the open batch with
  // Cancelled; later calls get Unavailable. Batches already running are
  // answered when they come back. Idempotent.
  void Shutdown();

 private:
  using Clock = std::chrono::steady_clock;

  std::unique_ptr<Batch> NewBatch() const;
  void Launch(std::unique_ptr<Batch> batch);
  void FinishBatch(const Batch& batch, const absl::Status& status, const std::vector<tensorflow::Tensor>& outputs);
  void FlushLoop();
  // The cancel callback of `call`: takes its rows out of the open batch.
  void Drop(const std::shared_ptr<PendingCall>& call);

  const BatcherOptions options_;
  const RunBatch run_;
  Stats* const stats_;

  std::mutex mu_;  // guards the four below
  std::unique_ptr<Batch> open_;  // batch being filled
  bool closed_ = false;          // shut down: no new batches
  int64_t running_ = 0;          // launched batches not yet finished
  std::condition_variable cv_;   // open_ opened, closed_, running_ reached 0
  std::thread flusher_;          // only with a flush timeout

  // Cancel callbacks may run on transport threads while the batcher is
  // destroyed: they check `alive` under `mu` and the destructor clears it.
  struct Liveness {
    std::mutex mu;
    bool alive = true;
  };
  const std::shared_ptr<Liveness> liveness_ = std::make_shared<Liveness>();
};

}  // namespace seed_rpc
