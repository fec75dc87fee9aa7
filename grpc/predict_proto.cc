#include "predict_proto.h"

#include "absl/strings/str_cat.h"
#include "tensorflow/core/framework/tensor.pb.h"
#include "tensorflow/core/framework/types.h"

namespace seed_rpc {

using namespace tensorflow;  // NOLINT

namespace {

constexpr int kVarint = 0, kFixed64 = 1, kBytes = 2, kFixed32 = 5;
constexpr int64_t kMaxTensorBytes = int64_t{1} << 30;  // one decoded tensor, at most

// A bounds-checked reader of protobuf's wire format.
class Reader {
 public:
  explicit Reader(std::string_view data) : p_(data.data()), end_(data.data() + data.size()) {}
  bool done() const { return p_ == end_; }

  bool Varint(uint64_t* v) {
    *v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (p_ == end_) return false;
      uint8_t b = static_cast<uint8_t>(*p_++);
      *v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if (!(b & 0x80)) return true;
    }
    return false;
  }
  // The next field's number and wire type.
  bool Tag(int* field, int* wire_type) {
    uint64_t tag;
    if (!Varint(&tag) || tag >> 3 == 0 || tag >> 3 > 0x1fffffff) return false;
    *field = static_cast<int>(tag >> 3);
    *wire_type = static_cast<int>(tag & 7);
    return true;
  }
  bool Bytes(std::string_view* out) {
    uint64_t n;
    if (!Varint(&n) || n > static_cast<uint64_t>(end_ - p_)) return false;
    *out = std::string_view(p_, n);
    p_ += n;
    return true;
  }
  bool Skip(int wire_type) {
    uint64_t v;
    std::string_view s;
    switch (wire_type) {
      case kVarint: return Varint(&v);
      case kFixed64: return Advance(8);
      case kBytes: return Bytes(&s);
      case kFixed32: return Advance(4);
      default: return false;  // groups are not in these messages
    }
  }

 private:
  bool Advance(size_t n) {
    if (static_cast<size_t>(end_ - p_) < n) return false;
    p_ += n;
    return true;
  }
  const char* p_;
  const char* end_;
};

void PutVarint(uint64_t v, std::string* out) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>(v | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

void PutTag(int field, int wire_type, std::string* out) { PutVarint((static_cast<uint64_t>(field) << 3) | wire_type, out); }

void PutBytes(int field, std::string_view bytes, std::string* out) {
  PutTag(field, kBytes, out);
  PutVarint(bytes.size(), out);
  out->append(bytes.data(), bytes.size());
}

size_t VarintSize(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) v >>= 7, ++n;
  return n;
}

absl::Status Malformed(const char* what) { return absl::InvalidArgumentError(absl::StrCat("malformed ", what)); }

absl::Status ParseSpec(std::string_view data, ModelSpec* spec) {
  Reader r(data);
  while (!r.done()) {
    int field, wt;
    if (!r.Tag(&field, &wt)) return Malformed("ModelSpec");
    std::string_view s;
    if (wt == kBytes && field != 2 && field <= 4) {
      if (!r.Bytes(&s)) return Malformed("ModelSpec");
      (field == 1 ? spec->name : field == 3 ? spec->signature_name : spec->version_label).assign(s);
    } else if (field == 2 && wt == kBytes) {  // Int64Value{int64 value = 1}
      if (!r.Bytes(&s)) return Malformed("ModelSpec");
      spec->has_version = true;
      spec->version = 0;
      Reader v(s);
      while (!v.done()) {
        int f, w;
        uint64_t x;
        if (!v.Tag(&f, &w)) return Malformed("ModelSpec.version");
        if (f == 1 && w == kVarint) {
          if (!v.Varint(&x)) return Malformed("ModelSpec.version");
          spec->version = static_cast<int64_t>(x);
        } else if (!v.Skip(w)) {
          return Malformed("ModelSpec.version");
        }
      }
    } else if (!r.Skip(wt)) {
      return Malformed("ModelSpec");
    }
  }
  return absl::OkStatus();
}

// A map<string, Message> entry: key = 1, value = 2.
absl::Status ParseMapEntry(std::string_view data, std::string* key, std::string_view* value, const char* what) {
  Reader r(data);
  *value = {};
  while (!r.done()) {
    int field, wt;
    std::string_view s;
    if (!r.Tag(&field, &wt)) return Malformed(what);
    if ((field == 1 || field == 2) && wt == kBytes) {
      if (!r.Bytes(&s)) return Malformed(what);
      if (field == 1) key->assign(s); else *value = s;
    } else if (!r.Skip(wt)) {
      return Malformed(what);
    }
  }
  return absl::OkStatus();
}

void AppendSpec(int field, const std::string& model, int64_t version, const std::string& signature,
                std::string* out) {
  std::string spec;
  PutBytes(1, model, &spec);
  if (version >= 0) {
    std::string v;
    PutTag(1, kVarint, &v);
    PutVarint(static_cast<uint64_t>(version), &v);
    PutBytes(2, v, &spec);
  }
  if (!signature.empty()) PutBytes(3, signature, &spec);
  PutBytes(field, spec, out);
}

// Appends map entry {key, TensorProto(t)} as field `field`, the proto serialized in place.
void AppendTensorEntry(int field, const std::string& key, const Tensor& t, std::string* out) {
  TensorProto proto;
  if (t.dtype() == DT_STRING) {
    t.AsProtoField(&proto);  // string_val: what every client decodes
  } else {
    t.AsProtoTensorContent(&proto);
  }
  const size_t proto_size = proto.ByteSizeLong();
  const size_t entry_size = 1 + VarintSize(key.size()) + key.size() + 1 + VarintSize(proto_size) + proto_size;
  PutTag(field, kBytes, out);
  PutVarint(entry_size, out);
  PutBytes(1, key, out);
  PutTag(2, kBytes, out);
  PutVarint(proto_size, out);
  const size_t at = out->size();
  out->resize(at + proto_size);
  proto.SerializeWithCachedSizesToArray(reinterpret_cast<uint8_t*>(&(*out)[at]));
}

}  // namespace

