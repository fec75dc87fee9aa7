"""Tests for seed.serving (`python -m seed.serve`): TF Serving's gRPC and REST APIs over SavedModels built here.

Two `python -m seed.serve` processes: one with a model config file (several
models, version policies, labels, hot reload, REST, errors, V-trace CartPole
policies) and one with --model_name and --enable_batching. Clients are the
real tensorflow_serving.apis stubs, grpc_health and urllib.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import grpc
import numpy as np
import portpicker
import pytest
import tensorflow as tf
from google.protobuf import text_format
from grpc_health.v1 import health_pb2
from grpc_health.v1 import health_pb2_grpc
from tensorflow_serving.apis import classification_pb2
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import inference_pb2
from tensorflow_serving.apis import model_management_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc
from tensorflow_serving.apis import regression_pb2

import envs
from seed import evaluate as ev
from seed import processes
from seed.serving.batching import Batcher
from seed.serving.config import parse_config_text
from seed.serving.errors import ServingError
from seed.serving.models import Servable, scan_versions
from seed.serving.server import tensor_rpc_function
from tests.helpers import make_policy_run

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE
END = get_model_status_pb2.ModelVersionStatus.END
POLL_SECONDS = 0.3


# --- models -----------------------------------------------------------------------------------------


class Half(tf.Module):
  """Version v: y = 0.5 * x + v (so every answer tells which version computed it)."""

  def __init__(self, version: int):
    super().__init__()
    self.b = tf.Variable(float(version))

  @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
  def serve(self, x):
    return {"y": 0.5 * x + self.b}

  @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
  def times_two(self, x):
    return {"z": 2.0 * x, "b": tf.fill(tf.shape(x), self.b)}

  @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
  def checked(self, x):
    with tf.control_dependencies([tf.debugging.assert_non_negative(x, message="x must be >= 0")]):
      return {"y": tf.identity(x)}

  def signatures(self):
    return {"serving_default": self.serve, "times_two": self.times_two, "checked": self.checked}


class Multi(tf.Module):
  """Two inputs and two outputs; a string signature."""

  @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="a"),
                                tf.TensorSpec([None], tf.int32, name="n")])
  def serve(self, a, n):
    return {"sum": tf.reduce_sum(a, 1) + tf.cast(n, tf.float32), "a2": 2.0 * a}

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="s")])
  def echo(self, s):
    return {"length": tf.strings.length(s), "upper": tf.strings.upper(s)}

  def signatures(self):
    return {"serving_default": self.serve, "echo": self.echo}


class BatchSize(tf.Module):
  """Returns, for every row, the number of rows the model ran with."""

  @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
  def serve(self, x):
    n = tf.shape(x)[0]
    return {"y": 2.0 * x, "batch_size": tf.fill([n], n)}

  def signatures(self):
    return {"serving_default": self.serve}


def export(module, path: str) -> None:
  """Writes a SavedModel like Learner.save does: to <path>.tmp, then renamed."""
  tf.saved_model.save(module, path + ".tmp", signatures=module.signatures())
  os.replace(path + ".tmp", path)


def make_serving_run(logdir: str, lstm_size: int = 0) -> str:
  """A V-trace CartPole run directory (config.json + export/7) with random weights."""
  return make_policy_run(logdir, (7,), lstm_size=lstm_size, seed=5)


def model_config_text(models: dict[str, str], extra: str = "") -> str:
  """A ModelServerConfig text proto; `models` maps name -> base path (+ policies below)."""
  policies = {
      "half": 'model_version_policy { all {} } version_labels { key: "stable" value: 1 } '
              'version_labels { key: "canary" value: 2 }',
      "half_pinned": "model_version_policy { specific { versions: 1 } }",
  }
  configs = [f'  config {{ name: "{name}" base_path: "{path}" model_platform: "tensorflow" {policies.get(name, "")} }}'
             for name, path in models.items()]
  return "model_config_list {\n" + "\n".join(configs) + extra + "\n}\n"


# --- server processes ---------------------------------------------------------------------------------


class ServeProcess:
  """`python -m seed.serve ...` on free ports; stopped (and waited for) by stop()."""

  def __init__(self, args: list[str], log_path: str, rest: bool = True):
    self.port = portpicker.pick_unused_port()
    self.rest_port = portpicker.pick_unused_port() if rest else 0
    self.log_path = log_path
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)
    self._log = open(log_path, "w", encoding="utf-8")  # pylint: disable=consider-using-with
    self.proc = subprocess.Popen(  # pylint: disable=consider-using-with
        [sys.executable, "-m", "seed.serve", f"--port={self.port}", f"--rest_api_port={self.rest_port}", *args],
        stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=REPO, preexec_fn=processes.die_with_parent)
    self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
    self.predict = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
    self.models = model_service_pb2_grpc.ModelServiceStub(self.channel)
    self.health = health_pb2_grpc.HealthStub(self.channel)

  def log(self) -> str:
    with open(self.log_path, encoding="utf-8", errors="replace") as f:
      return f.read()

  def wait_ready(self, timeout: float = 150.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
      assert self.proc.poll() is None, f"seed.serve exited with {self.proc.returncode}:\n{self.log()[-3000:]}"
      try:
        if self.health.Check(health_pb2.HealthCheckRequest(), timeout=1).status == \
            health_pb2.HealthCheckResponse.SERVING:
          return
      except grpc.RpcError:
        time.sleep(0.2)
    raise AssertionError(f"seed.serve not ready after {timeout}s:\n{self.log()[-3000:]}")

  def stop(self) -> None:
    self.channel.close()
    processes.stop(self.proc, 30)
    self._log.close()

  def rest(self, method: str, path: str, body=None, raw: bytes | None = None):
    """(HTTP status, parsed JSON body)."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(f"http://127.0.0.1:{self.rest_port}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
      with urllib.request.urlopen(request, timeout=60) as r:
        return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
      return e.code, json.loads(e.read())

  def metrics(self) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{self.rest_port}/monitoring/prometheus/metrics",
                                timeout=30) as r:
      text = r.read().decode()
    values = {}
    for line in text.splitlines():
      if line and not line.startswith("#"):
        key, value = line.rsplit(" ", 1)
        values[key] = float(value)
    return values


