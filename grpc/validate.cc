#include "validate.h"

#include "absl/strings/str_cat.h"

namespace seed_rpc {

using namespace tensorflow;  // NOLINT: TF-heavy code reads better unqualified.

absl::Status ValidateCall(const CallSignature& m, const std::vector<Tensor>& inputs, int64_t* rows, bool* single) {
  if (inputs.size() != m.inputs) {
    return absl::InvalidArgumentError(absl::StrCat(
        "method '", m.method, "' takes ", m.inputs, " input(s), got ", inputs.size()));
  }
  *rows = -1;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& t = inputs[i];
    auto where = [&] { return absl::StrCat("method '", m.method, "', input ", i, " ('", m.names[i], "'): "); };
    if (t.dtype() != m.dtypes[i]) {
      return absl::InvalidArgumentError(absl::StrCat(where(), "expected dtype ", DataTypeString(m.dtypes[i]),
                                                     ", got ", DataTypeString(t.dtype())));
    }
    const PartialTensorShape& spec = m.shapes[i];
    if (m.batch_size == 0) {
      if (!spec.IsCompatibleWith(t.shape())) {
        return absl::InvalidArgumentError(absl::StrCat(where(), "expected shape ", spec.DebugString(),
                                                       ", got ", t.shape().DebugString()));
      }
      continue;
    }
    // Batched: one element (spec without its leading dim) or k <= batch rows.
    const TensorShape& element = m.element_shapes[i];
    bool is_single = t.shape() == element;
    int64_t k = 1;
    if (!is_single) {
      bool rows_match = t.dims() == element.dims() + 1;
      for (int d = 0; rows_match && d < element.dims(); ++d) rows_match = t.dim_size(d + 1) == element.dim_size(d);
      if (!rows_match) {
        return absl::InvalidArgumentError(absl::StrCat(
            where(), "expected one element of shape ", element.DebugString(), " or 1 to ", m.batch_size,
            " rows of shape ", PartialTensorShape({-1}).Concatenate(element).DebugString(),
            " (the method is bound with batch size ", m.batch_size, "), got ", t.shape().DebugString()));
      }
      k = t.dim_size(0);
      if (k == 0) return absl::InvalidArgumentError(where() + "empty batch (0 rows)");
      if (k > m.batch_size) {
        return absl::InvalidArgumentError(absl::StrCat(where(), "a call carries ", k, " rows but the batch size is ",
                                                       m.batch_size));
      }
    }
    if (*rows == -1) {
      *rows = k;
      *single = is_single;
    } else if (*rows != k || *single != is_single) {
      return absl::InvalidArgumentError(absl::StrCat("method '", m.method,
                                                     "': all inputs must carry the same number of rows"));
    }
  }
  if (*rows == -1) *rows = 0;
  return absl::OkStatus();
}

}  // namespace seed_rpc
