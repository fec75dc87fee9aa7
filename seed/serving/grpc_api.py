"""The gRPC front end: TF Serving's PredictionService and ModelService over the core."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf
from absl import logging
from tensorflow.core.framework import tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import (
  get_model_metadata_pb2,
  model_management_pb2,
  model_service_pb2_grpc,
  predict_pb2,
  prediction_service_pb2_grpc,
)

import grpc
from seed.serving.config import model_configs
from seed.serving.core import Core, signature_def_map, status_response
from seed.serving.errors import ServingError, invalid

PREDICT_SERVICE = "tensorflow.serving.PredictionService"
MODEL_SERVICE = "tensorflow.serving.ModelService"
# One decoded input tensor at most (the C++ path's bound, grpc/predict_proto.cc): a few bytes of
# TensorProto may declare a huge shape that one typed value fills.
MAX_TENSOR_BYTES = 1 << 30
_STRING_ELEMENT_BYTES = 24  # what a string element costs TensorFlow (sizeof(tstring)), as the C++ path counts it


def _grpc_call(context: grpc.ServicerContext, fn: Callable[[], Any], what: str):
  """fn()'s response, or the request aborted with fn's ServingError (or INTERNAL)."""
  try:
    return fn()
  except ServingError as e:
    error = e
  except Exception as e:  # pylint: disable=broad-except  (nothing a client sends may crash the server)
    logging.exception("%s failed", what)
    error = ServingError(grpc.StatusCode.INTERNAL, f"{what} failed: {type(e).__name__}: {e}")
  context.abort(error.code, error.message)


def _fill_tensor_proto(proto, value: np.ndarray) -> None:
  """Writes an array into a TensorProto (numbers as raw tensor_content: what tf.make_tensor_proto does, faster)."""
  if value.dtype.kind in "biuf" and value.dtype.isnative:
    proto.dtype = tf.as_dtype(value.dtype).as_datatype_enum
    proto.tensor_shape.dim.extend(tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in value.shape)
    proto.tensor_content = np.ascontiguousarray(value).tobytes()
  else:
    proto.CopyFrom(tf.make_tensor_proto(value))


def _read_input(name: str, proto) -> np.ndarray:
  """An input TensorProto as an array; a shape that overflows or holds more than MAX_TENSOR_BYTES is
  refused before anything is allocated, with the C++ path's message."""
  dims = [d.size for d in proto.tensor_shape.dim]
  elements = int(np.prod(dims, dtype=object)) if dims else 1
  if any(d < 0 for d in dims) or elements >= 1 << 63:
    raise invalid(f"input '{name}': its TensorProto has an invalid shape")
  try:
    element_bytes = _STRING_ELEMENT_BYTES if proto.dtype == types_pb2.DT_STRING else tf.as_dtype(proto.dtype).size
  except (TypeError, ValueError):
    element_bytes = 0  # an unknown dtype: make_ndarray says so below
  if element_bytes > 0 and elements > MAX_TENSOR_BYTES // element_bytes:
    shape = ",".join(map(str, dims))
    raise invalid(f"input '{name}': its shape [{shape}] holds more than {MAX_TENSOR_BYTES >> 20} MiB")
  try:
    return tf.make_ndarray(proto)
  except Exception as e:  # pylint: disable=broad-except
    raise invalid(f"input '{name}': cannot read its TensorProto: {e}") from None


def _spec_version(spec) -> int | None:
  return spec.version.value if spec.HasField("version") else None


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
  """tensorflow.serving.PredictionService."""

  def __init__(self, core: Core):
    self._core = core

  def Predict(self, request, context):
    def run():
      inputs = {name: _read_input(name, proto) for name, proto in request.inputs.items()}
      spec = request.model_spec
      result = self._core.predict(
        spec.name, _spec_version(spec), spec.version_label, spec.signature_name, inputs, list(request.output_filter)
      )
      response = predict_pb2.PredictResponse()
      response.model_spec.name = spec.name
      response.model_spec.version.value = result.servable.version
      response.model_spec.signature_name = result.signature
      for name, value in result.outputs.items():
        _fill_tensor_proto(response.outputs[name], value)
      return response

    return _grpc_call(context, run, "Predict")

  def GetModelMetadata(self, request, context):
    def run():
      fields = list(request.metadata_field)
      if not fields:
        raise invalid("GetModelMetadataRequest must specify at least one metadata_field")
      for field in fields:
        if field != "signature_def":
          raise invalid(f"Metadata field {field} is not supported")
      spec = request.model_spec
      servable = self._core.manager.get(spec.name, _spec_version(spec), spec.version_label)
      response = get_model_metadata_pb2.GetModelMetadataResponse()
      response.model_spec.name = spec.name
      response.model_spec.version.value = servable.version
      response.metadata["signature_def"].Pack(signature_def_map(servable))
      return response

    return _grpc_call(context, run, "GetModelMetadata")

  def _unimplemented(self, method: str, context):
    context.abort(
      grpc.StatusCode.UNIMPLEMENTED,
      f"{method} is not implemented by seed.serve; use Predict with the model's signature",
    )

  def Classify(self, request, context):
    self._unimplemented("Classify", context)

  def Regress(self, request, context):
    self._unimplemented("Regress", context)

  def MultiInference(self, request, context):
    self._unimplemented("MultiInference", context)


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
  """tensorflow.serving.ModelService."""

  def __init__(self, core: Core):
    self._core = core

  def GetModelStatus(self, request, context):
    def run():
      spec = request.model_spec
      return status_response(self._core.manager.status(spec.name, _spec_version(spec), spec.version_label))

    return _grpc_call(context, run, "GetModelStatus")

  def HandleReloadConfigRequest(self, request, context):
    def run():
      try:
        configs = model_configs(request.config)
      except ValueError as e:
        raise invalid(str(e)) from None
      errors = self._core.manager.set_configs(configs)
      logging.info("config reloaded: serving %s", self._core.manager.model_names())
      if errors:
        raise ServingError(grpc.StatusCode.UNKNOWN, "; ".join(errors))
      response = model_management_pb2.ReloadConfigResponse()
      response.status.error_code = 0
      return response

    return _grpc_call(context, run, "HandleReloadConfigRequest")