def predict_request(model: str, inputs: dict, version: int | None = None, label: str = "",
                    signature: str = "", output_filter=()) -> predict_pb2.PredictRequest:
  request = predict_pb2.PredictRequest()
  request.model_spec.name = model
  if version is not None:
    request.model_spec.version.value = version
  if label:  # version and version_label are a oneof
    request.model_spec.version_label = label
  request.model_spec.signature_name = signature
  for k, v in inputs.items():
    request.inputs[k].CopyFrom(tf.make_tensor_proto(v))
  request.output_filter.extend(output_filter)
  return request


def outputs(response) -> dict[str, np.ndarray]:
  return {k: tf.make_ndarray(v) for k, v in response.outputs.items()}


def rpc_error(fn, *args, **kwargs) -> grpc.RpcError:
  with pytest.raises(grpc.RpcError) as info:
    fn(*args, timeout=60, **kwargs)
  return info.value


# --- fixtures -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def models(tmp_path_factory):
  root = tmp_path_factory.mktemp("serve")
  paths = {name: str(root / name) for name in ("half", "multi", "hot", "broken")}
  for v in (1, 2):
    export(Half(v), os.path.join(paths["half"], str(v)))
  export(Multi(), os.path.join(paths["multi"], "1"))
  export(Half(1), os.path.join(paths["hot"], "1"))
  os.makedirs(os.path.join(paths["broken"], "1"))
  with open(os.path.join(paths["broken"], "1", "saved_model.pb"), "wb") as f:
    f.write(b"this is not a SavedModel")
  export(BatchSize(), str(root / "batch" / "1"))
  cartpole = make_serving_run(str(root / "cartpole"))
  lstm = make_serving_run(str(root / "cartpole_lstm"), lstm_size=8)
  return dict(root=str(root), **paths, batch=str(root / "batch"), cartpole_run=cartpole, lstm_run=lstm,
              cartpole=os.path.join(cartpole, "export"), cartpole_lstm=os.path.join(lstm, "export"))


SERVED = ("half", "half_pinned", "half_latest", "multi", "hot", "broken", "cartpole", "cartpole_lstm")


def served_paths(models) -> dict[str, str]:
  return {name: models["half" if name.startswith("half") else name] for name in SERVED}


