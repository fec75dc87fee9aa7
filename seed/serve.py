"""Serves exported policies (SavedModels) with TF Serving's gRPC and REST APIs.

    python -m seed.serve --model_name pong --model_base_path runs/pong/export \\
        --port 8500 --rest_api_port 8501
    python -m seed.serve --model_config_file models.config [--enable_batching]

The manual (config files, versions, REST formats, batching, errors, recurrent
policies, tensor-RPC binding) is docs/serving.md.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import gc
import http.server
import json
import os
import re
import signal
import socket
import sys
import threading
import time
from concurrent import futures
from typing import Any, Callable

import grpc
import numpy as np
import tensorflow as tf
from absl import app
from absl import flags
from absl import logging
from google.protobuf import json_format
from google.protobuf import text_format
from grpc_health.v1 import health
from grpc_health.v1 import health_pb2
from grpc_health.v1 import health_pb2_grpc
from tensorflow.core.framework import tensor_shape_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_management_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc
from tensorflow_serving.config import model_server_config_pb2

DEFAULT_SIGNATURE = "serving_default"
PREDICT_SERVICE = "tensorflow.serving.PredictionService"
MODEL_SERVICE = "tensorflow.serving.ModelService"
MAX_MESSAGE_SIZE = 256 << 20

_State = get_model_status_pb2.ModelVersionStatus.State
_CODE_BY_NUMBER = {c.value[0]: c for c in grpc.StatusCode}
_HTTP_STATUS = {
    grpc.StatusCode.OK: 200, grpc.StatusCode.CANCELLED: 499, grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504, grpc.StatusCode.NOT_FOUND: 404, grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403, grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400, grpc.StatusCode.ABORTED: 409, grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501, grpc.StatusCode.UNAVAILABLE: 503, grpc.StatusCode.UNAUTHENTICATED: 401,
}


class ServingError(Exception):
  """A request failure with its gRPC status code (REST maps it to an HTTP status)."""

  def __init__(self, code: grpc.StatusCode, message: str):
    super().__init__(message)
    self.code = code
    self.message = message


def _invalid(message: str) -> ServingError:
  return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def _not_found(message: str) -> ServingError:
  return ServingError(grpc.StatusCode.NOT_FOUND, message)


def _from_tf_error(e: tf.errors.OpError) -> ServingError:
  return ServingError(_CODE_BY_NUMBER.get(e.error_code, grpc.StatusCode.UNKNOWN), e.message)


def _braces(names) -> str:
  return "{" + ", ".join(sorted(names)) + "}"


# --------------------------------------------------------------- config ---


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """One served model: where its versions live and which of them to serve."""
  name: str
  base_path: str
  policy: str = "latest"  # "latest", "all" or "specific"
  num_versions: int = 1  # for "latest"
  versions: frozenset = frozenset()  # for "specific"
  labels: tuple = ()  # ((label, version), ...)

  def aspired(self, available: list[int]) -> set[int]:
    """The versions this policy serves among `available` (loadable) ones."""
    if self.policy == "all":
      return set(available)
    if self.policy == "specific":
      return set(available) & set(self.versions)
    return set(sorted(available)[-self.num_versions:])


def model_configs(proto: model_server_config_pb2.ModelServerConfig) -> list[ModelConfig]:
  """ModelConfigs from a ModelServerConfig proto; ValueError for what we cannot serve."""
  if proto.HasField("custom_model_config"):
    raise ValueError("custom_model_config is not supported; use model_config_list")
  configs, names = [], set()
  for c in proto.model_config_list.config:
    if not c.name:
      raise ValueError("every model config needs a name")
    if c.name in names:
      raise ValueError(f"model {c.name!r} is configured twice")
    names.add(c.name)
    if not c.base_path:
      raise ValueError(f"model {c.name!r} has no base_path")
    if c.model_platform not in ("", "tensorflow"):
      raise ValueError(f"model {c.name!r}: model_platform {c.model_platform!r} is not supported (only 'tensorflow')")
    policy = c.model_version_policy
    kind = policy.WhichOneof("policy_choice") or "latest"
    num = policy.latest.num_versions if kind == "latest" and policy.latest.num_versions > 0 else 1
    if kind == "specific" and not policy.specific.versions:
      raise ValueError(f"model {c.name!r}: the 'specific' version policy lists no versions")
    configs.append(ModelConfig(
        name=c.name, base_path=os.path.abspath(os.path.expanduser(c.base_path)), policy=kind, num_versions=num,
        versions=frozenset(policy.specific.versions), labels=tuple(sorted(c.version_labels.items()))))
  return configs


def parse_config_text(text: str) -> list[ModelConfig]:
  proto = model_server_config_pb2.ModelServerConfig()
  try:
    text_format.Parse(text, proto)
  except text_format.ParseError as e:
    raise ValueError(f"cannot parse the model config: {e}") from e
  return model_configs(proto)


# ------------------------------------------------------------ servables ---


def _model_file(path: str) -> str | None:
  for name in ("saved_model.pb", "saved_model.pbtxt"):
    if os.path.isfile(os.path.join(path, name)):
      return os.path.join(path, name)
  return None


def scan_versions(base_path: str) -> dict[int, str]:
  """Complete versions under base_path: {version: folder}. Partial exports are not versions."""
  try:
    entries = os.listdir(base_path)
  except OSError:
    return {}
  found = {}
  for entry in entries:
    path = os.path.join(base_path, entry)
    if re.fullmatch(r"\d+", entry) and os.path.isdir(path) and _model_file(path):
      found[int(entry)] = path
  return found


def _tree_stamp(path: str) -> tuple:
  """Changes whenever a file under path changes (decides when a failed load is retried)."""
  stamp = []
  for root, _, files in os.walk(path):
    for f in files:
      try:
        st = os.stat(os.path.join(root, f))
      except OSError:
        continue
      stamp.append((os.path.relpath(os.path.join(root, f), path), st.st_size, st.st_mtime_ns))
  return tuple(sorted(stamp))


@dataclasses.dataclass
class Signature:
  name: str
  fn: Callable[..., dict]
  inputs: dict  # name -> TensorSpec, in the signature's order
  outputs: dict  # name -> TensorSpec
  batchable: bool  # every input has an open leading dimension


def _read_signature_defs(path: str) -> dict[str, meta_graph_pb2.SignatureDef]:
  file = _model_file(path)
  proto = saved_model_pb2.SavedModel()
  with open(file, "rb") as f:
    data = f.read()
  if file.endswith(".pbtxt"):
    text_format.Parse(data.decode(), proto)
  else:
    proto.ParseFromString(data)
  graphs = [g for g in proto.meta_graphs if "serve" in g.meta_info_def.tags] or list(proto.meta_graphs)
  return dict(graphs[0].signature_def) if graphs else {}


class Servable:
  """One loaded version of a model."""

  def __init__(self, model: str, version: int, path: str):
    self.model = model
    self.version = version
    self.path = path
    self.loaded = tf.saved_model.load(path, tags=["serve"])
    self.signature_defs = _read_signature_defs(path)
    self.signatures: dict[str, Signature] = {}
    for name, fn in self.loaded.signatures.items():
      inputs = dict(fn.structured_input_signature[1])
      outputs = {k: tf.TensorSpec(v.shape, v.dtype, k) for k, v in fn.structured_outputs.items()}
      batchable = bool(inputs) and all(s.shape.rank and s.shape[0] is None for s in inputs.values())
      self.signatures[name] = Signature(name, fn, inputs, outputs, batchable)
    self._warm_up()

  def _warm_up(self) -> None:
    """One call per signature with a batch of zeros, so the first request is not the slow one."""
    for sig in self.signatures.values():
      if not all(s.shape.rank is not None for s in sig.inputs.values()):
        continue
      feed = {k: np.zeros([1 if d is None else d for d in s.shape], s.dtype.as_numpy_dtype)
              if s.dtype != tf.string else np.full([1 if d is None else d for d in s.shape], b"", object)
              for k, s in sig.inputs.items()}
      try:
        sig.fn(**feed)
      except Exception:  # pylint: disable=broad-except  (zeros may be invalid input: fine)
        pass


class _Model:
  """A configured model: its loaded versions and the state of every version seen."""

  def __init__(self, config: ModelConfig):
    self.config = config
    self.servables: dict[int, Servable] = {}
    self.states: dict[int, tuple[int, grpc.StatusCode, str]] = {}
    self.failed: dict[int, tuple] = {}  # version -> tree stamp of the failed attempt

  @property
  def labels(self) -> dict[str, int]:
    return dict(self.config.labels)


class ModelManager:
  """The served models: loading, unloading and looking up versions (thread-safe)."""

  def __init__(self, configs: list[ModelConfig]):
    self._lock = threading.Lock()  # guards _models and their dicts
    self._poll_lock = threading.Lock()  # one poll (load/unload pass) at a time
    self._models: dict[str, _Model] = {}
    self.set_configs(configs)

  def set_configs(self, configs: list[ModelConfig]) -> list[str]:
    """Replaces the served set of models and loads them; returns load errors."""
    with self._poll_lock:
      with self._lock:
        old = self._models
        models = {}
        for c in configs:
          m = old.get(c.name)
          if m is not None and m.config.base_path == c.base_path:
            m.config = c  # keeps its loaded versions; the poll applies a changed policy
          else:
            m = _Model(c)
          models[c.name] = m
        self._models = models
      for name, m in old.items():
        if models.get(name) is not m:
          logging.info("model %s removed: unloading versions %s", name, sorted(m.servables))
      return self._poll_locked()

  def poll(self) -> list[str]:
    """Loads new versions and unloads unwanted ones; returns load errors."""
    with self._poll_lock:
      return self._poll_locked()

  def _poll_locked(self) -> list[str]:
    errors = []
    with self._lock:
      models = list(self._models.values())
    for m in models:
      on_disk = scan_versions(m.config.base_path)
      for v in list(m.failed):
        if v not in on_disk or _tree_stamp(on_disk[v]) != m.failed[v]:
          del m.failed[v]  # gone or changed: worth another try
      aspired = m.config.aspired([v for v in on_disk if v not in m.failed])
      for v in sorted(aspired - set(m.servables), reverse=True):
        with self._lock:
          m.states[v] = (_State.LOADING, grpc.StatusCode.OK, "")
        try:
          servable = Servable(m.config.name, v, on_disk[v])
        except Exception as e:  # pylint: disable=broad-except
          message = f"loading version {v} of model {m.config.name} from {on_disk[v]} failed: {e}"
          logging.error("%s", message)
          errors.append(message)
          m.failed[v] = _tree_stamp(on_disk[v])
          with self._lock:
            m.states[v] = (_State.END, grpc.StatusCode.UNKNOWN, message)
          continue
        with self._lock:
          m.servables[v] = servable
          m.states[v] = (_State.AVAILABLE, grpc.StatusCode.OK, "")
        logging.info("model %s: version %d loaded from %s", m.config.name, v, on_disk[v])
      with self._lock:
        unwanted = set(m.servables) - aspired
        if unwanted and not set(m.servables) & aspired:
          # Nothing the policy wants could be loaded: keep the newest loaded version serving.
          unwanted.discard(max(m.servables))
        for v in unwanted:
          del m.servables[v]  # requests still holding it finish; then it is freed
          m.states[v] = (_State.END, grpc.StatusCode.OK, "")
      for v in sorted(unwanted):
        logging.info("model %s: version %d unloaded", m.config.name, v)
      with self._lock:  # forget versions that ended and are gone from disk (bounded history)
        for v in [v for v, (state, _, _) in m.states.items() if state == _State.END and v not in on_disk]:
          del m.states[v]
    return errors

  def model_names(self) -> list[str]:
    with self._lock:
      return sorted(self._models)

  def servables(self) -> list[Servable]:
    """The newest loaded version of every model."""
    with self._lock:
      return [m.servables[max(m.servables)] for m in self._models.values() if m.servables]

  def _resolve_version(self, m: _Model, version: int | None, label: str | None) -> int | None:
    if version is not None and label:
      raise _invalid("a request may give a version or a version_label, not both")
    if label:
      labels = m.labels
      if label not in labels:
        raise _invalid(f"Unrecognized servable version label: {label}")
      return labels[label]
    return version

  def get(self, name: str, version: int | None = None, label: str | None = None) -> Servable:
    if not name:
      raise _invalid("Missing ModelSpec: the request names no model")
    with self._lock:
      m = self._models.get(name)
      if m is not None:
        version = self._resolve_version(m, version, label)
        if version is None and m.servables:
          return m.servables[max(m.servables)]
        if version is not None and version in m.servables:
          return m.servables[version]
    request = f"Latest({name})" if version is None else f"Specific({name}, {version})"
    raise _not_found(f"Servable not found for request: {request}")

  def status(self, name: str, version: int | None = None,
             label: str | None = None) -> list[tuple[int, int, grpc.StatusCode, str]]:
    """[(version, state, code, message)] for every version seen (or the one asked for)."""
    if not name:
      raise _invalid("Missing ModelSpec: the request names no model")
    with self._lock:
      m = self._models.get(name)
      if m is None or not m.states:
        raise _not_found(f"Could not find any versions of model {name}")
      version = self._resolve_version(m, version, label)
      if version is not None:
        if version not in m.states:
          raise _not_found(f"Could not find version {version} of model {name}")
        return [(version, *m.states[version])]
      return [(v, *m.states[v]) for v in sorted(m.states, reverse=True)]


# ------------------------------------------------------------- batching ---


class _Task:
  __slots__ = ("inputs", "rows", "arrival", "event", "lead", "done", "outputs", "error")

  def __init__(self, inputs: dict, rows: int):
    self.inputs, self.rows, self.arrival = inputs, rows, time.monotonic()
    self.event = threading.Event()
    self.lead = self.done = False
    self.outputs, self.error = None, None


class _Queue:
  def __init__(self, cond: threading.Condition):
    self.cond = cond
    self.tasks: collections.deque[_Task] = collections.deque()
    self.rows = 0
    self.leader: _Task | None = None


class Batcher:
  """Merges concurrent calls with the same key into one run.

  No extra threads: the first request of a batch leads it (waits until the
  batch is full or its timeout passes, then runs it for everyone); when it
  leaves requests behind, the oldest of those leads the next batch.
  """

  def __init__(self, max_batch_size: int, timeout: float):
    self.max_batch_size = max_batch_size
    self.timeout = timeout
    self._lock = threading.Lock()
    self._queues: dict[Any, _Queue] = {}

  def run(self, key, fn: Callable[[dict], dict], inputs: dict, rows: int) -> tuple[dict, int]:
    """fn's outputs for this call's rows, and the number of rows it ran with."""
    task = _Task(inputs, rows)
    with self._lock:
      q = self._queues.get(key)
      if q is None:
        q = self._queues[key] = _Queue(threading.Condition(self._lock))
      q.tasks.append(task)
      q.rows += rows
      if q.leader is None:
        q.leader = task
        task.lead = True
      elif q.rows >= self.max_batch_size:
        q.cond.notify_all()
    while not task.done:
      if task.lead:
        self._lead(key, q, task, fn)
      else:
        task.event.wait()
        task.event.clear()
    if task.error is not None:
      raise task.error
    return task.outputs

  def _lead(self, key, q: _Queue, task: _Task, fn) -> None:
    with self._lock:
      deadline = task.arrival + self.timeout
      while q.rows < self.max_batch_size:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
          break
        q.cond.wait(remaining)
      batch, total = [], 0
      while q.tasks and (not batch or total + q.tasks[0].rows <= self.max_batch_size):
        t = q.tasks.popleft()
        batch.append(t)
        total += t.rows
      q.rows -= total
      if q.tasks:
        q.leader = q.tasks[0]
        q.leader.lead = True
        q.leader.event.set()
      else:
        q.leader = None
        if self._queues.get(key) is q:
          del self._queues[key]
    try:
      if len(batch) == 1:
        outputs = fn(batch[0].inputs)
        parts = [outputs]
      else:
        merged = {k: np.concatenate([t.inputs[k] for t in batch]) for k in batch[0].inputs}
        outputs = fn(merged)
        for k, v in outputs.items():
          if v.ndim == 0 or v.shape[0] != total:
            raise _invalid(f"batching: output '{k}' has shape {list(v.shape)}, whose 0th dimension does not "
                           f"equal the batch size {total}; serve this model without --enable_batching")
        parts, start = [], 0
        for t in batch:
          parts.append({k: v[start:start + t.rows] for k, v in outputs.items()})
          start += t.rows
      for t, p in zip(batch, parts):
        t.outputs = (p, total)
    except Exception as e:  # pylint: disable=broad-except  (each caller gets the error)
      for t in batch:
        t.error = e
    for t in batch:
      t.done = True
      if t is not task:
        t.event.set()


# ------------------------------------------------------------ prediction ---


@dataclasses.dataclass
class Prediction:
  servable: Servable
  signature: str
  outputs: dict  # name -> np.ndarray


class Counters:
  def __init__(self):
    self._lock = threading.Lock()
    self.values: collections.Counter = collections.Counter()

  def add(self, **kv) -> None:
    with self._lock:
      self.values.update(kv)

  def snapshot(self) -> dict:
    with self._lock:
      return dict(self.values)


class Core:
  """Everything both front ends share: models, validation, running, batching, counters."""

  def __init__(self, manager: ModelManager, batcher: Batcher | None = None):
    self.manager = manager
    self.batcher = batcher
    self.counters = Counters()

  def resolve(self, name: str, version: int | None, label: str | None,
              signature_name: str) -> tuple[Servable, Signature]:
    servable = self.manager.get(name, version, label)
    signature_name = signature_name or DEFAULT_SIGNATURE
    sig = servable.signatures.get(signature_name)
    if sig is None:
      raise _invalid(f'Serving signature name: "{signature_name}" not found in signature def '
                     f"(model {name} version {servable.version} has {_braces(servable.signatures)})")
    return servable, sig

  @staticmethod
  def validate(sig: Signature, inputs: dict[str, np.ndarray], output_filter) -> None:
    expected, given = set(sig.inputs), set(inputs)
    if expected != given:
      raise _invalid(f"Request inputs do not match required inputs for signature `{sig.name}`. "
                     f"Send extra: {_braces(given - expected)}. Missing but required: {_braces(expected - given)}.")
    for name, spec in sig.inputs.items():
      value = inputs[name]
      want = np.dtype(object) if spec.dtype == tf.string else np.dtype(spec.dtype.as_numpy_dtype)
      if value.dtype != want:
        got = "string" if value.dtype == object else value.dtype.name
        raise _invalid(f"input '{name}' has dtype {got} but the signature expects {spec.dtype.name}")
      if not spec.shape.is_compatible_with(value.shape):
        raise _invalid(f"input '{name}' has shape {list(value.shape)} but the signature expects "
                       f"{_shape_text(spec.shape)}")
    for name in output_filter:
      if name not in sig.outputs:
        raise _invalid(f"output tensor alias not found in signature: {name}. Outputs expected to be in the "
                       f"set {_braces(sig.outputs)}.")

  def predict(self, name: str, version: int | None, label: str | None, signature_name: str,
              inputs: dict[str, np.ndarray], output_filter=(),
              resolved: tuple[Servable, Signature] | None = None) -> Prediction:
    servable, sig = resolved or self.resolve(name, version, label, signature_name)
    self.validate(sig, inputs, output_filter)
    self.counters.add(**{f"requests/{servable.model}": 1})

    def call(feed: dict) -> dict:  # once per run: alone, or for a whole batch
      self.counters.add(**{f"runs/{servable.model}": 1})
      try:
        out = sig.fn(**feed)
      except tf.errors.OpError as e:
        raise _from_tf_error(e) from None
      except (TypeError, ValueError) as e:
        raise _invalid(str(e)) from None
      return {k: v.numpy() for k, v in out.items()}

    rows = _batch_rows(sig, inputs)
    if self.batcher is not None and rows is not None and rows <= self.batcher.max_batch_size:
      key = (id(servable), sig.name, tuple((k, v.dtype.str, v.shape[1:]) for k, v in sorted(inputs.items())))
      outputs, batch_rows = self.batcher.run(key, call, inputs, rows)
      if batch_rows > rows:
        self.counters.add(**{f"batched_requests/{servable.model}": 1})
    else:
      outputs = call(inputs)
    if output_filter:
      outputs = {k: outputs[k] for k in output_filter}
    return Prediction(servable, sig.name, outputs)


def _batch_rows(sig: Signature, inputs: dict[str, np.ndarray]) -> int | None:
  """The shared leading dimension of the inputs if this call can join a batch."""
  if not sig.batchable:
    return None
  sizes = {v.shape[0] if v.ndim else None for v in inputs.values()}
  if len(sizes) != 1 or None in sizes:
    return None
  rows = sizes.pop()
  return rows if rows > 0 else None


def _shape_text(shape: tf.TensorShape) -> str:
  if shape.rank is None:
    return "<unknown rank>"
  return "[" + ",".join("?" if d is None else str(d) for d in shape.as_list()) + "]"


def _status_response(entries) -> get_model_status_pb2.GetModelStatusResponse:
  response = get_model_status_pb2.GetModelStatusResponse()
  for version, state, code, message in entries:
    s = response.model_version_status.add()
    s.version = version
    s.state = state
    s.status.error_code = code.value[0]
    s.status.error_message = message
  return response


def _signature_def_map(servable: Servable) -> get_model_metadata_pb2.SignatureDefMap:
  sig_map = get_model_metadata_pb2.SignatureDefMap()
  for k, v in servable.signature_defs.items():
    sig_map.signature_def[k].CopyFrom(v)
  return sig_map


# ----------------------------------------------------------------- gRPC ---


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


def _spec_version(spec) -> int | None:
  return spec.version.value if spec.HasField("version") else None


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
  """tensorflow.serving.PredictionService."""

  def __init__(self, core: Core):
    self._core = core

  def Predict(self, request, context):
    def run():
      inputs = {}
      for name, proto in request.inputs.items():
        try:
          inputs[name] = tf.make_ndarray(proto)
        except Exception as e:  # pylint: disable=broad-except
          raise _invalid(f"input '{name}': cannot read its TensorProto: {e}") from None
      spec = request.model_spec
      result = self._core.predict(spec.name, _spec_version(spec), spec.version_label, spec.signature_name,
                                  inputs, list(request.output_filter))
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
        raise _invalid("GetModelMetadataRequest must specify at least one metadata_field")
      for field in fields:
        if field != "signature_def":
          raise _invalid(f"Metadata field {field} is not supported")
      spec = request.model_spec
      servable = self._core.manager.get(spec.name, _spec_version(spec), spec.version_label)
      response = get_model_metadata_pb2.GetModelMetadataResponse()
      response.model_spec.name = spec.name
      response.model_spec.version.value = servable.version
      response.metadata["signature_def"].Pack(_signature_def_map(servable))
      return response
    return _grpc_call(context, run, "GetModelMetadata")

  def _unimplemented(self, method: str, context):
    context.abort(grpc.StatusCode.UNIMPLEMENTED,
                  f"{method} is not implemented by seed.serve; use Predict with the model's signature")

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
      return _status_response(self._core.manager.status(spec.name, _spec_version(spec), spec.version_label))
    return _grpc_call(context, run, "GetModelStatus")

  def HandleReloadConfigRequest(self, request, context):
    def run():
      try:
        configs = model_configs(request.config)
      except ValueError as e:
        raise _invalid(str(e)) from None
      errors = self._core.manager.set_configs(configs)
      logging.info("config reloaded: serving %s", self._core.manager.model_names())
      if errors:
        raise ServingError(grpc.StatusCode.UNKNOWN, "; ".join(errors))
      response = model_management_pb2.ReloadConfigResponse()
      response.status.error_code = 0
      return response
    return _grpc_call(context, run, "HandleReloadConfigRequest")


# ----------------------------------------------------------------- REST ---


_REST_PATH = re.compile(r"/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"
                        r"(?P<suffix>:predict|:classify|:regress|/metadata)?")


def _is_b64(value) -> bool:
  return isinstance(value, dict) and len(value) == 1 and "b64" in value


def _strings(value, name: str):
  """JSON strings (or {"b64": ...}) -> bytes, recursively."""
  if isinstance(value, list):
    return [_strings(v, name) for v in value]
  if _is_b64(value):
    try:
      return base64.b64decode(value["b64"], validate=True)
    except (ValueError, TypeError) as e:
      raise _invalid(f"input '{name}': invalid base64 value: {e}") from None
  if isinstance(value, str):
    return value.encode()
  raise _invalid(f"input '{name}': value {json.dumps(value)[:80]} is not of expected type: string")


_NO_LEAF = object()


def _first_bad_leaf(value, want: tf.DType):
  """The first JSON leaf that does not fit dtype `want` (or _NO_LEAF)."""
  if isinstance(value, list):
    for v in value:
      bad = _first_bad_leaf(v, want)
      if bad is not _NO_LEAF:
        return bad
    return _NO_LEAF
  if want == tf.bool:
    fits = isinstance(value, bool)
  elif want.is_integer:
    fits = isinstance(value, int) and not isinstance(value, bool)
  else:
    fits = isinstance(value, (int, float)) and not isinstance(value, bool)
  return _NO_LEAF if fits else value


def json_to_array(value, spec: tf.TensorSpec | None, name: str) -> np.ndarray:
  """A JSON value as an array of the signature's dtype (INVALID_ARGUMENT if it does not fit)."""
  if spec is not None and spec.dtype == tf.string:
    try:
      arr = np.array(_strings(value, name), dtype=object)
    except ValueError as e:
      raise _invalid(f"input '{name}': values do not form a rectangular array: {e}") from None
    if arr.ndim and any(isinstance(v, list) for v in arr.flat):
      raise _invalid(f"input '{name}': values do not form a rectangular array")
    return arr
  try:
    arr = np.array(value)
  except ValueError as e:
    raise _invalid(f"input '{name}': values do not form a rectangular array: {e}") from None
  if spec is None:
    return arr if arr.dtype != object else np.zeros([0])
  want = spec.dtype
  kind = arr.dtype.kind
  if arr.size == 0:
    kind = "b" if want == tf.bool else "i"
  ok = (kind == "b" if want == tf.bool else
        kind in "iu" if want.is_integer else
        kind in "iuf" if want.is_floating or want.is_complex else False)
  if not ok:
    bad = _first_bad_leaf(value, want)
    shown = json.dumps(bad, default=str)[:80] if bad is not _NO_LEAF else f"of type {arr.dtype}"
    raise _invalid(f"input '{name}': value {shown} is not of expected type: {want.name}")
  if want.is_integer and arr.size and want != tf.bool:
    info = np.iinfo(want.as_numpy_dtype)
    low, high = arr.min(), arr.max()
    if low < info.min or high > info.max:
      raise _invalid(f"input '{name}': value {low if low < info.min else high} is out of range for {want.name}")
  return arr.astype(want.as_numpy_dtype)


