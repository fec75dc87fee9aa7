"""The C++ PredictionService (seed/serving/native.py, grpc/predict_service.cc) against TF Serving's client,
compared answer for answer with the Python servicer (`--python_predict`) serving the same models."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import portpicker
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2, prediction_service_pb2_grpc

import grpc
from seed.serving.config import ModelConfig
from seed.serving.server import ModelServer
from tests.helpers import run_python
from tests.serving.serving_helpers import DTYPES, outputs, predict_request, rpc_error

PREDICT = "/tensorflow.serving.PredictionService/Predict"


def _value(dtype: tf.DType) -> np.ndarray:
  if dtype == tf.string:
    return np.array([[b"a", b""], [b"\x00\xff bytes", "é".encode()]], object)
  if dtype == tf.bool:
    return np.array([[True, False], [False, True]])
  base = np.array([[1, 2], [3, 127]])
  if dtype.is_complex:
    return (base + 0.5j * base).astype(dtype.as_numpy_dtype)
  if dtype.is_floating:
    return (base / 4).astype(dtype.as_numpy_dtype)
  return base.astype(dtype.as_numpy_dtype)


def _both(server, python_server, request):
  """(C++ response, Python response) to the same request."""
  return server.predict.Predict(request, timeout=60), python_server.predict.Predict(request, timeout=60)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
def test_every_dtype_round_trips_as_on_the_python_path(server, python_server, dtype):
  x = _value(dtype)
  cpp, py = _both(server, python_server, predict_request("dtypes", {"x": x}, signature=dtype.name))
  for response in (cpp, py):
    out = outputs(response)
    assert out["y"].dtype == x.dtype and out["shape"].tolist() == [2, 2]
    np.testing.assert_array_equal(out["y"], x)
    assert response.model_spec.name == "dtypes" and response.model_spec.version.value == 1
    assert response.model_spec.signature_name == dtype.name
  assert cpp.outputs["y"].dtype == py.outputs["y"].dtype == dtype.as_datatype_enum
  # A wrong dtype names the input and both dtypes, as the Python path does.
  other = tf.float32 if dtype != tf.float32 else tf.int32
  request = predict_request("dtypes", {"x": _value(other)}, signature=dtype.name)
  errors = [rpc_error(s.predict.Predict, request) for s in (server, python_server)]
  assert [e.code() for e in errors] == [grpc.StatusCode.INVALID_ARGUMENT] * 2
  assert errors[0].details() == errors[1].details(), (errors[0].details(), errors[1].details())


def test_typed_value_fields_and_identical_answers(server, python_server):
  """Clients that fill float_val / int_val instead of tensor_content (other languages do); the policy's
  answers are the same floats from both paths."""
  request = predict_request("multi", {})
  a = request.inputs["a"]
  a.dtype = types_pb2.DT_FLOAT
  a.tensor_shape.dim.extend([tensor_shape_pb2.TensorShapeProto.Dim(size=s) for s in (2, 2)])
  a.float_val.extend([1.0, 2.0, 3.0, 4.0])
  n = request.inputs["n"]
  n.dtype = types_pb2.DT_INT32
  n.tensor_shape.dim.append(tensor_shape_pb2.TensorShapeProto.Dim(size=2))
  n.int_val.append(5)  # one value fills the shape, as TensorFlow reads it
  cpp, py = _both(server, python_server, request)
  assert outputs(cpp)["sum"].tolist() == outputs(py)["sum"].tolist() == [8.0, 12.0]

  obs = np.random.default_rng(0).normal(size=[5, 4]).astype(np.float32)
  cpp, py = _both(server, python_server, predict_request("cartpole", {"observation": obs}))
  assert set(cpp.outputs) == set(py.outputs) == {"action", "greedy_action", "logits", "value"}
  for k in ("greedy_action", "logits", "value"):
    np.testing.assert_array_equal(outputs(cpp)[k], outputs(py)[k])
  cpp, py = _both(
    server, python_server, predict_request("multi", {"s": np.array([b"ab", b"xyz"], object)}, signature="echo")
  )
  assert outputs(cpp)["upper"].tolist() == outputs(py)["upper"].tolist() == [b"AB", b"XYZ"]


def test_errors_read_as_on_the_python_path(server, python_server):
  a, n = np.ones([2, 2], np.float32), np.array([1, 2], np.int32)
  requests = [
    predict_request("multi", {"a": a}),
    predict_request("multi", {"a": a, "n": n, "c": n}),
    predict_request("multi", {"a": np.ones([2, 3], np.float32), "n": n}),
    predict_request("multi", {"a": a, "n": n}, output_filter=["nope"]),
    predict_request("multi", {"a": a, "n": n}, signature="nope"),
    predict_request("nope", {"a": a}),
    predict_request("half", {"x": np.ones([1], np.float32)}, version=9),
    predict_request("half", {"x": np.ones([1], np.float32)}, label="nightly"),
    predict_request("", {"a": a}),
  ]
  for request in requests:
    cpp, py = (rpc_error(s.predict.Predict, request) for s in (server, python_server))
    assert cpp.code() == py.code() and cpp.details() == py.details(), (cpp.details(), py.details())
  metadata = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
  metadata.model_spec.name = "multi"
  maps = []
  for s in (server, python_server):
    response = s.predict.GetModelMetadata(metadata, timeout=60)
    assert response.model_spec.name == "multi" and response.model_spec.version.value == 1
    maps.append(get_model_metadata_pb2.SignatureDefMap())
    assert response.metadata["signature_def"].Unpack(maps[-1])
  assert maps[0] == maps[1] and set(maps[0].signature_def) >= {"serving_default", "echo"}


def _hostile_requests() -> list[predict_pb2.PredictRequest]:
  """Inputs whose TensorProto claims a huge shape, and one whose dtype is a resource handle."""
  huge = predict_request("multi", {})
  huge.inputs["a"].CopyFrom(tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT))
  huge.inputs["a"].tensor_shape.dim.extend([tensor_shape_pb2.TensorShapeProto.Dim(size=1 << 40)] * 2)
  # A few bytes declaring 8 G floats (or strings), one value to fill them: refused before anything is allocated.
  fill = predict_request("multi", {})
  fill.inputs["a"].CopyFrom(tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[1.0]))
  fill.inputs["a"].tensor_shape.dim.add(size=1 << 33)
  strings = predict_request("multi", {})
  strings.inputs["s"].CopyFrom(tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=[b"x"]))
  strings.inputs["s"].tensor_shape.dim.extend([tensor_shape_pb2.TensorShapeProto.Dim(size=1 << 16)] * 2)
  resource = predict_request("multi", {})
  resource.inputs["a"].dtype = types_pb2.DT_RESOURCE
  return [huge, fill, strings, resource]


def test_garbage_bytes_get_invalid_argument_and_the_server_keeps_serving(server):
  call = server.channel.unary_unary(PREDICT)  # raw bytes in and out
  rng = np.random.default_rng(1)
  garbage = [b"\xff" * 10, b"\x0a\x05ab", b"\x12\x03\x0a\x01", bytes(rng.integers(0, 256, 4096, dtype=np.uint8))]
  for data in [*garbage, *(r.SerializeToString() for r in _hostile_requests())]:
    with pytest.raises(grpc.RpcError) as info:
      call(data, timeout=30)
    assert info.value.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND), info.value.details()
  x = np.array([1.0], np.float32)
  np.testing.assert_allclose(outputs(server.predict.Predict(predict_request("half", {"x": x}), timeout=60))["y"], [2.5])


def test_huge_declared_shapes_are_refused_alike_by_both_paths(server, python_server):
  """The --python_predict path bounds a decoded input as the C++ one does (it would otherwise fill 32 GiB
  from one float), with the same message; both keep serving."""
  huge, fill, strings, resource = _hostile_requests()
  for request, needle in [(huge, "invalid shape"), (fill, "[8589934592] holds more"), (strings, "[65536,65536]")]:
    cpp, py = (rpc_error(s.predict.Predict, request) for s in (server, python_server))
    assert cpp.code() == py.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert cpp.details() == py.details() and needle in cpp.details(), (cpp.details(), py.details())
  assert rpc_error(python_server.predict.Predict, resource).code() == grpc.StatusCode.INVALID_ARGUMENT
  x = np.array([1.0], np.float32)
  np.testing.assert_allclose(outputs(python_server.predict.Predict(predict_request("half", {"x": x})))["y"], [2.5])


def test_predict_never_reaches_python(models):
  """In process: Predict is counted by the C++ path only; Python's counters (the REST and --python_predict
  paths) see nothing."""
  server = ModelServer(
    [ModelConfig("half", models["half"])], port=portpicker.pick_unused_port(), rest_api_port=0, poll_wait_seconds=0
  )
  server.start()
  try:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
      stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
      for i in range(3):
        x = np.array([float(i)], np.float32)
        np.testing.assert_allclose(
          outputs(stub.Predict(predict_request("half", {"x": x}), timeout=60))["y"], 0.5 * x + 2
        )
    assert server.core.counters.values == {}
    assert server.core.counters.snapshot() == {"requests/half": 3, "runs/half": 3, "batched_requests/half": 0}
  finally:
    server.stop()


def test_each_unloaded_version_is_freed(tmp_path):
  """Versions loaded, called (batched) and unloaded as the model manager does, 12 times: memory stays flat.
  Each version's graph holds an 8 MiB constant; every version used to stay in memory (80 MiB over 10). glibc's
  mmap threshold is pinned, so that its growing threshold (fragmentation) does not read as a leak."""
  code = textwrap.dedent("""
      import gc, json
      import numpy as np, portpicker, tensorflow as tf
      import grpc
      from tensorflow_serving.apis import prediction_service_pb2_grpc
      from seed.serving.config import ModelConfig
      from seed.serving.models import Servable
      from seed.serving.native import NativeFront
      from tests.serving.serving_helpers import predict_request, outputs

      class Model(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
        def serve(self, x):
          table = tf.constant(np.ones([2048, 1024], np.float32))
          return {"y": tf.reduce_sum(x, axis=1) + tf.reduce_sum(table)}

      m = Model()
      tf.saved_model.save(m, "BASE/1", signatures={"serving_default": m.serve})
      port = portpicker.pick_unused_port()
      front = NativeFront(f"127.0.0.1:{port}", "unix:BASE/fwd.sock", max_request_bytes=1 << 20,
                          max_response_bytes=1 << 20, enable_batching=True)
      front.start()
      front.set_models([ModelConfig("m", "BASE")])
      stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
      rss = []
      for i in range(12):
        servable = Servable("m", 1, "BASE/1")
        front.publish(servable)
        y = outputs(stub.Predict(predict_request("m", {"x": np.ones([1, 4], np.float32)}), timeout=60))["y"]
        assert y.tolist() == [4.0 + 2048 * 1024], y
        assert front.unpublish(servable)
        del servable
        gc.collect()
        rss.append(int(open("/proc/self/statm").read().split()[1]) * 4096 >> 20)
      front.shutdown()
      print("RSS", json.dumps(rss))
      """).replace("BASE", str(tmp_path))
  result = run_python(code, timeout=240, env={"MALLOC_MMAP_THRESHOLD_": str(1 << 20)})
  assert result.returncode == 0, result.stderr[-3000:]
  rss = json.loads(result.stdout.split("RSS ", 1)[1])
  assert rss[-1] - rss[1] < 20, f"RSS grew {rss[-1] - rss[1]} MiB over 10 versions: {rss}"