@pytest.fixture(scope="module")
def servers(models):
  """Both server processes, started together (their TensorFlow imports overlap)."""
  config = os.path.join(models["root"], "models.config")
  with open(config, "w", encoding="utf-8") as f:
    f.write(model_config_text(served_paths(models)))
  procs = {}
  try:
    procs["main"] = ServeProcess([f"--model_config_file={config}",
                                  f"--file_system_poll_wait_seconds={POLL_SECONDS}"],
                                 os.path.join(models["root"], "server.log"))
    procs["batch"] = ServeProcess(["--model_name=batch", f"--model_base_path={models['batch']}", "--enable_batching",
                                   "--max_batch_size=4", "--batch_timeout_micros=300000",
                                   "--file_system_poll_wait_seconds=0"],
                                  os.path.join(models["root"], "batch_server.log"))
    for proc in procs.values():
      proc.wait_ready()
    yield procs
  finally:
    for proc in procs.values():
      proc.stop()


@pytest.fixture(scope="module")
def server(servers):
  return servers["main"]


@pytest.fixture(scope="module")
def batch_server(servers):
  return servers["batch"]


# --- config parsing (in process) ----------------------------------------------------------------------


def test_config_parsing():
  configs = parse_config_text("""
      model_config_list {
        config { name: "a" base_path: "/m/a" model_platform: "tensorflow" }
        config { name: "b" base_path: "/m/b" model_version_policy { latest { num_versions: 2 } }
                 version_labels { key: "stable" value: 4 } }
        config { name: "c" base_path: "/m/c" model_version_policy { all {} } }
        config { name: "d" base_path: "/m/d" model_version_policy { specific { versions: 3 versions: 5 } } }
      }""")
  a, b, c, d = configs
  available = [1, 3, 4, 5, 10]
  assert (a.name, a.base_path, a.aspired(available)) == ("a", "/m/a", {10})
  assert b.aspired(available) == {5, 10} and dict(b.labels) == {"stable": 4}
  assert c.aspired(available) == set(available)
  assert d.aspired(available) == {3, 5} and d.aspired([1]) == set()
  for bad, message in [('config { name: "a" base_path: "/x" model_platform: "pytorch" }', "pytorch"),
                       ('config { name: "a" base_path: "/x" } config { name: "a" base_path: "/y" }', "twice"),
                       ('config { name: "a" }', "base_path"),
                       ('config { name: "a" base_path: "/x" model_version_policy { specific {} } }', "specific"),
                       ("config { nme: 1 }", "cannot parse")]:
    with pytest.raises(ValueError, match=message):
      parse_config_text("model_config_list { " + bad + " }")


def test_scan_versions_skips_partial_exports(tmp_path):
  export(Half(1), str(tmp_path / "3"))
  (tmp_path / "4" / "variables").mkdir(parents=True)  # being written: no saved_model.pb yet
  export(Half(1), str(tmp_path / "5.tmp"))  # being written, Learner.save style
  (tmp_path / "notes").mkdir()
  assert scan_versions(str(tmp_path)) == {3: str(tmp_path / "3")}
  assert not scan_versions(str(tmp_path / "missing"))


def test_batcher_gives_every_caller_its_rows():
  batcher = Batcher(max_batch_size=4, timeout=0.02)
  runs = []

  def fn(inputs):
    runs.append(len(inputs["x"]))
    time.sleep(0.001)
    return {"y": inputs["x"] * 10, "n": np.full([len(inputs["x"])], len(inputs["x"]))}

  def call(i):
    rows = 1 + i % 3
    x = np.arange(i * 10, i * 10 + rows)
    out, batch_rows = batcher.run("key", fn, {"x": x}, rows)
    assert out["y"].tolist() == (x * 10).tolist() and (out["n"] == batch_rows).all()
    return batch_rows

  results = [None] * 40
  threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, call(i))) for i in range(40)]
  for t in threads:
    t.start()
  for t in threads:
    t.join(30)
  assert all(r is not None for r in results), "a caller never got its answer"
  assert max(runs) <= 4 and sum(runs) == sum(1 + i % 3 for i in range(40)) and len(runs) < 40

  def failing(inputs):
    raise ServingError(grpc.StatusCode.INTERNAL, "boom")
  with pytest.raises(ServingError, match="boom"):
    batcher.run("other", failing, {"x": np.ones([1])}, 1)