absl::Status ParsePredictRequest(std::string_view data, PredictRequest* out) {
  Reader r(data);
  while (!r.done()) {
    int field, wt;
    if (!r.Tag(&field, &wt)) return Malformed("PredictRequest");
    std::string_view s;
    if (field <= 3 && wt == kBytes) {
      if (!r.Bytes(&s)) return Malformed("PredictRequest");
      if (field == 1) {
        out->spec = ModelSpec();
        TF_RETURN_IF_ERROR(ParseSpec(s, &out->spec));
      } else if (field == 2) {
        std::string key;
        std::string_view value;
        TF_RETURN_IF_ERROR(ParseMapEntry(s, &key, &value, "PredictRequest.inputs"));
        bool replaced = false;
        for (auto& [k, v] : out->inputs) {
          if (k == key) v = value, replaced = true;
        }
        if (!replaced) out->inputs.emplace_back(std::move(key), value);
      } else {
        out->output_filter.emplace_back(s);
      }
    } else if (!r.Skip(wt)) {
      return Malformed("PredictRequest");
    }
  }
  return absl::OkStatus();
}

absl::Status ParseMetadataRequest(std::string_view data, MetadataRequest* out) {
  Reader r(data);
  while (!r.done()) {
    int field, wt;
    if (!r.Tag(&field, &wt)) return Malformed("GetModelMetadataRequest");
    std::string_view s;
    if ((field == 1 || field == 2) && wt == kBytes) {
      if (!r.Bytes(&s)) return Malformed("GetModelMetadataRequest");
      if (field == 1) {
        out->spec = ModelSpec();
        TF_RETURN_IF_ERROR(ParseSpec(s, &out->spec));
      } else {
        out->fields.emplace_back(s);
      }
    } else if (!r.Skip(wt)) {
      return Malformed("GetModelMetadataRequest");
    }
  }
  return absl::OkStatus();
}

