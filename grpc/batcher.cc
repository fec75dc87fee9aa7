#include "batcher.h"

#include <algorithm>
#include <cstring>

#include "wire.h"

namespace seed_rpc {

using namespace tensorflow;  // NOLINT: TF-heavy code reads better unqualified.

// A call (or part of one) waiting for its rows to come out of batches.
struct PendingCall {
  seed_transport::ServerCall* call;
  int64_t rows;
  bool single;  // sent one element without the leading dimension
  std::mutex mu;
  int parts = 0;  // batches still holding rows of this call
  absl::Status status;
  std::vector<Tensor> outputs;
};

// Rows [call_row, call_row + rows) of a call sit at batch_row in a batch.
struct Segment {
  std::shared_ptr<PendingCall> call;
  int64_t call_row, batch_row, rows;
};

struct Batch {
  std::vector<Tensor> inputs;  // [batch_size, ...] each
  int64_t filled = 0;
  std::vector<Segment> segments;
  std::chrono::steady_clock::time_point opened;
};

void Reply(seed_transport::ServerCall* call, const std::vector<Tensor>& outputs) {
  std::string body;
  SerializeTensors(outputs, &body);
  call->Respond(std::move(body), {});
}

void Fail(seed_transport::ServerCall* call, const absl::Status& s) {
  call->Respond({}, {static_cast<int>(s.code()), std::string(s.message())});
}

namespace {

// `from` may be `*to` with to_row < from_row (rows moving up inside a batch).
void CopyRows(const Tensor& from, int64_t from_row, Tensor* to, int64_t to_row, int64_t rows) {
  if (rows <= 0) return;
  const int64_t per_row = from.dim_size(0) > 0 ? from.NumElements() / from.dim_size(0) : 0;
  if (from.dtype() == DT_STRING) {
    auto src = from.flat<tstring>();
    auto dst = to->flat<tstring>();
    for (int64_t i = 0; i < rows * per_row; ++i) dst(to_row * per_row + i) = src(from_row * per_row + i);
    return;
  }
  const int64_t row_bytes = per_row * DataTypeSize(from.dtype());
  std::memmove(const_cast<char*>(to->tensor_data().data()) + to_row * row_bytes,
               from.tensor_data().data() + from_row * row_bytes, rows * row_bytes);
}

}  // namespace

Batcher::Batcher(BatcherOptions options, RunBatch run, Stats* stats)
    : options_(std::move(options)), run_(std::move(run)), stats_(stats) {
  if (options_.flush_timeout_us >= 0) flusher_ = std::thread([this] { FlushLoop(); });
}

Batcher::~Batcher() {
  {
    std::lock_guard<std::mutex> lock(liveness_->mu);
    liveness_->alive = false;
  }
  Shutdown();
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [this] { return running_ == 0; });
}

std::unique_ptr<Batch> Batcher::NewBatch() const {
  auto b = std::make_unique<Batch>();
  b->opened = Clock::now();
  for (size_t i = 0; i < options_.dtypes.size(); ++i) {
    TensorShape shape({options_.batch_size});
    shape.AppendShape(options_.element_shapes[i]);
    b->inputs.emplace_back(options_.dtypes[i], shape);
  }
  return b;
}