_JSON_SPECIAL = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def _nest(strings: np.ndarray) -> str:
  if strings.ndim == 0:
    return str(strings)
  if strings.ndim == 1:
    return "[" + ",".join(strings.tolist()) + "]"
  return "[" + ",".join(_nest(s) for s in strings) + "]"


def array_to_json(arr: np.ndarray, name: str = "") -> str:
  """JSON text for an output array (float32 printed at float32 precision, bytes as text or b64)."""
  arr = np.asarray(arr)
  if arr.dtype.kind == "f":
    if arr.dtype not in (np.float32, np.float64):
      arr = arr.astype(np.float32)
    strings = arr.astype(str)
    for k, v in _JSON_SPECIAL.items():
      strings[strings == k] = v
    return _nest(strings)
  if arr.dtype.kind == "O" or arr.dtype.kind == "S":
    def text(b):
      if isinstance(b, bytes):
        if not name.endswith("_bytes"):
          try:
            return b.decode()
          except UnicodeDecodeError:
            pass
        return {"b64": base64.b64encode(b).decode()}
      return b
    flat = [text(b) for b in arr.reshape(-1).tolist()]
    return json.dumps(np.array(flat, dtype=object).reshape(arr.shape).tolist() if arr.ndim else flat[0])
  if arr.dtype.kind == "c":
    return json.dumps(np.stack([arr.real, arr.imag], -1).tolist())
  return json.dumps(arr.tolist())


