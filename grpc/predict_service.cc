#include "predict_service.h"

#include <algorithm>
#include <chrono>
#include <set>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace seed_rpc {

using namespace tensorflow;  // NOLINT

namespace {

constexpr char kDefaultSignature[] = "serving_default";

absl::Status Invalid(const std::string& m) { return absl::InvalidArgumentError(m); }

// Names as TF Serving's messages list them: {a, b}.
std::string Braces(std::vector<std::string> names) {
  std::sort(names.begin(), names.end());
  return "{" + absl::StrJoin(names, ", ") + "}";
}

std::string ShapeText(const PartialTensorShape& s) {
  if (s.unknown_rank()) return "<unknown rank>";
  std::vector<std::string> dims;
  for (int64_t d : s.dim_sizes()) dims.push_back(d < 0 ? "?" : std::to_string(d));
  return "[" + absl::StrJoin(dims, ",") + "]";
}

std::string ValueShapeText(const TensorShape& s) { return "[" + absl::StrJoin(s.dim_sizes(), ", ") + "]"; }

}  // namespace

// A signature of a published version, with its batchers (one per input element shape).
struct SignatureEntry {
  ServingSignature sig;
  Stats stats;
  std::mutex mu;
  std::map<std::string, std::unique_ptr<Batcher>> batchers;
};

struct PredictService::Version {
  std::string model;
  int64_t version = 0;
  std::map<std::string, std::shared_ptr<SignatureEntry>> signatures;
  std::string metadata;
  std::shared_ptr<ModelCounters> counters;
  ~Version() {
    for (auto& [name, entry] : signatures) {
      std::lock_guard<std::mutex> lock(entry->mu);
      entry->batchers.clear();  // each waits for its running batches
    }
  }
};

namespace {

// A Predict in flight: answers its transport call with a PredictResponse and
// holds its version (and so its function and variables) until then.
class PredictCall final : public seed_transport::ServerCall {
 public:
  PredictCall(seed_transport::ServerCall* inner, std::shared_ptr<PredictService::Version> version,
              const SignatureEntry* entry, std::vector<int> outputs, std::atomic<int64_t>* in_flight)
      : inner_(inner), version_(std::move(version)), entry_(entry), outputs_(std::move(outputs)),
        in_flight_(in_flight) {
    in_flight_->fetch_add(1);
  }
  const std::string& method() const override { return inner_->method(); }
  std::string TakeRequest() override { return inner_->TakeRequest(); }
  void OnCancel(std::function<void()> fn) override { inner_->OnCancel(std::move(fn)); }
  void Respond(std::string body, const seed_transport::Status& status) override {
    if (!status.ok()) version_->counters->errors++;
    inner_->Respond(std::move(body), status);
    Done();
  }

  // Rows [first, first + rows) of `outputs` (rows < 0: all of them).
  void RespondTensors(const std::vector<Tensor>& outputs, int64_t first, int64_t rows) {
    const ServingSignature& sig = entry_->sig;
    if (outputs.size() != sig.output_names.size()) {
      return Fail(this, absl::InternalError(absl::StrCat("the signature function returned ", outputs.size(),
                                                         " outputs, expected ", sig.output_names.size())));
    }
    std::vector<std::string> names;
    std::vector<Tensor> tensors;
    for (int i : outputs_) {
      names.push_back(sig.output_names[i]);
      if (rows < 0 || (first == 0 && outputs[i].dim_size(0) == rows)) {
        tensors.push_back(outputs[i]);
      } else {
        tensors.push_back(outputs[i].Slice(first, first + rows));
      }
    }
    if (rows >= 0 && !outputs.empty() && outputs[0].dim_size(0) > rows) version_->counters->batched_requests++;
    inner_->Respond(SerializePredictResponse(version_->model, version_->version, sig.name, names, tensors), {});
    Done();
  }

