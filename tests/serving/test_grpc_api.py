"""seed.serving.grpc_api: health, Predict, GetModelMetadata and GetModelStatus (metadata and status also over REST)."""

import numpy as np
import pytest
import tensorflow as tf
from grpc_health.v1 import health_pb2
from tensorflow_serving.apis import (
  classification_pb2,
  get_model_metadata_pb2,
  get_model_status_pb2,
  inference_pb2,
  regression_pb2,
)

import grpc
from tests.serving.serving_helpers import AVAILABLE, END, outputs, predict_request, rpc_error

# --- gRPC ---------------------------------------------------------------------------------------------


def test_health_reports_serving(server):
  for service in ("", "tensorflow.serving.PredictionService", "tensorflow.serving.ModelService"):
    response = server.health.Check(health_pb2.HealthCheckRequest(service=service), timeout=30)
    assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_predict_serves_newest_version_by_default(server):
  x = np.array([1.0, 2.0, 5.0], np.float32)
  response = server.predict.Predict(predict_request("half", {"x": x}), timeout=60)
  np.testing.assert_allclose(outputs(response)["y"], 0.5 * x + 2)
  assert response.model_spec.name == "half"
  assert response.model_spec.version.value == 2
  assert response.model_spec.signature_name == "serving_default"


def test_version_label_and_policy_selection(server):
  x = np.array([4.0], np.float32)
  cases = [
    ("half", dict(version=1), 1),
    ("half", dict(version=2), 2),
    ("half", dict(label="stable"), 1),
    ("half", dict(label="canary"), 2),
    ("half_pinned", {}, 1),
    ("half_latest", {}, 2),
  ]
  for model, spec, version in cases:
    response = server.predict.Predict(predict_request(model, {"x": x}, **spec), timeout=60)
    assert response.model_spec.version.value == version, (model, spec)
    np.testing.assert_allclose(outputs(response)["y"], [2.0 + version])
  for model, spec in [
    ("half", dict(version=7)),
    ("half_pinned", dict(version=2)),
    ("half_latest", dict(version=1)),
    ("nope", {}),
  ]:
    e = rpc_error(server.predict.Predict, predict_request(model, {"x": x}, **spec))
    assert e.code() == grpc.StatusCode.NOT_FOUND, (model, spec)
    assert "Servable not found for request" in e.details() and model in e.details()
  e = rpc_error(server.predict.Predict, predict_request("half", {"x": x}, label="nightly"))
  assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "Unrecognized servable version label: nightly" in e.details()


def test_output_filter_and_signature_name(server):
  x = np.array([1.0, 3.0], np.float32)
  response = server.predict.Predict(predict_request("half", {"x": x}, signature="times_two"), timeout=60)
  assert set(response.outputs) == {"z", "b"} and response.model_spec.signature_name == "times_two"
  response = server.predict.Predict(
    predict_request("half", {"x": x}, signature="times_two", output_filter=["z"]), timeout=60
  )
  assert set(response.outputs) == {"z"}
  np.testing.assert_allclose(outputs(response)["z"], 2 * x)
  e = rpc_error(server.predict.Predict, predict_request("half", {"x": x}, output_filter=["nope"]))
  assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "nope" in e.details()
  e = rpc_error(server.predict.Predict, predict_request("half", {"x": x}, signature="classify_x"))
  assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and '"classify_x" not found' in e.details()


def test_predict_errors_name_the_input_and_keep_the_server_up(server):
  a, n = np.ones([2, 2], np.float32), np.array([1, 2], np.int32)
  cases = {
    "missing": ({"a": a}, "Missing but required: {n}"),
    "extra": ({"a": a, "n": n, "c": n}, "Send extra: {c}"),
    "dtype": ({"a": a.astype(np.float64), "n": n}, "input 'a' has dtype float64 but the signature expects float32"),
    "int dtype": ({"a": a, "n": n.astype(np.int64)}, "input 'n' has dtype int64"),
    "shape": ({"a": np.ones([2, 3], np.float32), "n": n}, "input 'a' has shape [2, 3] but the signature expects [?,2]"),
    "rank": ({"a": a, "n": np.int32(3)}, "input 'n' has shape []"),
  }
  for name, (inputs, message) in cases.items():
    e = rpc_error(server.predict.Predict, predict_request("multi", inputs))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, name
    assert message in e.details(), (name, e.details())
  e = rpc_error(server.predict.Predict, predict_request("", {"a": a, "n": n}))
  assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "Missing ModelSpec" in e.details()
  # A bad TensorProto.
  request = predict_request("multi", {"a": a, "n": n})
  request.inputs["a"].tensor_content = b"123"
  e = rpc_error(server.predict.Predict, request)
  assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "'a'" in e.details()
  # An error raised inside the model keeps its code and message.
  e = rpc_error(
    server.predict.Predict, predict_request("half", {"x": np.array([-1.0], np.float32)}, signature="checked")
  )
  assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "x must be >= 0" in e.details()
  # Unimplemented APIs.
  for method, request in [
    (server.predict.Classify, classification_pb2.ClassificationRequest()),
    (server.predict.Regress, regression_pb2.RegressionRequest()),
    (server.predict.MultiInference, inference_pb2.MultiInferenceRequest()),
  ]:
    e = rpc_error(method, request)
    assert e.code() == grpc.StatusCode.UNIMPLEMENTED and "not implemented" in e.details()
  # Still serving.
  response = server.predict.Predict(predict_request("multi", {"a": a, "n": n}), timeout=60)
  np.testing.assert_allclose(outputs(response)["sum"], [3.0, 4.0])
  assert (
    server.health.Check(health_pb2.HealthCheckRequest(), timeout=30).status == health_pb2.HealthCheckResponse.SERVING
  )