def rest_inputs(body: dict, sig: Signature) -> tuple[dict[str, np.ndarray], bool]:
  """(inputs, row format?) from a REST predict body."""
  if ("instances" in body) == ("inputs" in body):
    raise _invalid("Missing 'inputs' or 'instances' key" if "instances" not in body else
                   "Both 'inputs' and 'instances' keys specified: use one of them")
  names = list(sig.inputs)
  if "instances" in body:
    instances = body["instances"]
    if not isinstance(instances, list):
      raise _invalid("'instances' must be a JSON list")
    named = [isinstance(i, dict) and not _is_b64(i) for i in instances]
    if instances and all(named):
      keys = set(instances[0])
      for i, inst in enumerate(instances):
        if set(inst) != keys:
          raise _invalid(f"Failed to process element: {i} of 'instances' list. It has inputs {_braces(inst)} "
                         f"but element 0 has {_braces(keys)}: every instance needs the same named inputs")
      return {k: json_to_array([inst[k] for inst in instances], sig.inputs.get(k), k) for k in keys}, True
    if any(named):
      raise _invalid("'instances' mixes objects (named inputs) with plain values")
    if len(names) != 1:
      raise _invalid(f"the signature has {len(names)} inputs {_braces(names)}: 'instances' must be a list of "
                     "objects keyed by input name")
    return {names[0]: json_to_array(instances, sig.inputs[names[0]], names[0])}, True
  inputs = body["inputs"]
  if isinstance(inputs, dict) and not _is_b64(inputs):
    return {k: json_to_array(v, sig.inputs.get(k), k) for k, v in inputs.items()}, False
  if len(names) != 1:
    raise _invalid(f"the signature has {len(names)} inputs {_braces(names)}: 'inputs' must be an object keyed "
                   "by input name")
  return {names[0]: json_to_array(inputs, sig.inputs[names[0]], names[0])}, False


