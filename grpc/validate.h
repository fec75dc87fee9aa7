// Checking a call's tensors against a method's input signature (TensorFlow side, no gRPC):
// the server runs it on every call, and the fuzz target (fuzz_wire.cc) on parsed garbage.
#pragma once

#include <string>
#include <vector>

#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/tensor_shape.h"

namespace seed_rpc {

// A method's client inputs, by reference into the method that owns them.
struct CallSignature {
  const std::string& method;
  size_t inputs;  // how many of the vectors' entries a client sends (a pad mask is not sent)
  const tensorflow::DataTypeVector& dtypes;
  const std::vector<tensorflow::PartialTensorShape>& shapes;
  const std::vector<tensorflow::TensorShape>& element_shapes;  // batched: shapes without the batch dim
  const std::vector<std::string>& names;
  int64_t batch_size;  // 0: not batched
};

// InvalidArgument naming the method and input unless `inputs` fit `sig`. A batched call
// carries one element (*single, *rows = 1) or 1..batch_size rows of every input (*rows).
absl::Status ValidateCall(const CallSignature& sig, const std::vector<tensorflow::Tensor>& inputs, int64_t* rows,
                          bool* single);

}  // namespace seed_rpc
