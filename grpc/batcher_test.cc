// Unit test of the batcher against a fake ServerCall and a fake run callback:
// no gRPC, no FunctionLibraryRuntime. Prints "PASS <case>" or "FAIL <case>"
// per case and exits non-zero if any failed. Built by build_op.batcher_test_path().
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "cc_test.h"
#include "batcher.h"
#include "wire.h"

using namespace seed_rpc;      // NOLINT
using namespace tensorflow;    // NOLINT
using namespace std::chrono_literals;  // NOLINT

namespace {

// Records what the batcher answers; Cancel() plays the client going away.
class FakeCall : public seed_transport::ServerCall {
 public:
  const std::string& method() const override { return method_; }
  std::string TakeRequest() override { return {}; }
  void Respond(std::string body, const seed_transport::Status& status) override {
    std::lock_guard<std::mutex> lock(mu_);
    ++responses_;
    status_ = status;
    body_ = std::move(body);
    cv_.notify_all();
  }
  void OnCancel(std::function<void()> fn) override {
    std::unique_lock<std::mutex> lock(mu_);
    if (!cancelled_) {
      on_cancel_ = std::move(fn);
      return;
    }
    lock.unlock();
    fn();
  }
  void Cancel() {
    std::function<void()> fn;
    {
      std::lock_guard<std::mutex> lock(mu_);
      cancelled_ = true;
      fn = std::move(on_cancel_);
    }
    if (fn) fn();
  }
  // Whether an answer came within `timeout`.
  bool Wait(std::chrono::milliseconds timeout = 5000ms) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [this] { return responses_ > 0; });
  }
  int responses() {
    std::lock_guard<std::mutex> lock(mu_);
    return responses_;
  }
  seed_transport::Status status() {
    std::lock_guard<std::mutex> lock(mu_);
    return status_;
  }
  std::vector<Tensor> outputs() {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<Tensor> out;
    if (!ParseTensors(body_, &out).ok()) out.clear();
    return out;
  }

 private:
  std::string method_ = "/seed/test";
  std::mutex mu_;
  std::condition_variable cv_;
  int responses_ = 0;
  bool cancelled_ = false;
  seed_transport::Status status_;
  std::string body_;
  std::function<void()> on_cancel_;
};

// The run callback: records every batch; answers at once with outputs
// computed by `fn`, or holds the batch until Release() when `hold` is set.
struct FakeRun {
  std::function<absl::Status(const std::vector<Tensor>&, std::vector<Tensor>*)> fn =
      [](const std::vector<Tensor>& in, std::vector<Tensor>* out) {  // x -> 10 x
        Tensor y(DT_FLOAT, in[0].shape());
        for (int64_t i = 0; i < y.NumElements(); ++i) y.flat<float>()(i) = 10 * in[0].flat<float>()(i);
        out->push_back(y);
        return absl::OkStatus();
      };
  bool hold = false;
  std::mutex mu;
  std::vector<std::vector<Tensor>> batches;  // inputs of every run
  std::vector<RunDone> held;

  RunBatch callback() {
    return [this](std::vector<Tensor> inputs, RunDone done) {
      {
        std::lock_guard<std::mutex> lock(mu);
        batches.push_back(inputs);
        if (hold) {
          held.push_back(std::move(done));
          return;
        }
      }
      std::vector<Tensor> out;
      absl::Status s = fn(inputs, &out);
      done(s, out);
    };
  }
  int runs() {
    std::lock_guard<std::mutex> lock(mu);
    return static_cast<int>(batches.size());
  }
  void Release() {
    std::vector<RunDone> dones;
    std::vector<std::vector<Tensor>> inputs;
    {
      std::lock_guard<std::mutex> lock(mu);
      dones.swap(held);
      inputs.assign(batches.end() - dones.size(), batches.end());
    }
    for (size_t i = 0; i < dones.size(); ++i) {
      std::vector<Tensor> out;
      absl::Status s = fn(inputs[i], &out);
      dones[i](s, out);
    }
  }
};

BatcherOptions Options(int64_t batch_size, int64_t flush_timeout_us = -1, bool pad_mask = false,
                       int64_t width = 2) {
  BatcherOptions o;
  o.batch_size = batch_size;
  o.flush_timeout_us = flush_timeout_us;
  o.pad_mask = pad_mask;
  o.dtypes = {DT_FLOAT};
  o.element_shapes = {TensorShape({width})};
  return o;
}

// `rows` rows of `width` holding first, first + 1, ...
Tensor Rows(int64_t rows, float first, int64_t width = 2) {
  Tensor t(DT_FLOAT, TensorShape({rows, width}));
  for (int64_t i = 0; i < t.NumElements(); ++i) t.flat<float>()(i) = first + i;
  return t;
}