def rest_outputs(outputs: dict[str, np.ndarray], row_format: bool) -> str:
  if not row_format:
    if len(outputs) == 1:
      return '{"outputs": ' + array_to_json(*outputs.values(), next(iter(outputs))) + "}"
    return '{"outputs": {' + ", ".join(f"{json.dumps(k)}: {array_to_json(v, k)}" for k, v in outputs.items()) + "}}"
  sizes = {k: (v.shape[0] if v.ndim else None) for k, v in outputs.items()}
  n = next(iter(sizes.values()), 0)
  for k, size in sizes.items():
    if size is None or size != n:
      raise _invalid(f"Tensor name: {k} has inconsistent batch size: {size} expecting: {n} "
                     "(row format needs every output to have the batch as its 0th dimension; send 'inputs')")
  if len(outputs) == 1:
    return '{"predictions": ' + array_to_json(*outputs.values(), next(iter(outputs))) + "}"
  rows = []
  for i in range(n):
    rows.append("{" + ", ".join(f"{json.dumps(k)}: {array_to_json(v[i], k)}" for k, v in outputs.items()) + "}")
  return '{"predictions": [' + ", ".join(rows) + "]}"


def _metrics_text(core: Core) -> str:
  lines = []
  kinds = {"requests": "Predict requests", "runs": "model runs (one per batch)",
           "batched_requests": "requests that shared a run with others"}
  values = core.counters.snapshot()
  for kind, help_text in kinds.items():
    lines.append(f"# HELP seed_serve_{kind}_total {help_text}")
    lines.append(f"# TYPE seed_serve_{kind}_total counter")
    for key, v in sorted(values.items()):
      k, model = key.split("/", 1)
      if k == kind:
        lines.append(f'seed_serve_{kind}_total{{model_name="{model}"}} {round(v)}')
  return "\n".join(lines) + "\n"