 private:
  void Done() {
    in_flight_->fetch_sub(1);
    delete this;
  }
  seed_transport::ServerCall* inner_;
  std::shared_ptr<PredictService::Version> version_;
  const SignatureEntry* entry_;
  std::vector<int> outputs_;
  std::atomic<int64_t>* in_flight_;
};

// Checks a request's inputs against the signature; `args` in the function's order.
absl::Status ValidateInputs(const ServingSignature& sig, std::vector<std::pair<std::string, Tensor>> given, std::vector<Tensor>* args) {
  std::vector<std::string> extra, missing;
  std::set<std::string> expected(sig.input_names.begin(), sig.input_names.end());
  for (const auto& [name, t] : given) {
    if (!expected.count(name)) extra.push_back(name);
  }
  for (const std::string& name : sig.input_names) {
    bool found = std::any_of(given.begin(), given.end(), [&](const auto& g) { return g.first == name; });
    if (!found) missing.push_back(name);
  }
  if (!extra.empty() || !missing.empty()) {
    return Invalid(absl::StrCat("Request inputs do not match required inputs for signature `", sig.name,
                                "`. Send extra: ", Braces(extra), ". Missing but required: ", Braces(missing), "."));
  }
  for (size_t i = 0; i < sig.input_names.size(); ++i) {
    const std::string& name = sig.input_names[i];
    auto it = std::find_if(given.begin(), given.end(), [&](const auto& g) { return g.first == name; });
    Tensor& t = it->second;
    if (t.dtype() != sig.input_dtypes[i]) {
      return Invalid(absl::StrCat("input '", name, "' has dtype ", DtypeName(t.dtype()),
                                  " but the signature expects ", DtypeName(sig.input_dtypes[i])));
    }
    if (!sig.input_shapes[i].IsCompatibleWith(t.shape())) {
      return Invalid(absl::StrCat("input '", name, "' has shape ", ValueShapeText(t.shape()),
                                  " but the signature expects ", ShapeText(sig.input_shapes[i])));
    }
    args->push_back(std::move(t));
  }
  return absl::OkStatus();
}

// The shared leading dimension of the inputs if the call may join a batch (else 0).
int64_t BatchRows(const ServingSignature& sig, const std::vector<Tensor>& args, int64_t max_rows) {
  if (!sig.batchable || args.empty()) return 0;
  int64_t rows = -1;
  for (const Tensor& t : args) {
    if (t.dims() == 0) return 0;
    if (rows >= 0 && t.dim_size(0) != rows) return 0;
    rows = t.dim_size(0);
  }
  return rows >= 1 && rows <= max_rows ? rows : 0;
}

}  // namespace

std::shared_ptr<ModelCounters> PredictService::Counters(const std::string& model) {
  auto& c = counters_[model];
  if (c == nullptr) c = std::make_shared<ModelCounters>();
  return c;
}

void PredictService::Stage(const std::string& model, int64_t version, std::unique_ptr<ServingSignature> signature) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& v = staged_[{model, version}];
  if (v == nullptr) {
    v = std::make_shared<Version>();
    v->model = model;
    v->version = version;
    v->counters = Counters(model);
  }
  auto entry = std::make_shared<SignatureEntry>();
  entry->sig = std::move(*signature);
  std::string name = entry->sig.name;
  v->signatures[name] = std::move(entry);
}

absl::Status PredictService::Publish(const std::string& model, int64_t version, std::string signature_def_map) {
  std::shared_ptr<Version> old;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = staged_.find({model, version});
    if (it == staged_.end()) {
      return absl::FailedPreconditionError(absl::StrCat("no signature staged for ", model, " version ", version));
    }
    it->second->metadata = std::move(signature_def_map);
    auto& slot = models_[model].versions[version];
    old = std::move(slot);
    slot = std::move(it->second);
    staged_.erase(it);
  }
  return absl::OkStatus();  // `old` (a reload of the same version) is released once its requests are answered
}

bool PredictService::Unpublish(const std::string& model, int64_t version, int64_t timeout_ms) {
  std::shared_ptr<Version> v;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto m = models_.find(model);
    if (m == models_.end()) return true;
    auto it = m->second.versions.find(version);
    if (it == m->second.versions.end()) return true;
    v = std::move(it->second);
    m->second.versions.erase(it);
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (v.use_count() > 1) {
    if (std::chrono::steady_clock::now() > deadline) return false;  // its last request frees it, not this
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  // No request holds it: its batchers end (with their running batches), then the instantiated
  // functions go; left alone, each version would keep its graphs and constants in the runtime.
  for (auto& [name, entry] : v->signatures) {
    {
      std::lock_guard<std::mutex> lock(entry->mu);
      entry->batchers.clear();
    }
    ReleaseBound(&entry->sig.fn);
  }
  return true;
}

void PredictService::SetModels(const std::map<std::string, std::map<std::string, int64_t>>& labels_by_model) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = models_.begin(); it != models_.end();) {
    it = labels_by_model.count(it->first) ? std::next(it) : models_.erase(it);
  }
  for (const auto& [name, labels] : labels_by_model) models_[name].labels = labels;
}