def test_both_entry_points_list_the_flags():
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)
  procs = [subprocess.Popen([sys.executable, "-m", module, "--help"], stdout=subprocess.PIPE,  # pylint: disable=consider-using-with
                            stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO)
           for module in ("seed.serve", "seed.serving")]
  for proc in procs:
    out, _ = proc.communicate(timeout=120)
    assert "--model_base_path" in out and "--tensor_rpc_address" in out, out[-3000:]


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
  cases = [("half", dict(version=1), 1), ("half", dict(version=2), 2), ("half", dict(label="stable"), 1),
           ("half", dict(label="canary"), 2), ("half_pinned", {}, 1), ("half_latest", {}, 2)]
  for model, spec, version in cases:
    response = server.predict.Predict(predict_request(model, {"x": x}, **spec), timeout=60)
    assert response.model_spec.version.value == version, (model, spec)
    np.testing.assert_allclose(outputs(response)["y"], [2.0 + version])
  for model, spec in [("half", dict(version=7)), ("half_pinned", dict(version=2)), ("half_latest", dict(version=1)),
                      ("nope", {})]:
    e = rpc_error(server.predict.Predict, predict_request(model, {"x": x}, **spec))
    assert e.code() == grpc.StatusCode.NOT_FOUND, (model, spec)
    assert "Servable not found for request" in e.details() and model in e.details()
  e = rpc_error(server.predict.Predict, predict_request("half", {"x": x}, label="nightly"))
  assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "Unrecognized servable version label: nightly" in e.details()


def test_output_filter_and_signature_name(server):
  x = np.array([1.0, 3.0], np.float32)
  response = server.predict.Predict(predict_request("half", {"x": x}, signature="times_two"), timeout=60)
  assert set(response.outputs) == {"z", "b"} and response.model_spec.signature_name == "times_two"
  response = server.predict.Predict(predict_request("half", {"x": x}, signature="times_two", output_filter=["z"]),
                                    timeout=60)
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
  e = rpc_error(server.predict.Predict, predict_request("half", {"x": np.array([-1.0], np.float32)},
                                                        signature="checked"))
  assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "x must be >= 0" in e.details()
  # Unimplemented APIs.
  for method, request in [(server.predict.Classify, classification_pb2.ClassificationRequest()),
                          (server.predict.Regress, regression_pb2.RegressionRequest()),
                          (server.predict.MultiInference, inference_pb2.MultiInferenceRequest())]:
    e = rpc_error(method, request)
    assert e.code() == grpc.StatusCode.UNIMPLEMENTED and "not implemented" in e.details()
  # Still serving.
  response = server.predict.Predict(predict_request("multi", {"a": a, "n": n}), timeout=60)
  np.testing.assert_allclose(outputs(response)["sum"], [3.0, 4.0])
  assert server.health.Check(health_pb2.HealthCheckRequest(), timeout=30).status == \
      health_pb2.HealthCheckResponse.SERVING


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
  assert body == {"model_version_status": [{"version": "2", "state": "AVAILABLE",
                                            "status": {"error_code": "OK", "error_message": ""}}]}
  code, body = server.rest("GET", "/v1/models/half/labels/stable")
  assert code == 200 and [s["version"] for s in body["model_version_status"]] == ["1"]
  code, body = server.rest("GET", "/v1/models/nope")
  assert code == 404 and body["error"] == "Could not find any versions of model nope"


# --- REST ---------------------------------------------------------------------------------------------