class _RestHandler(http.server.BaseHTTPRequestHandler):
  protocol_version = "HTTP/1.1"  # keep-alive
  server_version = "seed.serve"
  disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall
  core: Core = None  # set on a subclass per server

  def log_message(self, format, *args):  # pylint: disable=redefined-builtin
    logging.vlog(1, "REST %s " + format, self.address_string(), *args)

  def do_GET(self):
    self._handle("GET")

  def do_POST(self):
    self._handle("POST")

  def _send(self, code: int, body: str, content_type: str = "application/json") -> None:
    data = body.encode()
    self.send_response(code)
    self.send_header("Content-Type", content_type)
    self.send_header("Content-Length", str(len(data)))
    self.end_headers()
    self.wfile.write(data)

  def _handle(self, method: str) -> None:
    try:
      try:
        length = int(self.headers.get("Content-Length") or 0)
      except ValueError:
        self.close_connection = True
        raise _invalid(f"Malformed request: bad Content-Length {self.headers.get('Content-Length')!r}") from None
      body = self.rfile.read(length) if length > 0 else b""
      path = self.path.split("?", 1)[0]
      if method == "GET" and path == "/monitoring/prometheus/metrics":
        self._send(200, _metrics_text(self.core), "text/plain; version=0.0.4")
        return
      self._send(200, self._route(method, path, body))
    except ServingError as e:
      self._send(_HTTP_STATUS.get(e.code, 500), json.dumps({"error": e.message}))
    except (ConnectionError, BrokenPipeError):
      pass
    except Exception as e:  # pylint: disable=broad-except  (nothing a client sends may crash the server)
      logging.exception("REST %s %s failed", method, self.path)
      self._send(500, json.dumps({"error": f"{type(e).__name__}: {e}"}))

  def _route(self, method: str, path: str, body: bytes) -> str:
    match = _REST_PATH.fullmatch(path)
    if match is None:
      if path.startswith("/v1/"):
        raise _invalid(f"Malformed request: {method} {path}")
      raise _not_found(f"Not found: {method} {path} (the API is under /v1/models/<name>)")
    name, suffix, label = match["name"], match["suffix"], match["label"]
    version = None
    if match["version"] is not None:
      if not re.fullmatch(r"\d{1,18}", match["version"]):
        raise _invalid(f"Failed to convert version: {match['version']} to a number (malformed request {path})")
      version = int(match["version"])
    manager = self.core.manager
    if method == "GET" and suffix is None:
      response = _status_response(manager.status(name, version, label))
      return json_format.MessageToJson(response, always_print_fields_with_no_presence=True,
                                       preserving_proto_field_name=True)
    if method == "GET" and suffix == "/metadata":
      servable = manager.get(name, version, label)
      sig_map = json_format.MessageToDict(_signature_def_map(servable), preserving_proto_field_name=True)
      return json.dumps({"model_spec": {"name": name, "signature_name": "", "version": str(servable.version)},
                         "metadata": {"signature_def": sig_map}}, indent=1)
    if method == "POST" and suffix in (":classify", ":regress"):
      raise ServingError(grpc.StatusCode.UNIMPLEMENTED,
                         f"{suffix[1:]} is not implemented by seed.serve; use :predict")
    if method != "POST" or suffix != ":predict":
      raise _invalid(f"Malformed request: {method} {path}")
    try:
      request = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
      raise _invalid(f"JSON Parse error: {e}" if body.strip() else
                     "JSON Parse error: The document is empty") from None
    if not isinstance(request, dict):
      raise _invalid("JSON Parse error: the request body must be a JSON object with 'instances' or 'inputs'")
    signature_name = request.get("signature_name", DEFAULT_SIGNATURE)
    if not isinstance(signature_name, str):
      raise _invalid("'signature_name' key must be a string value.")
    resolved = self.core.resolve(name, version, label, signature_name)
    inputs, row_format = rest_inputs(request, resolved[1])
    result = self.core.predict(name, version, label, signature_name, inputs, resolved=resolved)
    return rest_outputs(result.outputs, row_format)