def test_model_metadata_grpc_and_rest(server, models):
  request = get_model_metadata_pb2.GetModelMetadataRequest()
  request.model_spec.name = "multi"
  e = rpc_error(server.predict.GetModelMetadata, request)
  assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "metadata_field" in e.details()
  request.metadata_field.append("signature_def")
  response = server.predict.GetModelMetadata(request, timeout=60)
  assert response.model_spec.name == "multi" and response.model_spec.version.value == 1
  sig_map = get_model_metadata_pb2.SignatureDefMap()
  assert response.metadata["signature_def"].Unpack(sig_map)
  sig = sig_map.signature_def["serving_default"]
  assert sig.method_name == "tensorflow/serving/predict"
  assert set(sig.inputs) == {"a", "n"} and set(sig.outputs) == {"sum", "a2"}
  assert sig.inputs["a"].dtype == tf.float32.as_datatype_enum
  assert [d.size for d in sig.inputs["a"].tensor_shape.dim] == [-1, 2]
  assert set(sig_map.signature_def["echo"].inputs) == {"s"}
  request.metadata_field[:] = ["signature_def", "bogus"]
  e = rpc_error(server.predict.GetModelMetadata, request)
  assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "bogus" in e.details()

  # The policy's metadata over REST, as TF Serving prints it.
  code, body = server.rest("GET", "/v1/models/cartpole/metadata")
  assert code == 200
  assert body["model_spec"] == {"name": "cartpole", "signature_name": "", "version": "7"}
  policy = body["metadata"]["signature_def"]["signature_def"]["serving_default"]
  assert policy["inputs"]["observation"]["dtype"] == "DT_FLOAT"
  assert policy["inputs"]["observation"]["tensor_shape"]["dim"] == [{"size": "-1"}, {"size": "4"}]
  assert set(policy["outputs"]) == {"action", "greedy_action", "logits", "value"}
  code, body = server.rest("GET", "/v1/models/half/versions/1/metadata")
  assert code == 200 and body["model_spec"]["version"] == "1"
  code, body = server.rest("GET", "/v1/models/nope/metadata")
  assert code == 404 and "nope" in body["error"]


def test_model_status_grpc_and_rest(server):
  def status(name, version=None, label=""):
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = name
    if version is not None:
      request.model_spec.version.value = version
    if label:
      request.model_spec.version_label = label
    return server.models.GetModelStatus(request, timeout=60)

  assert [(s.version, s.state) for s in status("half").model_version_status] == [(2, AVAILABLE), (1, AVAILABLE)]
  assert [(s.version, s.state) for s in status("half", 1).model_version_status] == [(1, AVAILABLE)]
  assert [s.version for s in status("half", label="canary").model_version_status] == [2]
  assert [(s.version, s.state) for s in status("half_latest").model_version_status] == [(2, AVAILABLE)]
  broken = status("broken").model_version_status
  assert [(s.version, s.state) for s in broken] == [(1, END)]
  assert broken[0].status.error_code != 0 and "loading version 1 of model broken" in broken[0].status.error_message
  for args in [("nope",), ("half", 9)]:
    with pytest.raises(grpc.RpcError) as info:
      status(*args)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND

  code, body = server.rest("GET", "/v1/models/half_latest")
  assert code == 200
  assert body == {
    "model_version_status": [
      {"version": "2", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
    ]
  }
  code, body = server.rest("GET", "/v1/models/half/labels/stable")
  assert code == 200 and [s["version"] for s in body["model_version_status"]] == ["1"]
  code, body = server.rest("GET", "/v1/models/nope")
  assert code == 404 and body["error"] == "Could not find any versions of model nope"