def test_rest_predict_row_and_columnar_formats(server):
  code, body = server.rest("POST", "/v1/models/half:predict", {"instances": [1.0, 2.0, 5.0]})
  assert (code, body) == (200, {"predictions": [2.5, 3.0, 4.5]})
  code, body = server.rest("POST", "/v1/models/half/versions/1:predict", {"inputs": [1, 2]})
  assert (code, body) == (200, {"outputs": [1.5, 2.0]})
  code, body = server.rest("POST", "/v1/models/half/labels/stable:predict", {"inputs": {"x": [0.1]}})
  assert (code, body) == (200, {"outputs": [1.05]})  # float32 printed at float32 precision
  code, body = server.rest("POST", "/v1/models/half:predict",
                           {"signature_name": "times_two", "instances": [{"x": 1.0}, {"x": 4.0}]})
  assert (code, body) == (200, {"predictions": [{"z": 2.0, "b": 2.0}, {"z": 8.0, "b": 2.0}]})

  # Several inputs: objects per instance (row) or per input (columnar).
  code, body = server.rest("POST", "/v1/models/multi:predict",
                           {"instances": [{"a": [1, 2], "n": 3}, {"a": [0.5, 0.25], "n": 0}]})
  assert (code, body) == (200, {"predictions": [{"sum": 6.0, "a2": [2.0, 4.0]}, {"sum": 0.75, "a2": [1.0, 0.5]}]})
  code, body = server.rest("POST", "/v1/models/multi:predict", {"inputs": {"a": [[1, 2], [3, 4]], "n": [1, 2]}})
  assert (code, body) == (200, {"outputs": {"sum": [4.0, 9.0], "a2": [[2.0, 4.0], [6.0, 8.0]]}})

  # Strings, plain or base64.
  code, body = server.rest("POST", "/v1/models/multi:predict",
                           {"signature_name": "echo",
                            "instances": ["ab", {"b64": base64.b64encode(b"xyz").decode()}]})
  assert (code, body) == (200, {"predictions": [{"length": 2, "upper": "AB"}, {"length": 3, "upper": "XYZ"}]})

  # A recurrent policy: the state is just more named inputs.
  code, body = server.rest("POST", "/v1/models/cartpole_lstm:predict",
                           {"instances": [{"observation": [0.0, 0.1, 0.0, -0.1], "state_0": [0.0] * 8,
                                           "state_1": [0.0] * 8}]})
  assert code == 200, body
  prediction = body["predictions"][0]
  assert set(prediction) == {"action", "greedy_action", "logits", "value", "state_0", "state_1"}
  assert len(prediction["state_0"]) == 8 and prediction["greedy_action"] in (0, 1)


def test_rest_errors(server):
  cases = [
      ("/v1/models/nope:predict", {"instances": [1.0]}, 404, "Servable not found for request: Latest(nope)"),
      ("/v1/models/half/versions/9:predict", {"instances": [1.0]}, 404, "Specific(half, 9)"),
      ("/v1/models/half/labels/nightly:predict", {"instances": [1.0]}, 400, "Unrecognized servable version label"),
      ("/v1/models/half/versions/x1:predict", {"instances": [1.0]}, 400, "Failed to convert version"),
      ("/v1/models/half:predict", {"instances": ["a"]}, 400, "not of expected type: float32"),
      ("/v1/models/half:predict", {"instances": [1.5, "a"]}, 400, 'value "a" is not of expected type: float32'),
      ("/v1/models/multi:predict", {"instances": [{"a": [1, 2], "n": 2 ** 40}]}, 400, "out of range for int32"),
      ("/v1/models/half:predict", {"instances": [[1.0], [2.0]]}, 400, "input 'x' has shape [2, 1]"),
      ("/v1/models/half:predict", {"inputs": {"x": [1.0], "w": [2.0]}}, 400, "Send extra: {w}"),
      ("/v1/models/half:predict", {"instances": [1.0], "inputs": [1.0]}, 400, "Both 'inputs' and 'instances'"),
      ("/v1/models/half:predict", {"signature_name": 3, "inputs": [1.0]}, 400, "'signature_name' key must be a string"),
      ("/v1/models/half:predict", {"x": [1.0]}, 400, "Missing 'inputs' or 'instances' key"),
      ("/v1/models/multi:predict", {"instances": [{"a": [1, 2], "n": 1}, {"a": [1, 2]}]}, 400, "Failed to process element: 1"),
      ("/v1/models/multi:predict", {"instances": [{"a": [1, 2, 3], "n": 1}]}, 400, "input 'a' has shape [1, 3]"),
      ("/v1/models/multi:predict", {"instances": [{"a": [1, 2], "n": 1.5}]}, 400, "not of expected type: int32"),
      ("/v1/models/multi:predict", {"instances": [[1, 2]]}, 400, "objects keyed by input name"),
      ("/v1/models/multi:predict", {"inputs": {"a": [[1, 2], [3]], "n": [1, 1]}}, 400, "input 'a'"),
      ("/v1/models/half:predict", {"signature_name": "checked", "inputs": [-2.0]}, 400, "x must be >= 0"),
      ("/v1/models/half:classify", {"examples": []}, 501, "not implemented"),
      ("/v1/models/half:regress", {"examples": []}, 501, "not implemented"),
  ]
  for path, body, want_code, message in cases:
    code, answer = server.rest("POST", path, body)
    assert code == want_code and message in answer["error"], (path, body, code, answer)
  for raw, message in [(b"instances = [1, 2]", "JSON Parse error"), (b"", "JSON Parse error: The document is empty"),
                       (b'{"instances": [1.0', "JSON Parse error"), (b"[1, 2]", "JSON object"),
                       (b"\xff\xfe", "JSON Parse error")]:
    code, answer = server.rest("POST", "/v1/models/half:predict", raw=raw)
    assert code == 400 and message in answer["error"], (raw, answer)
  code, answer = server.rest("GET", "/v1/models/half:predict")
  assert code == 400 and "Malformed request" in answer["error"]
  code, answer = server.rest("GET", "/index.html")
  assert code == 404 and "error" in answer
  # Still serving.
  assert server.rest("POST", "/v1/models/half:predict", {"instances": [0.0]}) == (200, {"predictions": [2.0]})