class _HTTPServer(http.server.ThreadingHTTPServer):  # a thread per connection (daemon threads)
  request_queue_size = 128


class _HTTPServer6(_HTTPServer):
  address_family = socket.AF_INET6


# --------------------------------------------------------------- server ---


def _natural_key(name: str) -> list:
  return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def tensor_rpc_function(sig: Signature):
  """A tf.function with a positional input_signature calling a signature function (keyword args).

  The positional order is the input names sorted with numbers compared as
  numbers: (observation, state_0, state_1, ..., state_10) for SEED's policies.
  """
  names = sorted(sig.inputs, key=_natural_key)
  specs = [tf.TensorSpec(sig.inputs[n].shape, sig.inputs[n].dtype, name=n) for n in names]
  fn = sig.fn

  def call(*args):
    return dict(fn(**dict(zip(names, args))))

  return tf.function(call, input_signature=specs)


class ModelServer:
  """The gRPC and REST front ends, the version watcher and the optional tensor-RPC server."""

  def __init__(self, configs: list[ModelConfig], *, host: str = "127.0.0.1", port: int = 8500,
               rest_api_port: int = 8501, poll_wait_seconds: float = 2.0, enable_batching: bool = False,
               max_batch_size: int = 32, batch_timeout_micros: int = 1000, grpc_max_threads: int = 64,
               tensor_rpc_address: str | None = None):
    self.manager = ModelManager(configs)
    batcher = Batcher(max_batch_size, batch_timeout_micros / 1e6) if enable_batching else None
    self.core = Core(self.manager, batcher)
    self._host = host
    self._poll_wait = poll_wait_seconds
    self._stop = threading.Event()
    self._watcher: threading.Thread | None = None
    options = [("grpc.max_receive_message_length", MAX_MESSAGE_SIZE),
               ("grpc.max_send_message_length", MAX_MESSAGE_SIZE), ("grpc.so_reuseport", 0)]
    self._grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=grpc_max_threads,
                                                        thread_name_prefix="grpc"), options=options)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionServicer(self.core), self._grpc)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(self.core), self._grpc)
    self.health = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(self.health, self._grpc)
    try:
      self.port = self._grpc.add_insecure_port(_join_host_port(host, port))
    except RuntimeError:
      self.port = 0
    if self.port == 0:
      raise OSError(f"cannot listen for gRPC on {_join_host_port(host, port)}")
    self._http = None
    self.rest_api_port = 0
    if rest_api_port:
      handler = type("RestHandler", (_RestHandler,), {"core": self.core})
      server_class = _HTTPServer6 if ":" in host else _HTTPServer
      self._http = server_class((host, rest_api_port), handler)
      self.rest_api_port = self._http.server_address[1]
    self._rpc = None
    self._rpc_models: list[Servable] = []
    if tensor_rpc_address:
      self._bind_tensor_rpc(tensor_rpc_address)

  def _bind_tensor_rpc(self, address: str) -> None:
    from seed import grpc as tensor_rpc  # pylint: disable=g-import-not-at-top  (builds/loads the op)
    server = tensor_rpc.Server([address])
    for servable in self.manager.servables():
      sig = servable.signatures.get(DEFAULT_SIGNATURE)
      if sig is None:
        logging.warning("tensor RPC: model %s has no %s signature; not bound", servable.model, DEFAULT_SIGNATURE)
        continue
      server.bind(tensor_rpc_function(sig), name=servable.model, batched=False)
      self._rpc_models.append(servable)  # keeps the version (its variables) alive while bound
      logging.info("tensor RPC: model %s version %d bound as method %r", servable.model, servable.version,
                   servable.model)
    if not self._rpc_models:
      logging.warning("tensor RPC: no model loaded at startup; not serving %s", address)
      return
    server.start()
    self._rpc = server

  def start(self) -> None:
    self._grpc.start()
    if self._http is not None:
      threading.Thread(target=self._http.serve_forever, name="rest", daemon=True).start()
    for service in ("", PREDICT_SERVICE, MODEL_SERVICE):
      self.health.set(service, health_pb2.HealthCheckResponse.SERVING)
    if self._poll_wait > 0:
      self._watcher = threading.Thread(target=self._watch, name="watcher", daemon=True)
      self._watcher.start()

  def _watch(self) -> None:
    while not self._stop.wait(self._poll_wait):
      try:
        self.manager.poll()
      except Exception:  # pylint: disable=broad-except  (keep watching)
        logging.exception("polling the model folders failed")

  def stop(self, grace: float = 2.0) -> None:
    self._stop.set()
    self.health.enter_graceful_shutdown()
    if self._http is not None:
      self._http.shutdown()
      self._http.server_close()
    self._grpc.stop(grace).wait()
    if self._rpc is not None:
      self._rpc.shutdown()
    if self._watcher is not None:
      self._watcher.join(timeout=30)


