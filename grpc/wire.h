// Tensor framing for the RPC payloads (TensorFlow side).
//
// A payload is: magic "SEDT", u32 count, then per tensor: u32 dtype, u32 rank,
// i64 dims[rank], then the data: raw little-endian elements for numeric types,
// or u64 lengths followed by the bytes for strings. Parsing checks every bound,
// so garbage from a raw client becomes InvalidArgument, never a crash.
#pragma once

#include <string>
#include <vector>

#include "tensorflow/core/framework/tensor.h"

namespace seed_rpc {

// Appends the serialization of `tensors` to *out.
void SerializeTensors(const std::vector<tensorflow::Tensor>& tensors,
                      std::string* out);

// Appends the serialization of rows [first, first + rows) of every tensor
// (all batched along dim 0); `drop_batch_dim` sends one row without it.
void SerializeRows(const std::vector<tensorflow::Tensor>& tensors, int64_t first,
                   int64_t rows, bool drop_batch_dim, std::string* out);

// Parses a payload into freshly allocated tensors.
absl::Status ParseTensors(const std::string& data,
                          std::vector<tensorflow::Tensor>* tensors);

// Whether a dtype can cross the wire.
bool IsSupportedDtype(tensorflow::DataType dtype);

}  // namespace seed_rpc