# --- versions appearing while serving -----------------------------------------------------------------


def test_hot_reload_while_requests_run(server, models):
  base = models["hot"]
  stop = threading.Event()
  seen: list[int] = []
  failures: list[str] = []
  lock = threading.Lock()

  def grpc_client():
    x = np.array([2.0], np.float32)
    while not stop.is_set():
      try:
        response = server.predict.Predict(predict_request("hot", {"x": x}), timeout=60)
        version = response.model_spec.version.value
        y = outputs(response)["y"]
        if not np.allclose(y, [1.0 + version]):  # Half(v) answers 0.5 * 2 + v
          failures.append(f"version {version} answered {y}")
        with lock:
          seen.append(version)
      except grpc.RpcError as e:
        failures.append(f"gRPC {e.code()}: {e.details()}")

  def rest_client():
    while not stop.is_set():
      code, body = server.rest("POST", "/v1/models/hot:predict", {"instances": [2.0]})
      if code != 200 or body["predictions"][0] not in (2.0, 4.0):
        failures.append(f"REST {code}: {body}")

  threads = [threading.Thread(target=grpc_client) for _ in range(3)] + [threading.Thread(target=rest_client)]
  for t in threads:
    t.start()
  try:
    time.sleep(1.0)
    # Partial exports: a numbered folder without saved_model.pb, and a <step>.tmp folder.
    os.makedirs(os.path.join(base, "4", "variables"))
    v3 = Half(3)
    tf.saved_model.save(v3, os.path.join(base, "3.tmp"), signatures=v3.signatures())
    time.sleep(3 * POLL_SECONDS)
    os.replace(os.path.join(base, "3.tmp"), os.path.join(base, "3"))  # complete: served from the next poll
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not seen or seen[-1] != 3):
      time.sleep(0.1)
    time.sleep(1.0)  # keep requests going across the unload of version 1
  finally:
    stop.set()
    for t in threads:
      t.join(60)
  assert not failures, failures[:5]
  assert seen[0] == 1 and seen[-1] == 3 and set(seen) == {1, 3}
  request = get_model_status_pb2.GetModelStatusRequest()
  request.model_spec.name = "hot"
  states = {s.version: s.state for s in server.models.GetModelStatus(request, timeout=60).model_version_status}
  assert states == {3: AVAILABLE, 1: END}  # 4 has no saved_model.pb: not a version

  # Completing folder 4 in place (a plain copy) makes it the newest version.
  tmp = os.path.join(models["root"], "half4")
  v4 = Half(4)
  tf.saved_model.save(v4, tmp, signatures=v4.signatures())
  shutil.rmtree(os.path.join(base, "4"))
  shutil.copytree(tmp, os.path.join(base, "4"))
  deadline = time.monotonic() + 60
  while time.monotonic() < deadline:
    response = server.predict.Predict(predict_request("hot", {"x": np.array([2.0], np.float32)}), timeout=60)
    if response.model_spec.version.value == 4:
      break
    time.sleep(0.1)
  assert response.model_spec.version.value == 4 and outputs(response)["y"][0] == 5.0