absl::Status PredictService::Resolve(const ModelSpec& spec, std::shared_ptr<Version>* out) {
  if (spec.name.empty()) return Invalid("Missing ModelSpec: the request names no model");
  bool has_version = spec.has_version;
  int64_t version = spec.version;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto m = models_.find(spec.name);
    if (m != models_.end()) {
      if (has_version && !spec.version_label.empty()) {
        return Invalid("a request may give a version or a version_label, not both");
      }
      if (!spec.version_label.empty()) {
        auto label = m->second.labels.find(spec.version_label);
        if (label == m->second.labels.end()) {
          return Invalid("Unrecognized servable version label: " + spec.version_label);
        }
        has_version = true;
        version = label->second;
      }
      const auto& versions = m->second.versions;
      if (!has_version && !versions.empty()) {
        *out = versions.rbegin()->second;
        return absl::OkStatus();
      }
      auto v = versions.find(version);
      if (has_version && v != versions.end()) {
        *out = v->second;
        return absl::OkStatus();
      }
    }
  }
  return absl::NotFoundError(has_version
                                 ? absl::StrCat("Servable not found for request: Specific(", spec.name, ", ", version, ")")
                                 : absl::StrCat("Servable not found for request: Latest(", spec.name, ")"));
}

void PredictService::Handle(seed_transport::ServerCall* call) {
  if (!accepting_) return Fail(call, absl::UnavailableError("server is shutting down"));
  const std::string method = call->method().substr(strlen(kPredictionService));
  if (method == "Predict") return Predict(call);
  if (method == "GetModelMetadata") return Metadata(call);
  Fail(call, absl::UnimplementedError(method + " is not implemented by seed.serve; use Predict with the model's signature"));
}

void PredictService::Predict(seed_transport::ServerCall* call) {
  const std::string body = call->TakeRequest();
  PredictRequest request;
  absl::Status s = ParsePredictRequest(body, &request);
  std::shared_ptr<Version> version;
  if (s.ok()) s = Resolve(request.spec, &version);
  if (!s.ok()) return Fail(call, s);
  version->counters->requests++;
  auto fail = [&](const absl::Status& status) {
    version->counters->errors++;
    Fail(call, status);
  };
  const std::string& sig_name = request.spec.signature_name.empty() ? kDefaultSignature : request.spec.signature_name;
  auto sig_it = version->signatures.find(sig_name);
  if (sig_it == version->signatures.end()) {
    std::vector<std::string> names;
    for (const auto& [n, e] : version->signatures) names.push_back(n);
    return fail(Invalid(absl::StrCat("Serving signature name: \"", sig_name, "\" not found in signature def (model ",
                                     version->model, " version ", version->version, " has ", Braces(names), ")")));
  }
  SignatureEntry* entry = sig_it->second.get();
  const ServingSignature& sig = entry->sig;
  std::vector<std::pair<std::string, Tensor>> given;
  for (const auto& [alias, bytes] : request.inputs) {
    Tensor t;
    s = TensorFromProtoBytes(alias, bytes, &t);
    if (!s.ok()) return fail(s);
    given.emplace_back(alias, std::move(t));
  }
  std::vector<Tensor> args;
  s = ValidateInputs(sig, std::move(given), &args);
  if (!s.ok()) return fail(s);
  std::vector<int> outputs;
  if (request.output_filter.empty()) {
    for (size_t i = 0; i < sig.output_names.size(); ++i) outputs.push_back(i);
  }
  for (const std::string& name : request.output_filter) {
    auto it = std::find(sig.output_names.begin(), sig.output_names.end(), name);
    if (it == sig.output_names.end()) {
      return fail(Invalid(absl::StrCat("output tensor alias not found in signature: ", name,
                                       ". Outputs expected to be in the set ", Braces(sig.output_names), ".")));
    }
    outputs.push_back(it - sig.output_names.begin());
  }
  auto* predict = new PredictCall(call, version, entry, std::move(outputs), &in_flight_);
  std::shared_ptr<ModelCounters> counters = version->counters;
  const int64_t rows = batching_.enabled ? BatchRows(sig, args, batching_.max_batch_size) : 0;
  Batcher* batcher = nullptr;
  if (rows > 0) {
    std::string key;
    for (const Tensor& t : args) {  // the element shapes (rows vary between calls)
      for (int d = 1; d < t.dims(); ++d) absl::StrAppend(&key, t.dim_size(d), ",");
      key += ";";
    }
    std::lock_guard<std::mutex> lock(entry->mu);
    auto& b = entry->batchers[key];
    if (b == nullptr && entry->batchers.size() <= 16) {  // a bounded set of shapes per signature
      BatcherOptions options;
      options.batch_size = batching_.max_batch_size;
      options.flush_timeout_us = batching_.timeout_us;
      options.pad = false;
      options.dtypes = sig.input_dtypes;
      for (const Tensor& t : args) {
        TensorShape element = t.shape();
        element.RemoveDim(0);
        options.element_shapes.push_back(element);
      }
      options.respond = [](seed_transport::ServerCall* c, const std::vector<Tensor>& outs, int64_t first,
                           int64_t n) { static_cast<PredictCall*>(c)->RespondTensors(outs, first, n); };
      auto run = [this, entry, counters](std::vector<Tensor> batch_args, RunDone done) {
        counters->runs++;
        const int64_t filled = batch_args[0].dim_size(0);
        RunBound(entry->sig.fn, std::move(batch_args), &cancellation_, nullptr,
                 [entry, filled, done](const absl::Status& s, std::vector<Tensor>* rets) {
                   absl::Status status = s;
                   for (size_t i = 0; status.ok() && i < rets->size(); ++i) {
                     const Tensor& out = (*rets)[i];
                     if (out.dims() == 0 || out.dim_size(0) != filled) {
                       status = Invalid(absl::StrCat(
                           "batching: output '", entry->sig.output_names[i], "' has shape ",
                           ValueShapeText(out.shape()), ", whose 0th dimension does not equal the batch size ",
                           filled, "; serve this model without --enable_batching"));
                     }
                   }
                   done(status, *rets);
                 });
      };
      b = std::make_unique<Batcher>(std::move(options), std::move(run), &entry->stats);
    }
    batcher = b.get();
  }
  if (batcher != nullptr) return batcher->Enqueue(predict, args, rows, /*single=*/false);
  counters->runs++;
  RunBound(sig.fn, std::move(args), &cancellation_, predict,
           [predict](const absl::Status& s, std::vector<Tensor>* rets) {
             if (!s.ok()) return Fail(predict, s);
             predict->RespondTensors(*rets, 0, -1);
           });
}