// Whether `call` got exactly one OK answer whose output 0 is 10 x `input`
// (`input` as sent: a row batch, or one element).
bool GotTenTimes(FakeCall& call, const Tensor& input) {
  if (!call.Wait() || call.responses() != 1 || !call.status().ok()) return false;
  std::vector<Tensor> out = call.outputs();
  if (out.empty() || out[0].shape() != input.shape()) return false;
  for (int64_t i = 0; i < input.NumElements(); ++i) {
    if (out[0].flat<float>()(i) != 10 * input.flat<float>()(i)) return false;
  }
  return true;
}

bool Failed(FakeCall& call, int code, const std::string& message_part) {
  return call.Wait() && call.responses() == 1 && call.status().code == code &&
         call.status().message.find(message_part) != std::string::npos;
}

// ------------------------------------------------------------------ cases ---

// Fewer rows than the batch size run once the flush timeout passed, with
// the padding zeroed (numbers and strings) and the pad mask marking real rows.
void PartialFlush() {
  constexpr int64_t kWidth = 1024;
  Stats stats;
  FakeRun run;
  BatcherOptions o = Options(4, /*flush_timeout_us=*/200000, /*pad_mask=*/true, kWidth);
  o.dtypes.push_back(DT_STRING);
  o.element_shapes.push_back(TensorShape({}));
  Batcher batcher(o, run.callback(), &stats);
  FakeCall a, b;
  Tensor a_x = Rows(1, 1, kWidth);
  a_x = a_x.SubSlice(0);  // one element, no batch dim
  Tensor a_s(DT_STRING, TensorShape({}));
  a_s.scalar<tstring>()() = "a";
  Tensor b_x = Rows(1, 5000, kWidth);
  Tensor b_s(DT_STRING, TensorShape({1}));
  b_s.flat<tstring>()(0) = "b";
  {  // freed memory the batch's tensors are likely to get: padding must not show it
    std::vector<Tensor> dirty;
    for (int k = 0; k < 64; ++k) {
      dirty.emplace_back(DT_FLOAT, TensorShape({4, kWidth}));
      for (int64_t i = 0; i < 4 * kWidth; ++i) dirty.back().flat<float>()(i) = -1;
    }
  }
  auto start = std::chrono::steady_clock::now();
  batcher.Enqueue(&a, {a_x, a_s}, 1, /*single=*/true);
  batcher.Enqueue(&b, {b_x, b_s}, 1, false);
  EXPECT_EQ(run.runs(), 0);  // 2 of 4 rows: waits for the timeout
  EXPECT(GotTenTimes(a, a_x));
  EXPECT(GotTenTimes(b, b_x));
  EXPECT(std::chrono::steady_clock::now() - start >= 190ms);
  REQUIRE(run.runs() == 1);
  const std::vector<Tensor>& in = run.batches[0];
  REQUIRE(in.size() == 3);  // x, s, pad mask
  bool rows_right = true;
  for (int64_t i = 0; i < 4 * kWidth; ++i) {
    float want = i < kWidth ? 1 + i : i < 2 * kWidth ? 5000 + i - kWidth : 0;
    rows_right &= in[0].flat<float>()(i) == want;
  }
  EXPECT(rows_right);
  const char* want_s[] = {"a", "b", "", ""};
  for (int i = 0; i < 4; ++i) EXPECT_EQ(std::string(in[1].flat<tstring>()(i)), std::string(want_s[i]));
  EXPECT_EQ(in[2].shape(), TensorShape({4}));
  const bool want_mask[] = {true, true, false, false};
  for (int i = 0; i < 4; ++i) EXPECT_EQ(in[2].flat<bool>()(i), want_mask[i]);
  EXPECT_EQ(stats.batches.load(), 1);
  EXPECT_EQ(stats.slots.load(), 2);
  EXPECT_EQ(stats.errors.load(), 0);
}

// A call split over two batches gets all its rows back, in order, once both ran.
void SpanningCall() {
  Stats stats;
  FakeRun run;
  run.hold = true;
  Batcher batcher(Options(4), run.callback(), &stats);
  FakeCall a, b, c;
  Tensor a_x = Rows(3, 0), b_x = Rows(3, 100), c_x = Rows(2, 200);
  batcher.Enqueue(&a, {a_x}, 3, false);
  batcher.Enqueue(&b, {b_x}, 3, false);  // 1 row in batch 1, 2 in batch 2
  EXPECT_EQ(run.runs(), 1);
  run.Release();
  EXPECT(GotTenTimes(a, a_x));
  EXPECT_EQ(b.responses(), 0);  // its second part has not run yet
  batcher.Enqueue(&c, {c_x}, 2, false);
  EXPECT_EQ(run.runs(), 2);
  run.Release();
  EXPECT(GotTenTimes(b, b_x));
  EXPECT(GotTenTimes(c, c_x));
  EXPECT_EQ(stats.batches.load(), 2);
  EXPECT_EQ(stats.slots.load(), 8);
}

