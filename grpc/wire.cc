#include "wire.h"

#include <cstring>

#include "tensorflow/core/framework/types.h"

namespace seed_rpc {

using tensorflow::DataType;
using tensorflow::Tensor;
using tensorflow::TensorShape;

namespace {

constexpr char kMagic[4] = {'S', 'E', 'D', 'T'};

template <typename T>
void Put(std::string* out, T v) {
  out->append(reinterpret_cast<const char*>(&v), sizeof(T));
}

class Reader {
 public:
  explicit Reader(const std::string& s) : p_(s.data()), end_(p_ + s.size()) {}
  template <typename T>
  bool Get(T* v) {
    if (static_cast<size_t>(end_ - p_) < sizeof(T)) return false;
    std::memcpy(v, p_, sizeof(T));
    p_ += sizeof(T);
    return true;
  }
  const char* Take(size_t n) {
    if (static_cast<size_t>(end_ - p_) < n) return nullptr;
    const char* r = p_;
    p_ += n;
    return r;
  }
  size_t remaining() const { return end_ - p_; }

 private:
  const char* p_;
  const char* end_;
};

absl::Status Malformed(const std::string& what) {
  return absl::InvalidArgumentError("malformed tensor payload: " + what);
}

}  // namespace

bool IsSupportedDtype(DataType dtype) {
  if (dtype == tensorflow::DT_STRING) return true;
  if (dtype == tensorflow::DT_RESOURCE || dtype == tensorflow::DT_VARIANT) {
    return false;
  }
  return tensorflow::DataTypeCanUseMemcpy(dtype) &&
         tensorflow::DataTypeSize(dtype) > 0;
}

void SerializeTensors(const std::vector<Tensor>& tensors, std::string* out) {
  size_t total = 8;
  for (const Tensor& t : tensors) {
    total += 8 + 8 * t.dims() + t.TotalBytes() + 8 * (t.dtype() == tensorflow::DT_STRING ? t.NumElements() : 0);
  }
  out->reserve(out->size() + total);
  out->append(kMagic, 4);
  Put<uint32_t>(out, tensors.size());
  for (const Tensor& t : tensors) {
    Put<uint32_t>(out, t.dtype());
    Put<uint32_t>(out, t.dims());
    for (int d = 0; d < t.dims(); ++d) Put<int64_t>(out, t.dim_size(d));
    if (t.dtype() == tensorflow::DT_STRING) {
      auto flat = t.flat<tensorflow::tstring>();
      for (int64_t i = 0; i < flat.size(); ++i) Put<uint64_t>(out, flat(i).size());
      for (int64_t i = 0; i < flat.size(); ++i) out->append(flat(i).data(), flat(i).size());
    } else {
      auto data = t.tensor_data();
      out->append(data.data(), data.size());
    }
  }
}

void SerializeRows(const std::vector<Tensor>& tensors, int64_t first, int64_t rows, bool drop_batch_dim,
                   std::string* out) {
  out->append(kMagic, 4);
  Put<uint32_t>(out, tensors.size());
  for (const Tensor& t : tensors) {
    const int64_t per_row = t.dim_size(0) > 0 ? t.NumElements() / t.dim_size(0) : 0;
    Put<uint32_t>(out, t.dtype());
    Put<uint32_t>(out, t.dims() - (drop_batch_dim ? 1 : 0));
    if (!drop_batch_dim) Put<int64_t>(out, rows);
    for (int d = 1; d < t.dims(); ++d) Put<int64_t>(out, t.dim_size(d));
    if (t.dtype() == tensorflow::DT_STRING) {
      auto flat = t.flat<tensorflow::tstring>();
      for (int64_t i = first * per_row; i < (first + rows) * per_row; ++i) Put<uint64_t>(out, flat(i).size());
      for (int64_t i = first * per_row; i < (first + rows) * per_row; ++i) out->append(flat(i).data(), flat(i).size());
    } else {
      const int64_t row_bytes = per_row * tensorflow::DataTypeSize(t.dtype());
      out->append(t.tensor_data().data() + first * row_bytes, rows * row_bytes);
    }
  }
}

absl::Status ParseTensors(const std::string& data, std::vector<Tensor>* tensors) {
  Reader r(data);
  const char* magic = r.Take(4);
  if (magic == nullptr || std::memcmp(magic, kMagic, 4) != 0) {
    return Malformed("bad magic (not a SEED tensor message)");
  }
  uint32_t count;
  if (!r.Get(&count)) return Malformed("truncated header");
  // Each tensor needs at least 8 bytes, which bounds `count` by the payload.
  if (count > r.remaining() / 8) return Malformed("tensor count too large");
  tensors->clear();
  tensors->reserve(count);
  for (uint32_t i = 0; i < count; ++i) {
    uint32_t dtype_raw, rank;
    if (!r.Get(&dtype_raw) || !r.Get(&rank)) return Malformed("truncated tensor header");
    DataType dtype = static_cast<DataType>(dtype_raw);
    if (!tensorflow::DataType_IsValid(dtype_raw) || !IsSupportedDtype(dtype)) {
      return Malformed("unsupported dtype " + std::to_string(dtype_raw));
    }
    if (rank > 64) return Malformed("rank too large");
    TensorShape shape;
    for (uint32_t d = 0; d < rank; ++d) {
      int64_t dim;
      if (!r.Get(&dim) || dim < 0) return Malformed("bad dimension");
      absl::Status s = shape.AddDimWithStatus(dim);
      if (!s.ok()) return Malformed(std::string(s.message()));
    }
    const int64_t n = shape.num_elements();
    if (dtype == tensorflow::DT_STRING) {
      if (static_cast<uint64_t>(n) > r.remaining() / 8) return Malformed("truncated string lengths");
      const char* lens = r.Take(8 * n);
      Tensor t(dtype, shape);
      auto flat = t.flat<tensorflow::tstring>();
      for (int64_t e = 0; e < n; ++e) {
        uint64_t len;
        std::memcpy(&len, lens + 8 * e, 8);
        const char* bytes = r.Take(len);
        if (bytes == nullptr) return Malformed("truncated string data");
        flat(e).assign(bytes, len);
      }
      tensors->push_back(std::move(t));
    } else {
      const uint64_t size = tensorflow::DataTypeSize(dtype);
      if (static_cast<uint64_t>(n) > r.remaining() / size) return Malformed("truncated tensor data");
      const char* bytes = r.Take(n * size);
      Tensor t(dtype, shape);
      if (n > 0) std::memcpy(const_cast<char*>(t.tensor_data().data()), bytes, n * size);
      tensors->push_back(std::move(t));
    }
  }
  if (r.remaining() != 0) return Malformed("trailing bytes");
  return absl::OkStatus();
}

}  // namespace seed_rpc