void PredictService::Metadata(seed_transport::ServerCall* call) {
  MetadataRequest request;
  absl::Status s = ParseMetadataRequest(call->TakeRequest(), &request);
  if (s.ok() && request.fields.empty()) s = Invalid("GetModelMetadataRequest must specify at least one metadata_field");
  for (const std::string& f : request.fields) {
    if (s.ok() && f != "signature_def") s = Invalid("Metadata field " + f + " is not supported");
  }
  std::shared_ptr<Version> version;
  if (s.ok()) s = Resolve(request.spec, &version);
  if (!s.ok()) return Fail(call, s);
  call->Respond(SerializeMetadataResponse(version->model, version->version, version->metadata), {});
}

void PredictService::Shutdown() {
  if (!accepting_.exchange(false)) return;
  std::vector<std::shared_ptr<Version>> versions;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [name, m] : models_) {
      for (auto& [n, v] : m.versions) versions.push_back(v);
    }
  }
  for (auto& v : versions) {
    for (auto& [name, entry] : v->signatures) {
      std::lock_guard<std::mutex> lock(entry->mu);
      for (auto& [key, b] : entry->batchers) b->Shutdown();
    }
  }
  cancellation_.StartCancel();
  // Cancelled runs come back promptly; a bounded wait all the same.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (in_flight_.load() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

std::string PredictService::StatsJson() {
  std::lock_guard<std::mutex> lock(mu_);
  std::ostringstream os;
  os << "{";
  bool first = true;
  for (const auto& [name, c] : counters_) {
    std::string escaped;
    for (char ch : name) {
      if (ch == '"' || ch == '\\') escaped += '\\';
      if (static_cast<unsigned char>(ch) >= 0x20) escaped += ch;
    }
    os << (first ? "" : ", ") << "\"" << escaped << "\": {\"requests\": " << c->requests.load()
       << ", \"runs\": " << c->runs.load() << ", \"batched_requests\": " << c->batched_requests.load()
       << ", \"errors\": " << c->errors.load() << "}";
    first = false;
  }
  os << "}";
  return os.str();
}

}  // namespace seed_rpc
