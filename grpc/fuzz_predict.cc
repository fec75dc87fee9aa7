// libFuzzer target: TF Serving's Predict messages as the C++ PredictionService and the
// remote_predict op read them (predict_proto.cc), on arbitrary bytes.
//
// Built by seed.rpc.build_op.fuzz_predict_path() (clang, ASan + UBSan); run by scripts/fuzz.sh and,
// briefly, tests/test_fuzz.py. Every input is either rejected with a status or parses; the tensors
// of a parsed PredictRequest, written back as a request, parse again to the same aliases and bytes.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "predict_proto.h"

namespace {

void Check(bool ok, const char* what) {
  if (!ok) {
    fprintf(stderr, "fuzz_predict: invariant broken: %s\n", what);
    abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  seed_rpc::MetadataRequest metadata;
  seed_rpc::ParseMetadataRequest(bytes, &metadata).IgnoreError();
  std::vector<std::pair<std::string, std::string_view>> response;
  if (seed_rpc::ParsePredictResponse(bytes, &response).ok()) {
    for (const auto& [alias, proto] : response) {
      tensorflow::Tensor t;
      seed_rpc::TensorFromProtoBytes(alias, proto, &t).IgnoreError();
    }
  }
  seed_rpc::PredictRequest request;
  if (!seed_rpc::ParsePredictRequest(bytes, &request).ok()) return 0;
  std::vector<std::string> aliases;
  std::vector<tensorflow::Tensor> tensors;
  for (const auto& [alias, proto] : request.inputs) {
    tensorflow::Tensor t;
    if (!seed_rpc::TensorFromProtoBytes(alias, proto, &t).ok()) return 0;
    aliases.push_back(alias);
    tensors.push_back(t);
  }
  const seed_rpc::ModelSpec& spec = request.spec;
  const std::string once = seed_rpc::SerializePredictRequest(spec.name, spec.has_version ? spec.version : -1,
                                                             spec.signature_name, aliases, tensors,
                                                             request.output_filter);
  seed_rpc::PredictRequest again;
  Check(seed_rpc::ParsePredictRequest(once, &again).ok(), "a written request parses");
  Check(again.spec.name == spec.name && again.output_filter == request.output_filter, "spec and filter survive");
  Check(again.inputs.size() == aliases.size(), "every input survives");
  std::vector<tensorflow::Tensor> back;
  for (size_t i = 0; i < aliases.size(); ++i) {
    tensorflow::Tensor t;
    Check(again.inputs[i].first == aliases[i], "aliases keep their order");
    Check(seed_rpc::TensorFromProtoBytes(aliases[i], again.inputs[i].second, &t).ok(), "a written tensor parses");
    Check(t.dtype() == tensors[i].dtype() && t.shape() == tensors[i].shape(), "dtype and shape survive");
    back.push_back(t);
  }
  const std::string twice = seed_rpc::SerializePredictRequest(spec.name, spec.has_version ? spec.version : -1,
                                                              spec.signature_name, aliases, back,
                                                              request.output_filter);
  Check(once == twice, "writing is stable");
  return 0;
}