absl::Status TensorFromProtoBytes(const std::string& alias, std::string_view bytes, Tensor* out) {
  TensorProto proto;
  if (!proto.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return absl::InvalidArgumentError(absl::StrCat("input '", alias, "': cannot parse its TensorProto"));
  }
  if (proto.dtype() == DT_INVALID || proto.dtype() == DT_RESOURCE || proto.dtype() == DT_VARIANT ||
      IsRefType(proto.dtype())) {
    return absl::InvalidArgumentError(
        absl::StrCat("input '", alias, "': its TensorProto has dtype ", DataTypeString(proto.dtype()),
                     ", which a request cannot carry"));
  }
  // A few bytes may declare a huge shape (one typed value fills it all): bound what FromProto would allocate.
  if (!TensorShape::IsValid(proto.tensor_shape())) {
    return absl::InvalidArgumentError(absl::StrCat("input '", alias, "': its TensorProto has an invalid shape"));
  }
  const int64_t elements = TensorShape(proto.tensor_shape()).num_elements();
  const int64_t element_bytes = proto.dtype() == DT_STRING ? sizeof(tstring) : DataTypeSize(proto.dtype());
  if (element_bytes > 0 && elements > kMaxTensorBytes / element_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("input '", alias, "': its shape ",
                                                   TensorShape(proto.tensor_shape()).DebugString(),
                                                   " holds more than ", kMaxTensorBytes >> 20, " MiB"));
  }
  if (!out->FromProto(proto)) {
    return absl::InvalidArgumentError(
        absl::StrCat("input '", alias, "': cannot read its TensorProto (dtype ", DtypeName(proto.dtype()),
                     ", shape ", TensorShape(proto.tensor_shape()).DebugString(), "; tensor_content or the typed values do not fit the shape)"));
  }
  return absl::OkStatus();
}

std::string SerializePredictResponse(const std::string& model, int64_t version, const std::string& signature,
                                     const std::vector<std::string>& names, const std::vector<Tensor>& tensors) {
  std::string out;
  size_t bytes = 64;
  for (const Tensor& t : tensors) bytes += t.TotalBytes() + 64;
  out.reserve(bytes);
  for (size_t i = 0; i < names.size(); ++i) AppendTensorEntry(1, names[i], tensors[i], &out);
  AppendSpec(2, model, version, signature, &out);
  return out;
}

std::string SerializeMetadataResponse(const std::string& model, int64_t version,
                                      const std::string& signature_def_map) {
  std::string out, any, entry;
  AppendSpec(1, model, version, "", &out);
  PutBytes(1, "type.googleapis.com/tensorflow.serving.SignatureDefMap", &any);
  PutBytes(2, signature_def_map, &any);
  PutBytes(1, "signature_def", &entry);
  PutBytes(2, any, &entry);
  PutBytes(2, entry, &out);
  return out;
}

std::string SerializePredictRequest(const std::string& model, int64_t version, const std::string& signature,
                                    const std::vector<std::string>& aliases, const std::vector<Tensor>& tensors,
                                    const std::vector<std::string>& output_filter) {
  std::string out;
  AppendSpec(1, model, version, signature, &out);
  for (size_t i = 0; i < aliases.size(); ++i) AppendTensorEntry(2, aliases[i], tensors[i], &out);
  for (const std::string& f : output_filter) PutBytes(3, f, &out);
  return out;
}

absl::Status ParsePredictResponse(std::string_view data, std::vector<std::pair<std::string, std::string_view>>* outputs) {
  Reader r(data);
  while (!r.done()) {
    int field, wt;
    if (!r.Tag(&field, &wt)) return Malformed("PredictResponse");
    std::string_view s;
    if (field == 1 && wt == kBytes) {
      if (!r.Bytes(&s)) return Malformed("PredictResponse");
      std::string key;
      std::string_view value;
      TF_RETURN_IF_ERROR(ParseMapEntry(s, &key, &value, "PredictResponse.outputs"));
      outputs->emplace_back(std::move(key), value);
    } else if (!r.Skip(wt)) {
      return Malformed("PredictResponse");
    }
  }
  return absl::OkStatus();
}

std::string DtypeName(DataType dtype) {
  switch (dtype) {
    case DT_FLOAT: return "float32";
    case DT_DOUBLE: return "float64";
    case DT_HALF: return "float16";
    case DT_BFLOAT16: return "bfloat16";
    case DT_INT8: return "int8";
    case DT_INT16: return "int16";
    case DT_INT32: return "int32";
    case DT_INT64: return "int64";
    case DT_UINT8: return "uint8";
    case DT_UINT16: return "uint16";
    case DT_UINT32: return "uint32";
    case DT_UINT64: return "uint64";
    case DT_BOOL: return "bool";
    case DT_STRING: return "string";
    case DT_COMPLEX64: return "complex64";
    case DT_COMPLEX128: return "complex128";
    default: return DataTypeString(dtype);
  }
}

}  // namespace seed_rpc
