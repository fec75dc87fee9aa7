// TF Serving's PredictionService messages on the wire (TensorFlow side, no gRPC):
// PredictRequest / PredictResponse and GetModelMetadataRequest / Response, read
// and written field by field (field numbers as in tensorflow_serving/apis/*.proto).
// Tensors are tensorflow::TensorProto, converted by TensorFlow's own FromProto /
// AsProtoTensorContent, so every dtype and the typed value fields work as in TF.
// Parsing checks every length: garbage becomes InvalidArgument, never a crash.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tensorflow/core/framework/tensor.h"

namespace seed_rpc {

struct ModelSpec {
  std::string name;
  bool has_version = false;  // google.protobuf.Int64Value present
  int64_t version = 0;
  std::string version_label;
  std::string signature_name;
};

struct PredictRequest {
  ModelSpec spec;
  // Input alias -> serialized TensorProto (a repeated key keeps the last, as protobuf maps do).
  std::vector<std::pair<std::string, std::string_view>> inputs;
  std::vector<std::string> output_filter;
};

struct MetadataRequest {
  ModelSpec spec;
  std::vector<std::string> fields;
};

// `data` must outlive `out` (inputs point into it).
absl::Status ParsePredictRequest(std::string_view data, PredictRequest* out);
absl::Status ParseMetadataRequest(std::string_view data, MetadataRequest* out);
// InvalidArgument naming `alias` if the bytes are not a TensorProto TensorFlow can read.
absl::Status TensorFromProtoBytes(const std::string& alias, std::string_view bytes, tensorflow::Tensor* out);

// PredictResponse{outputs: names[i] -> tensors[i], model_spec{name, version, signature_name}}.
std::string SerializePredictResponse(const std::string& model, int64_t version, const std::string& signature,
                                     const std::vector<std::string>& names,
                                     const std::vector<tensorflow::Tensor>& tensors);
// GetModelMetadataResponse{model_spec{name, version}, metadata{"signature_def": Any(SignatureDefMap)}}.
std::string SerializeMetadataResponse(const std::string& model, int64_t version,
                                      const std::string& signature_def_map);
// PredictRequest for the remote_predict op; version < 0 = the newest.
std::string SerializePredictRequest(const std::string& model, int64_t version, const std::string& signature,
                                    const std::vector<std::string>& aliases,
                                    const std::vector<tensorflow::Tensor>& tensors,
                                    const std::vector<std::string>& output_filter);
// PredictResponse -> alias -> serialized TensorProto.
absl::Status ParsePredictResponse(std::string_view data,
                                  std::vector<std::pair<std::string, std::string_view>>* outputs);

// A tensor's dtype as TF Serving's (and numpy's) messages name it: float32, int64, string, ...
std::string DtypeName(tensorflow::DataType dtype);

}  // namespace seed_rpc
