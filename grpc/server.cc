#include "server.h"

#include <cstring>
#include <sstream>

#include "validate.h"
#include "wire.h"

namespace seed_rpc {

using namespace tensorflow;  // NOLINT: TF-heavy code reads better unqualified.

namespace {

constexpr char kMethodPrefix[] = "/seed/";
constexpr char kListMethods[] = "__methods__";

}  // namespace

absl::Status RpcServer::Bind(std::unique_ptr<Method> method, BoundFunction fn, bool append) {
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
    // A batch runs like an unbatched call; its outputs must have batch_size rows.
    Method* m = method.get();
    BatcherOptions options;
    options.batch_size = m->batch_size;
    options.flush_timeout_us = m->flush_timeout_us;
    options.pad_mask = m->pad_mask;
    options.dtypes.assign(m->input_dtypes.begin(), m->input_dtypes.begin() + m->client_inputs());
    options.element_shapes.assign(m->element_shapes.begin(), m->element_shapes.begin() + m->client_inputs());
    auto run = [this, m](std::vector<Tensor> args, RunDone done) {
      Run(m, std::move(args), nullptr, [m, done](const absl::Status& s, std::vector<Tensor>* rets) {
        done(s.ok() ? CheckOutputs(*m, *rets, m->batch_size) : s, *rets);
      });
    };
    m->batcher = std::make_unique<Batcher>(std::move(options), std::move(run), &m->stats);
  }
  std::string name = method->name;
  methods_[name] = std::move(method);
  return absl::OkStatus();
}

absl::Status RpcServer::Start(std::vector<int>* ports) {
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
  options.security = security_;
  options.log = [](const std::string& line) { LOG(WARNING) << "tensor-RPC server: " << line; };
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

void RpcServer::Shutdown() {
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

void RpcServer::Complete(const std::string& message) {
  std::lock_guard<std::mutex> lock(complete_mu_);
  if (complete_) return;
  complete_message_ = message;
  complete_ = true;
}

std::string RpcServer::StatsJson() {
  std::ostringstream os;
  int64_t refused = 0, running = 0;
  seed_transport::StreamStats streams;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (transport_ != nullptr) {
      refused = transport_->refused_calls();
      streams = transport_->stream_stats();
    }
  }
  {
    std::lock_guard<std::mutex> lock(runs_mu_);
    running = running_;
  }
  os << "{\"__server__\": {\"refused_calls\": " << refused << ", \"complete\": " << (complete_ ? 1 : 0)
     << ", \"completed_calls\": " << completed_calls_.load() << ", \"running\": " << running
     << ", \"streams_open\": " << streams.open << ", \"streams_opened\": " << streams.opened
     << ", \"stream_calls\": " << streams.calls << ", \"calls_per_stream\": "
     << (streams.opened > 0 ? static_cast<double>(streams.calls) / streams.opened : 0.0) << "}";
  bool first = false;
  for (auto& [name, m] : methods_) {
    if (!first) os << ", ";
    first = false;
    int64_t batches = m->stats.batches.load(), slots = m->stats.slots.load();
    double fill = (m->batch_size > 0 && batches > 0)
                      ? static_cast<double>(slots) / (batches * m->batch_size) : 0.0;
    os << "\"" << name << "\": {\"calls\": " << m->stats.calls.load()
       << ", \"errors\": " << m->stats.errors.load() << ", \"dropped\": " << m->stats.dropped.load()
       << ", \"batches\": " << batches
       << ", \"slots\": " << slots << ", \"batch_size\": " << m->batch_size
       << ", \"mean_batch_fill\": " << fill << ", \"function_runs\": [";
    for (size_t i = 0; i < m->functions.size(); ++i) os << (i ? ", " : "") << m->functions[i].runs->load();
    os << "]}";
  }
  os << "}";
  return os.str();
}

void RpcServer::Handle(seed_transport::ServerCall* call) {
  if (!accepting_) return Fail(call, absl::UnavailableError("server is shutting down"));
  if (complete_) {
    completed_calls_++;
    return Fail(call, absl::OutOfRangeError(complete_message_));
  }
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

void RpcServer::ListMethods(seed_transport::ServerCall* call) {
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

absl::Status RpcServer::Validate(const Method& m, const std::vector<Tensor>& inputs, int64_t* rows, bool* single) {
  return ValidateCall({m.name, m.client_inputs(), m.input_dtypes, m.input_shapes, m.element_shapes, m.input_names,
                       m.batch_size},
                      inputs, rows, single);
}

void RpcServer::Run(Method* m, std::vector<Tensor> args, seed_transport::ServerCall* call,
                    std::function<void(const absl::Status&, std::vector<Tensor>*)> done) {
  const BoundFunction& fn = m->functions[m->next_function.fetch_add(1) % m->functions.size()];
  {
    std::lock_guard<std::mutex> lock(runs_mu_);
    ++running_;
  }
  auto self = shared_from_this();
  RunBound(fn, std::move(args), &cancellation_, call,
           [self, done = std::move(done)](const absl::Status& s, std::vector<Tensor>* rets) {
             // A run that failed because the run completed under it (the learner closed its
             // queues after Complete) answers like every later call: "run complete", not Cancelled.
             done(!s.ok() && self->complete_ ? absl::OutOfRangeError(self->complete_message_) : s, rets);
             std::lock_guard<std::mutex> lock(self->runs_mu_);
             if (--self->running_ == 0) self->runs_cv_.notify_all();
           });
}

void RpcServer::RunUnbatched(Method* m, seed_transport::ServerCall* call, std::vector<Tensor> inputs) {
  Run(m, std::move(inputs), call, [this, m, call](const absl::Status& s, std::vector<Tensor>* rets) {
    absl::Status status = s.ok() ? CheckOutputs(*m, *rets, -1) : s;
    if (!status.ok()) {
      m->stats.errors++;
      return Fail(call, status);
    }
    Reply(call, *rets);
  });
}

absl::Status RpcServer::CheckOutputs(const Method& m, const std::vector<Tensor>& rets, int64_t batch) {
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

}  // namespace seed_rpc