def _join_host_port(host: str, port: int) -> str:
  return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# ----------------------------------------------------------------- main ---

_MODEL_NAME = flags.DEFINE_string("model_name", "default", "Name of the model (with --model_base_path).")
_MODEL_BASE_PATH = flags.DEFINE_string("model_base_path", None,
                                       "Folder of numbered SavedModel versions (e.g. <logdir>/export).")
_MODEL_CONFIG_FILE = flags.DEFINE_string("model_config_file", None,
                                         "TF Serving ModelServerConfig text proto listing the models.")
_HOST = flags.DEFINE_string("host", "127.0.0.1", "Address to listen on (0.0.0.0 for every interface).")
_PORT = flags.DEFINE_integer("port", 8500, "gRPC port (0 picks a free one; see the log).")
_REST_API_PORT = flags.DEFINE_integer("rest_api_port", 8501, "REST port; 0 turns the REST API off.")
_POLL = flags.DEFINE_float("file_system_poll_wait_seconds", 2.0,
                           "Seconds between scans of the base paths for new versions; 0 = load once at startup.")
_ENABLE_BATCHING = flags.DEFINE_bool("enable_batching", False, "Batch concurrent Predict calls.")
_MAX_BATCH_SIZE = flags.DEFINE_integer("max_batch_size", 32, "Rows per batch (with --enable_batching).")
_BATCH_TIMEOUT = flags.DEFINE_integer("batch_timeout_micros", 1000,
                                      "Longest wait for a batch to fill (with --enable_batching).")