def test_reload_config_replaces_the_models(server, models):
  paths = served_paths(models)

  def reload(text: str):
    request = model_management_pb2.ReloadConfigRequest()
    text_format.Parse(text, request.config)
    return server.models.HandleReloadConfigRequest(request, timeout=120)

  x = {"x": np.array([1.0], np.float32)}
  bad = model_config_text({"half": paths["half"]}).replace('"tensorflow"', '"pytorch"')
  with pytest.raises(grpc.RpcError) as info:
    reload(bad)
  assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "pytorch" in info.value.details()
  multi = predict_request("multi", {"a": np.ones([1, 2], np.float32), "n": np.ones([1], np.int32)})
  server.predict.Predict(multi, timeout=60)
  try:
    smaller = {k: v for k, v in paths.items() if k != "multi"}
    smaller["renamed"] = paths["half"]
    response = reload(model_config_text(smaller))
    assert response.status.error_code == 0
    assert server.predict.Predict(predict_request("renamed", x), timeout=60).model_spec.version.value == 2
    e = rpc_error(server.predict.Predict, multi)
    assert e.code() == grpc.StatusCode.NOT_FOUND
    assert server.rest("GET", "/v1/models/renamed")[0] == 200
    assert server.rest("GET", "/v1/models/multi")[0] == 404
  finally:
    reload(model_config_text(paths))
  server.predict.Predict(multi, timeout=60)
  assert server.predict.Predict(predict_request("half", x, version=1), timeout=60).model_spec.version.value == 1


# --- policies -----------------------------------------------------------------------------------------


def play_over_grpc(server, model: str, logdir: str, episodes: int) -> list[tuple[float, int]]:
  """Greedy episodes stepped through Predict, the recurrent state fed back like seed.evaluate does."""
  status = get_model_status_pb2.GetModelStatusRequest()
  status.model_spec.name = model
  version = server.models.GetModelStatus(status, timeout=60).model_version_status[0].version
  request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
  request.model_spec.name = model
  sig_map = get_model_metadata_pb2.SignatureDefMap()
  server.predict.GetModelMetadata(request, timeout=60).metadata["signature_def"].Unpack(sig_map)
  state_inputs = {k: v for k, v in sig_map.signature_def["serving_default"].inputs.items() if k.startswith("state_")}
  env = envs.make(ev.load_config(logdir).env, 0)
  results = []
  try:
    for i in range(episodes):
      obs, _ = env.reset(seed=i)
      state = {k: np.zeros([1] + [d.size for d in v.tensor_shape.dim[1:]], np.float32) for k, v in state_inputs.items()}
      total, length, done = 0.0, 0, False
      while not done:
        response = server.predict.Predict(
            predict_request(model, {"observation": obs[None].astype(np.float32), **state}, version=version),
            timeout=60)
        out = outputs(response)
        state = {k: out[k] for k in state}
        obs, reward, terminated, truncated, _ = env.step(int(out["greedy_action"][0]))
        total += float(reward)
        length += 1
        done = terminated or truncated
      results.append((total, length))
  finally:
    env.close()
  return results


def test_cartpole_policy_plays_like_evaluate(server, models):
  expected = ev.evaluate(models["cartpole_run"], episodes=2, seed=0, greedy=True, verbose=False)
  assert play_over_grpc(server, "cartpole", models["cartpole_run"], 2) == expected


def test_recurrent_policy_steps_its_state(server, models):
  expected = ev.evaluate(models["lstm_run"], episodes=2, seed=0, greedy=True, verbose=False)
  assert play_over_grpc(server, "cartpole_lstm", models["lstm_run"], 2) == expected


# --- batching -----------------------------------------------------------------------------------------