void Batcher::Enqueue(seed_transport::ServerCall* call, const std::vector<Tensor>& inputs, int64_t rows,
                      bool single) {
  const int64_t n = options_.batch_size;
  if (rows < 1 || rows > n) {  // the server's validation says which input; this keeps the batcher safe alone
    stats_->errors++;
    return Fail(call, absl::InvalidArgumentError(
                          absl::StrCat("a call carries ", rows, " rows but the batch size is ", n)));
  }
  auto pending = std::make_shared<PendingCall>();
  pending->call = call;
  pending->rows = rows;
  pending->single = single;
  // Before the rows are placed: once placed, a batch may run and answer the
  // call (which is then invalid) at any time.
  call->OnCancel([this, weak = std::weak_ptr<PendingCall>(pending), liveness = liveness_] {
    std::lock_guard<std::mutex> live(liveness->mu);
    std::shared_ptr<PendingCall> p = weak.lock();
    if (liveness->alive && p != nullptr) Drop(p);
  });
  std::vector<std::unique_ptr<Batch>> full;
  bool opened;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) {
      stats_->errors++;
      return Fail(call, absl::UnavailableError("server is shutting down"));
    }
    const Batch* was_open = open_.get();
    int64_t done = 0;
    // Holds the parts count up until every part is placed.
    pending->parts = 1;
    if (open_ == nullptr && !single && rows == n) {
      // The call is a whole batch: its parsed tensors are the batch inputs, no staging copy.
      auto b = std::make_unique<Batch>();
      b->opened = Clock::now();
      b->inputs = inputs;
      b->segments.push_back({pending, 0, 0, rows});
      pending->parts++;
      b->filled = rows;
      done = rows;
      full.push_back(std::move(b));
    }
    while (done < rows) {
      if (open_ == nullptr) open_ = NewBatch();
      Batch* b = open_.get();
      int64_t take = std::min(rows - done, n - b->filled);
      for (size_t i = 0; i < inputs.size(); ++i) {
        if (single) {
          Tensor row = inputs[i];
          TensorShape with_batch({1});
          with_batch.AppendShape(inputs[i].shape());
          CHECK(row.CopyFrom(inputs[i], with_batch));
          CopyRows(row, 0, &b->inputs[i], b->filled, 1);
        } else {
          CopyRows(inputs[i], done, &b->inputs[i], b->filled, take);
        }
      }
      b->segments.push_back({pending, done, b->filled, take});
      pending->parts++;
      b->filled += take;
      done += take;
      if (b->filled == n) full.push_back(std::move(open_));
    }
    pending->parts--;
    running_ += full.size();  // counted under the lock so ~Batcher cannot miss them
    // A batch opened by this call (earlier ones are in `full`, so the
    // pointer cannot be reused) needs the flusher to learn its deadline.
    opened = options_.flush_timeout_us >= 0 && open_ != nullptr && open_.get() != was_open;
  }
  if (opened) cv_.notify_all();
  for (auto& b : full) Launch(std::move(b));
}

// `batch` is already counted in running_.
void Batcher::Launch(std::unique_ptr<Batch> batch) {
  stats_->batches++;
  stats_->slots += batch->filled;
  std::vector<Tensor> args = batch->inputs;
  const int64_t n = options_.batch_size;
  for (Tensor& t : args) {  // zero the padding rows, or leave them out
    if (batch->filled == n) break;
    if (!options_.pad) {
      t = t.Slice(0, batch->filled);
      continue;
    }
    if (t.dtype() == DT_STRING) {
      auto f = t.flat<tstring>();
      int64_t per_row = t.NumElements() / n;
      for (int64_t i = batch->filled * per_row; i < f.size(); ++i) f(i) = "";
    } else {
      int64_t row_bytes = t.TotalBytes() / n;
      std::memset(const_cast<char*>(t.tensor_data().data()) + batch->filled * row_bytes, 0,
                  (n - batch->filled) * row_bytes);
    }
  }
  if (options_.pad_mask) {
    Tensor mask(DT_BOOL, TensorShape({n}));
    auto f = mask.flat<bool>();
    for (int64_t i = 0; i < n; ++i) f(i) = i < batch->filled;
    args.push_back(mask);
  }
  std::shared_ptr<Batch> shared(std::move(batch));
  run_(std::move(args), [this, shared](const absl::Status& s, const std::vector<Tensor>& outputs) {
    FinishBatch(*shared, s, outputs);
    std::lock_guard<std::mutex> lock(mu_);
    if (--running_ == 0) cv_.notify_all();
  });
}