_GRPC_MAX_THREADS = flags.DEFINE_integer("grpc_max_threads", 64, "Threads handling gRPC calls.")
_TENSOR_RPC_ADDRESS = flags.DEFINE_string("tensor_rpc_address", None,
                                          "Also bind each model's serving_default as a seed.grpc tensor-RPC "
                                          "method here (unix:/path or host:port).")


def _configs_from_flags() -> list[ModelConfig]:
  if _MODEL_CONFIG_FILE.value and _MODEL_BASE_PATH.value:
    raise app.UsageError("give --model_config_file or --model_base_path, not both")
  if _MODEL_CONFIG_FILE.value:
    try:
      with open(_MODEL_CONFIG_FILE.value, encoding="utf-8") as f:
        return parse_config_text(f.read())
    except (OSError, ValueError) as e:
      raise app.UsageError(f"--model_config_file: {e}") from e
  if not _MODEL_BASE_PATH.value:
    raise app.UsageError("give --model_base_path (with --model_name) or --model_config_file")
  return [ModelConfig(_MODEL_NAME.value, os.path.abspath(_MODEL_BASE_PATH.value))]


def main(argv: list[str]) -> int:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if _MAX_BATCH_SIZE.value < 1 or _BATCH_TIMEOUT.value < 0:
    raise app.UsageError("--max_batch_size must be >= 1 and --batch_timeout_micros >= 0")
  configs = _configs_from_flags()
  for c in configs:
    if not os.path.isdir(c.base_path):
      logging.warning("model %s: base path %s does not exist (yet)", c.name, c.base_path)
  stop = threading.Event()
  for s in (signal.SIGINT, signal.SIGTERM):
    signal.signal(s, lambda *_: stop.set())
  try:
    server = ModelServer(configs, host=_HOST.value, port=_PORT.value, rest_api_port=_REST_API_PORT.value,
                         poll_wait_seconds=_POLL.value, enable_batching=_ENABLE_BATCHING.value,
                         max_batch_size=_MAX_BATCH_SIZE.value, batch_timeout_micros=_BATCH_TIMEOUT.value,
                         grpc_max_threads=_GRPC_MAX_THREADS.value, tensor_rpc_address=_TENSOR_RPC_ADDRESS.value)
  except OSError as e:
    print(f"error: {e}", file=sys.stderr, flush=True)
    return 1
  server.start()
  # TensorFlow leaves millions of long-lived objects: keep them out of the cyclic GC's full collections, which
  # JSON requests (thousands of lists each) would otherwise trigger every few requests, stalling them all.
  gc.freeze()
  for c in configs:
    try:
      versions = [v for v, state, _, _ in server.manager.status(c.name) if state == _State.AVAILABLE]
    except ServingError:
      versions = []
    logging.info("model %s: serving versions %s from %s", c.name, versions, c.base_path)
  rest = f", REST on {_join_host_port(_HOST.value, server.rest_api_port)}" if server.rest_api_port else ""
  print(f"seed.serve: gRPC on {_join_host_port(_HOST.value, server.port)}{rest}"
        + (f", tensor RPC on {_TENSOR_RPC_ADDRESS.value}" if server._rpc is not None else ""),  # pylint: disable=protected-access
        flush=True)
  while not stop.wait(0.5):
    pass
  logging.info("stopping")
  server.stop()
  return 0


if __name__ == "__main__":
  app.run(main)