// More rows than the batch size (or none) is refused without running anything.
void Overflow() {
  Stats stats;
  FakeRun run;
  Batcher batcher(Options(4), run.callback(), &stats);
  FakeCall big, empty;
  batcher.Enqueue(&big, {Rows(5, 0)}, 5, false);
  batcher.Enqueue(&empty, {Rows(0, 0)}, 0, false);
  EXPECT(Failed(big, static_cast<int>(absl::StatusCode::kInvalidArgument), "carries 5 rows but the batch size is 4"));
  EXPECT(Failed(empty, static_cast<int>(absl::StatusCode::kInvalidArgument), "carries 0 rows"));
  EXPECT_EQ(run.runs(), 0);
  EXPECT_EQ(stats.errors.load(), 2);
}

// A call of exactly batch_size rows runs at once on its own tensors (no
// staging copy), with an all-true pad mask.
void WholeBatch() {
  Stats stats;
  FakeRun run;
  Batcher batcher(Options(4, /*flush_timeout_us=*/-1, /*pad_mask=*/true), run.callback(), &stats);
  FakeCall a;
  Tensor a_x = Rows(4, 7);
  batcher.Enqueue(&a, {a_x}, 4, false);
  EXPECT(GotTenTimes(a, a_x));
  REQUIRE(run.runs() == 1);
  EXPECT(run.batches[0][0].tensor_data().data() == a_x.tensor_data().data());
  for (int i = 0; i < 4; ++i) EXPECT(run.batches[0][1].flat<bool>()(i));
}

// A failing run answers every caller in its batches with its status, once.
void RunError() {
  Stats stats;
  FakeRun run;
  run.fn = [](const std::vector<Tensor>&, std::vector<Tensor>*) { return absl::InternalError("boom"); };
  Batcher batcher(Options(2), run.callback(), &stats);
  FakeCall a, b, c;
  batcher.Enqueue(&a, {Rows(1, 0)}, 1, false);
  batcher.Enqueue(&b, {Rows(2, 10)}, 2, false);  // spans both batches
  batcher.Enqueue(&c, {Rows(1, 20)}, 1, false);
  const int internal = static_cast<int>(absl::StatusCode::kInternal);
  EXPECT(Failed(a, internal, "boom"));
  EXPECT(Failed(b, internal, "boom"));
  EXPECT(Failed(c, internal, "boom"));
  EXPECT_EQ(run.runs(), 2);
  EXPECT_EQ(stats.errors.load(), 3);
}

// A call spanning a batch that succeeds and one that fails gets the error,
// not half its rows; the other callers get their own batch's outcome.
void RunErrorSpanning() {
  Stats stats;
  FakeRun run;
  run.hold = true;
  Batcher batcher(Options(2), run.callback(), &stats);
  FakeCall a, b, c;
  batcher.Enqueue(&a, {Rows(1, 0)}, 1, false);
  batcher.Enqueue(&b, {Rows(2, 10)}, 2, false);  // 1 row in batch 1, 1 in batch 2
  batcher.Enqueue(&c, {Rows(1, 20)}, 1, false);
  REQUIRE(run.runs() == 2);
  RunDone first, second;
  {
    std::lock_guard<std::mutex> lock(run.mu);
    first = run.held[0];
    second = run.held[1];
    run.held.clear();
  }
  std::vector<Tensor> out;
  REQUIRE(run.fn(run.batches[0], &out).ok());
  first(absl::OkStatus(), out);
  second(absl::InternalError("boom"), {});
  EXPECT(GotTenTimes(a, Rows(1, 0)));
  EXPECT(Failed(b, static_cast<int>(absl::StatusCode::kInternal), "boom"));
  EXPECT(Failed(c, static_cast<int>(absl::StatusCode::kInternal), "boom"));
  EXPECT_EQ(stats.errors.load(), 2);
}