// Hands each call its rows of the batch outputs; answers completed calls.
void Batcher::FinishBatch(const Batch& batch, const absl::Status& status, const std::vector<Tensor>& outputs) {
  for (const Segment& seg : batch.segments) {
    PendingCall* p = seg.call.get();
    if (status.ok() && seg.rows == p->rows) {  // the whole call in this batch: no staging copy
      if (options_.respond) {
        options_.respond(p->call, outputs, seg.batch_row, seg.rows);
        continue;
      }
      std::string body;
      SerializeRows(outputs, seg.batch_row, seg.rows, p->single, &body);
      p->call->Respond(std::move(body), {});
      continue;
    }
    bool complete;
    {
      std::lock_guard<std::mutex> lock(p->mu);
      if (!status.ok() && p->status.ok()) p->status = status;
      if (p->status.ok()) {
        if (p->outputs.empty()) {
          for (const Tensor& out : outputs) {
            TensorShape shape = out.shape();
            shape.set_dim(0, p->rows);
            p->outputs.emplace_back(out.dtype(), shape);
          }
        }
        for (size_t i = 0; i < outputs.size(); ++i) {
          CopyRows(outputs[i], seg.batch_row, &p->outputs[i], seg.call_row, seg.rows);
        }
      }
      complete = --p->parts == 0;
    }
    if (!complete) continue;
    if (!p->status.ok()) {
      stats_->errors++;
      Fail(p->call, p->status);
      continue;
    }
    if (p->single) {
      for (Tensor& t : p->outputs) {
        TensorShape element = t.shape();
        element.RemoveDim(0);
        Tensor squeezed;
        CHECK(squeezed.CopyFrom(t, element));
        t = squeezed;
      }
    }
    if (options_.respond) {
      options_.respond(p->call, p->outputs, 0, p->rows);
      continue;
    }
    Reply(p->call, p->outputs);
  }
}

void Batcher::Shutdown() {
  std::unique_ptr<Batch> batch;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return;
    closed_ = true;
    batch = std::move(open_);
  }
  cv_.notify_all();
  if (flusher_.joinable()) flusher_.join();
  if (batch) FinishBatch(*batch, absl::CancelledError("server shut down while the call waited for a batch"), {});
}

void Batcher::Drop(const std::shared_ptr<PendingCall>& call) {
  bool complete = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (open_ == nullptr) return;
    Batch& b = *open_;
    // A call's rows in the open batch are its last segment: at most one.
    auto seg = std::find_if(b.segments.begin(), b.segments.end(), [&](const Segment& s) { return s.call == call; });
    if (seg == b.segments.end()) return;  // not placed yet, or running: answered when its batch comes back
    const int64_t from = seg->batch_row + seg->rows;
    for (Tensor& t : b.inputs) CopyRows(t, from, &t, seg->batch_row, b.filled - from);
    for (auto later = seg + 1; later != b.segments.end(); ++later) later->batch_row -= seg->rows;
    b.filled -= seg->rows;
    b.segments.erase(seg);
    if (b.filled == 0) open_.reset();
    std::lock_guard<std::mutex> call_lock(call->mu);
    if (call->status.ok()) call->status = absl::CancelledError("the call was cancelled while it waited for a batch");
    complete = --call->parts == 0;
  }
  stats_->dropped++;
  if (complete) Fail(call->call, call->status);
}

// Runs the open batch once its flush timeout expired. It waits on the batch
// lock itself, so a batch opened between a check and the wait cannot be missed.
void Batcher::FlushLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!closed_) {
    if (open_ == nullptr) {
      cv_.wait(lock);
      continue;
    }
    // A batch replacing this one opened later, so waking at this deadline is never late.
    auto deadline = open_->opened + std::chrono::microseconds(options_.flush_timeout_us);
    if (Clock::now() < deadline) {
      cv_.wait_until(lock, deadline);
      continue;
    }
    std::unique_ptr<Batch> due = std::move(open_);
    ++running_;
    lock.unlock();
    Launch(std::move(due));
    lock.lock();
  }
}

}  // namespace seed_rpc