def test_concurrent_requests_are_batched(batch_server):
  n_grpc, n_rest = 8, 2
  barrier = threading.Barrier(n_grpc + n_rest)
  results: dict[int, object] = {}

  def call_grpc(i):
    x = np.full([1, 3], i, np.float32)
    barrier.wait()
    try:
      results[i] = outputs(batch_server.predict.Predict(predict_request("batch", {"x": x}), timeout=60))
    except grpc.RpcError as e:
      results[i] = e

  def call_rest(i):
    barrier.wait()
    code, body = batch_server.rest("POST", "/v1/models/batch:predict", {"instances": [[i, i, i]]})
    results[i] = body["predictions"][0] if code == 200 else body

  threads = [threading.Thread(target=call_grpc, args=(i,)) for i in range(n_grpc)]
  threads += [threading.Thread(target=call_rest, args=(n_grpc + i,)) for i in range(n_rest)]
  for t in threads:
    t.start()
  for t in threads:
    t.join(120)
  sizes = []
  for i in range(n_grpc):
    out = results[i]
    assert isinstance(out, dict), out
    np.testing.assert_allclose(out["y"], np.full([1, 3], 2.0 * i))  # this caller's row, not another's
    sizes.append(int(out["batch_size"][0]))
  for i in range(n_grpc, n_grpc + n_rest):
    assert results[i]["y"] == [2.0 * i] * 3, results[i]
    sizes.append(results[i]["batch_size"])
  assert max(sizes) > 1 and max(sizes) <= 4, sizes  # merged, never past --max_batch_size
  metrics = batch_server.metrics()
  requests = metrics['seed_serve_requests_total{model_name="batch"}']
  runs = metrics['seed_serve_runs_total{model_name="batch"}']
  assert requests == n_grpc + n_rest and runs < requests
  assert metrics['seed_serve_batched_requests_total{model_name="batch"}'] >= 2

  # Larger than max_batch_size: runs alone, still correct.
  x = np.arange(18, dtype=np.float32).reshape(6, 3)
  out = outputs(batch_server.predict.Predict(predict_request("batch", {"x": x}), timeout=60))
  np.testing.assert_allclose(out["y"], 2 * x)
  assert out["batch_size"].tolist() == [6] * 6
  # Errors in one request do not touch the batch machinery.
  e = rpc_error(batch_server.predict.Predict, predict_request("batch", {"x": np.ones([1, 2], np.float32)}))
  assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "input 'x'" in e.details()


# --- calls from inside a graph ------------------------------------------------------------------------


def test_tensor_rpc_binding_of_a_recurrent_policy(models, sock_dir):
  from seed import grpc as tensor_rpc  # pylint: disable=g-import-not-at-top
  servable = Servable("lstm", 7, os.path.join(models["cartpole_lstm"], "7"))
  sig = servable.signatures["serving_default"]
  fn = tensor_rpc_function(sig)
  assert [s.name for s in fn.input_signature] == ["observation", "state_0", "state_1"]
  address = f"unix:{sock_dir}/policy.sock"
  server = tensor_rpc.Server([address])
  server.bind(fn, name="lstm", batched=False)
  server.start()
  try:
    obs, s0, s1 = np.ones([2, 4], np.float32), np.full([2, 8], 0.5, np.float32), np.zeros([2, 8], np.float32)
    out = tensor_rpc.Client(address, connect_timeout=30).lstm(obs, s0, s1)
    want = sig.fn(observation=obs, state_0=s0, state_1=s1)
    for k in ("logits", "value", "greedy_action", "state_0", "state_1"):
      np.testing.assert_allclose(out[k].numpy(), want[k].numpy(), rtol=1e-6)
  finally:
    server.shutdown()


def test_remote_half_plus_two_example():
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)
  proc = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "remote_half_plus_two.py")],
                        capture_output=True, text=True, timeout=240, env=env, cwd=REPO)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  lines = proc.stdout.splitlines()
  ok = "half_plus_two([1.0, 2.0, 5.0]) = [2.5, 3.0, 4.5]  status 0 (OK)"
  assert [l for l in lines if l.endswith(ok)] == [f"in this process: {ok}", f"reloaded SavedModel: {ok}",
                                                  f"reloaded serving_default: {ok}"]
  gone = [l for l in lines if l.startswith("remote server gone:")]
  assert len(gone) == 1 and "= [0.5, 1.0, 2.5]  status 14 (UNAVAILABLE)" in gone[0]
  assert lines[-1] == "OK"