// A call cancelled while it waits in the open batch is taken out of it at
// once (answered Cancelled, once), the rows behind it move up, and the
// batch runs with the others only; a cancelled call whose first rows already
// run loses its waiting rows and is answered once, when that run comes back.
void CancelWhileWaiting() {
  Stats stats;
  FakeRun run;
  run.hold = true;
  Batcher batcher(Options(4, /*flush_timeout_us=*/100000), run.callback(), &stats);
  const int cancelled = static_cast<int>(absl::StatusCode::kCancelled);
  FakeCall a, b, c;
  batcher.Enqueue(&a, {Rows(1, 0)}, 1, false);
  batcher.Enqueue(&b, {Rows(1, 10)}, 1, false);
  a.Cancel();
  EXPECT(Failed(a, cancelled, "cancelled while it waited for a batch"));
  batcher.Enqueue(&c, {Rows(3, 20)}, 3, false);  // b + c fill the batch: a's row is gone
  REQUIRE(run.runs() == 1);
  const Tensor& in = run.batches[0][0];
  bool rows_right = true;
  for (int64_t i = 0; i < in.NumElements(); ++i) rows_right &= in.flat<float>()(i) == (i < 2 ? 10 + i : 20 + i - 2);
  EXPECT(rows_right);
  run.Release();
  EXPECT(GotTenTimes(b, Rows(1, 10)));
  EXPECT(GotTenTimes(c, Rows(3, 20)));

  FakeCall d, e, f;
  batcher.Enqueue(&d, {Rows(3, 30)}, 3, false);
  batcher.Enqueue(&e, {Rows(3, 40)}, 3, false);  // 1 row runs (held), 2 wait
  REQUIRE(run.runs() == 2);
  e.Cancel();
  batcher.Enqueue(&f, {Rows(1, 50)}, 1, false);  // takes row 0 of the open batch
  EXPECT(!e.Wait(50ms));                          // its first row still runs
  run.Release();
  EXPECT(GotTenTimes(d, Rows(3, 30)));
  EXPECT(Failed(e, cancelled, "cancelled while it waited"));
  std::this_thread::sleep_for(150ms);  // f's batch is flushed alone after the timeout
  REQUIRE(run.runs() == 3);
  run.Release();
  EXPECT(GotTenTimes(f, Rows(1, 50)));
  EXPECT_EQ(run.batches[2][0].flat<float>()(0), 50.0f);

  FakeCall g;  // the only call of a batch: nothing is left to run
  batcher.Enqueue(&g, {Rows(1, 60)}, 1, false);
  g.Cancel();
  EXPECT(Failed(g, cancelled, "cancelled while it waited"));
  std::this_thread::sleep_for(150ms);
  EXPECT_EQ(run.runs(), 3);
  EXPECT_EQ(stats.dropped.load(), 3);
  for (FakeCall* call : {&a, &b, &c, &d, &e, &f, &g}) EXPECT_EQ(call->responses(), 1);
}

// Shutdown answers calls waiting in the open batch with Cancelled at once,
// wakes and joins the flusher (its timeout is long), refuses later calls;
// a call with rows in a running batch is answered (once) when it comes back,
// and the destructor waits for that.
void ShutdownWithPending() {
  Stats stats;
  FakeRun run;
  run.hold = true;
  auto batcher = std::make_unique<Batcher>(Options(4, /*flush_timeout_us=*/10000000), run.callback(), &stats);
  FakeCall a, s, b, late;
  batcher->Enqueue(&a, {Rows(2, 0)}, 2, false);
  batcher->Enqueue(&s, {Rows(3, 10)}, 3, false);  // 2 rows run (held), 1 waits
  Tensor b_x(DT_FLOAT, TensorShape({2}));
  batcher->Enqueue(&b, {b_x}, 1, true);
  REQUIRE(run.runs() == 1);
  auto shutdown = std::async(std::launch::async, [&] { batcher->Shutdown(); });
  if (shutdown.wait_for(5s) != std::future_status::ready) {
    std::printf("  Shutdown hung\n");
    std::_Exit(1);  // cannot join a hung thread
  }
  const int cancelled = static_cast<int>(absl::StatusCode::kCancelled);
  EXPECT(Failed(b, cancelled, "server shut down while the call waited for a batch"));
  EXPECT_EQ(s.responses(), 0);  // its first part is still running
  batcher->Enqueue(&late, {Rows(1, 0)}, 1, false);
  EXPECT(Failed(late, static_cast<int>(absl::StatusCode::kUnavailable), "shutting down"));
  auto destroy = std::async(std::launch::async, [&] { batcher.reset(); });
  EXPECT(destroy.wait_for(50ms) == std::future_status::timeout);  // waits for the running batch
  run.Release();
  if (destroy.wait_for(5s) != std::future_status::ready) {
    std::printf("  ~Batcher hung\n");
    std::_Exit(1);
  }
  EXPECT(GotTenTimes(a, Rows(2, 0)));
  EXPECT(Failed(s, cancelled, "server shut down while the call waited for a batch"));
  EXPECT_EQ(run.runs(), 1);
  EXPECT_EQ(stats.errors.load(), 3);  // b, s, late
}

}  // namespace

int main() {
  const std::vector<std::pair<const char*, void (*)()>> cases = {
      {"partial_flush", PartialFlush},
      {"spanning_call", SpanningCall},
      {"overflow", Overflow},
      {"whole_batch", WholeBatch},
      {"run_error", RunError},
      {"run_error_spanning", RunErrorSpanning},
      {"cancel_while_waiting", CancelWhileWaiting},
      {"shutdown_with_pending", ShutdownWithPending},
  };
  return seed_cc_test::RunCases(cases);
}
