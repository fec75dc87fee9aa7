// libFuzzer target: the wire parser and the server's call validation on arbitrary bytes.
//
// Built by seed.rpc.build_op.fuzz_target_path() with clang (ASan + UBSan); run by
// scripts/fuzz.sh and, briefly, by tests/test_fuzz.py. Every input must either be rejected
// with a status or parse into tensors that serialize back to a payload that parses to the
// same bytes; whatever parses is then validated against a batched and an unbatched signature.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "validate.h"
#include "wire.h"

namespace {

using tensorflow::DataTypeVector;
using tensorflow::PartialTensorShape;
using tensorflow::Tensor;
using tensorflow::TensorShape;

void Check(bool ok, const char* what) {
  if (!ok) {
    fprintf(stderr, "fuzz_wire: invariant broken: %s\n", what);
    abort();
  }
}

// A batched method like an actor's inference call (batch 4: float32 [3] and int32 [] per row),
// and an unbatched one with a partial shape and a string.
const std::string kBatched = "inference", kUnbatched = "lookup";
const DataTypeVector kBatchedDtypes = {tensorflow::DT_FLOAT, tensorflow::DT_INT32};
const std::vector<PartialTensorShape> kBatchedShapes = {PartialTensorShape({-1, 3}), PartialTensorShape({-1})};
const std::vector<TensorShape> kElements = {TensorShape({3}), TensorShape({})};
const std::vector<std::string> kBatchedNames = {"observation", "env_id"};
const DataTypeVector kUnbatchedDtypes = {tensorflow::DT_FLOAT, tensorflow::DT_STRING};
const std::vector<PartialTensorShape> kUnbatchedShapes = {PartialTensorShape({-1, 2}), PartialTensorShape({})};
const std::vector<TensorShape> kNoElements;
const std::vector<std::string> kUnbatchedNames = {"x", "key"};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string payload(reinterpret_cast<const char*>(data), size);
  std::vector<Tensor> tensors;
  if (!seed_rpc::ParseTensors(payload, &tensors).ok()) return 0;

  // Parsed: a re-serialization parses again, and serializing that gives the same bytes.
  std::string once, twice;
  seed_rpc::SerializeTensors(tensors, &once);
  std::vector<Tensor> again;
  Check(seed_rpc::ParseTensors(once, &again).ok(), "a serialized payload parses");
  Check(again.size() == tensors.size(), "the tensor count survives a round trip");
  seed_rpc::SerializeTensors(again, &twice);
  Check(once == twice, "serialization is stable");

  int64_t rows = -2;
  bool single = false;
  const seed_rpc::CallSignature batched{kBatched, 2, kBatchedDtypes, kBatchedShapes, kElements, kBatchedNames, 4};
  if (seed_rpc::ValidateCall(batched, tensors, &rows, &single).ok()) {
    Check(rows >= 1 && rows <= 4, "a valid batched call carries 1..batch_size rows");
    Check(!single || rows == 1, "a single element is one row");
    if (!single) {  // the reply path: these rows of batched tensors, each row on its own without its batch dim
      for (int64_t r = 0; r < rows; ++r) {
        std::string out;
        seed_rpc::SerializeRows(tensors, r, 1, /*drop_batch_dim=*/true, &out);
        std::vector<Tensor> back;
        Check(seed_rpc::ParseTensors(out, &back).ok() && back.size() == 2, "a row serializes to a valid payload");
        Check(back[0].shape() == kElements[0] && back[1].shape() == kElements[1], "a row has the element's shape");
      }
    }
  }
  const seed_rpc::CallSignature unbatched{kUnbatched, 2, kUnbatchedDtypes, kUnbatchedShapes, kNoElements,
                                          kUnbatchedNames, 0};
  rows = -2;
  if (seed_rpc::ValidateCall(unbatched, tensors, &rows, &single).ok()) Check(rows == 0, "an unbatched call has rows 0");
  return 0;
}
