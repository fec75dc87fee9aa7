// tensorflow.serving.PredictionService in C++ (TensorFlow side, no gRPC):
// Predict and GetModelMetadata against the versions the Python model manager
// publishes here, each signature a bound function run with no Python.
// Versions come and go while serving: a request holds its version until it is
// answered, and Unpublish waits for those requests before returning.
#pragma once

#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "batcher.h"
#include "function_run.h"
#include "predict_proto.h"
#include "transport.h"

namespace seed_rpc {

constexpr char kPredictionService[] = "/tensorflow.serving.PredictionService/";

struct ServingSignature {
  std::string name;
  std::vector<std::string> input_names;  // the bound function's positional order
  tensorflow::DataTypeVector input_dtypes;
  std::vector<tensorflow::PartialTensorShape> input_shapes;
  std::vector<std::string> output_names;  // the function's output order
  tensorflow::DataTypeVector output_dtypes;
  bool batchable = false;  // every input has an open leading dimension
  BoundFunction fn;
};

struct BatchingOptions {
  bool enabled = false;
  int64_t max_batch_size = 32;
  int64_t timeout_us = 1000;
};

// Counters per model, as the REST metrics report them.
struct ModelCounters {
  std::atomic<int64_t> requests{0}, runs{0}, batched_requests{0}, errors{0};
};

class PredictService {
 public:
  explicit PredictService(BatchingOptions batching) : batching_(batching) {}
  ~PredictService() { Shutdown(); }

  // Adds a signature to a version not yet published.
  void Stage(const std::string& model, int64_t version, std::unique_ptr<ServingSignature> signature);
  // Makes the staged version visible with its SignatureDefMap (serialized) for GetModelMetadata.
  absl::Status Publish(const std::string& model, int64_t version, std::string signature_def_map);
  // Removes a version; returns once no request holds it (or after `timeout_ms`: false).
  bool Unpublish(const std::string& model, int64_t version, int64_t timeout_ms);
  // The configured models and their labels; versions of models not listed are removed.
  void SetModels(const std::map<std::string, std::map<std::string, int64_t>>& labels_by_model);

  // Answers `call` (a PredictionService method).
  void Handle(seed_transport::ServerCall* call);
  // Cancels running functions and waiting batch slots; later calls get Unavailable.
  void Shutdown();
  std::string StatsJson();

  struct Version;

 private:
  // The version a request names, or NOT_FOUND / INVALID_ARGUMENT as TF Serving words them.
  absl::Status Resolve(const ModelSpec& spec, std::shared_ptr<Version>* out);
  std::shared_ptr<ModelCounters> Counters(const std::string& model);
  void Predict(seed_transport::ServerCall* call);
  void Metadata(seed_transport::ServerCall* call);

  const BatchingOptions batching_;
  std::mutex mu_;  // guards the maps below
  struct Model {
    std::map<int64_t, std::shared_ptr<Version>> versions;
    std::map<std::string, int64_t> labels;
  };
  std::map<std::string, Model> models_;
  std::map<std::pair<std::string, int64_t>, std::shared_ptr<Version>> staged_;
  std::map<std::string, std::shared_ptr<ModelCounters>> counters_;
  std::atomic<bool> accepting_{true};
  std::atomic<int64_t> in_flight_{0};  // Predict calls not yet answered
  tensorflow::CancellationManager cancellation_;
};

}  // namespace seed_rpc
