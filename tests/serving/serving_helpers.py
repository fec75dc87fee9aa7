"""Models, the `python -m seed.serve` process wrapper and request helpers for the tests in tests/serving/.

The fixtures that use them (the exported models, the two server processes) are in conftest.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

import numpy as np
import portpicker
import pytest
import tensorflow as tf
from grpc_health.v1 import health_pb2_grpc
from tensorflow_serving.apis import (
  get_model_status_pb2,
  model_service_pb2_grpc,
  predict_pb2,
  prediction_service_pb2_grpc,
)

import grpc
from seed.runtime import processes
from seed.serving import health
from tests.helpers import REPO, make_policy_run

AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE
END = get_model_status_pb2.ModelVersionStatus.END
POLL_SECONDS = 0.3
# The batching server's limits (tests/serving/test_limits.py): small, so the tests can cross them cheaply.
LIMIT_BYTES = 100_000
READ_TIMEOUT = 2.0


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

  @tf.function(
    input_signature=[tf.TensorSpec([None, 2], tf.float32, name="a"), tf.TensorSpec([None], tf.int32, name="n")]
  )
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


# Every dtype a Predict request may carry (the Python path's tf.make_ndarray reads them all).
DTYPES = (
  tf.float16, tf.bfloat16, tf.float32, tf.float64, tf.int8, tf.int16, tf.int32, tf.int64,
  tf.uint8, tf.uint16, tf.uint32, tf.uint64, tf.bool, tf.string, tf.complex64, tf.complex128,
)  # fmt: skip


class Dtypes(tf.Module):
  """One signature per dtype, named after it: y = x and the shape of x."""

  def signatures(self):
    def make(dtype):
      @tf.function(input_signature=[tf.TensorSpec([None, 2], dtype, name="x")])
      def serve(x):
        return {"y": tf.identity(x), "shape": tf.shape(x, out_type=tf.int64)}

      return serve

    return {d.name: make(d) for d in DTYPES}


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
  configs = [
    f'  config {{ name: "{name}" base_path: "{path}" model_platform: "tensorflow" {policies.get(name, "")} }}'
    for name, path in models.items()
  ]
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
      stdout=self._log,
      stderr=subprocess.STDOUT,
      env=env,
      cwd=REPO,
      preexec_fn=processes.die_with_parent,
    )
    self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
    self.predict = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
    self.models = model_service_pb2_grpc.ModelServiceStub(self.channel)
    self.health = health_pb2_grpc.HealthStub(self.channel)

  def log(self) -> str:
    with open(self.log_path, encoding="utf-8", errors="replace") as f:
      return f.read()

  def wait_ready(self, timeout: float = 150.0) -> None:
    health.wait_serving(f"127.0.0.1:{self.port}", timeout, self.proc, self.log_path)

  def stop(self) -> None:
    self.channel.close()
    processes.stop(self.proc, 30)
    self._log.close()

  def rest(self, method: str, path: str, body=None, raw: bytes | None = None):
    """(HTTP status, parsed JSON body)."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(
      f"http://127.0.0.1:{self.rest_port}{path}", data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
      with urllib.request.urlopen(request, timeout=60) as r:
        return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
      return e.code, json.loads(e.read())

  def metrics(self) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{self.rest_port}/monitoring/prometheus/metrics", timeout=30) as r:
      text = r.read().decode()
    values = {}
    for line in text.splitlines():
      if line and not line.startswith("#"):
        key, value = line.rsplit(" ", 1)
        values[key] = float(value)
    return values


def predict_request(
  model: str, inputs: dict, version: int | None = None, label: str = "", signature: str = "", output_filter=()
) -> predict_pb2.PredictRequest:
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


SERVED = ("half", "half_pinned", "half_latest", "multi", "hot", "broken", "cartpole", "cartpole_lstm", "dtypes")


def served_paths(models) -> dict[str, str]:
  return {name: models["half" if name.startswith("half") else name] for name in SERVED}
