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
from concurrent import futures
from typing import Any, Callable

import grpc
import numpy as np
import tensorflow as tf
from absl import app
from absl import flags
from absl import logging
from google.protobuf import json_format
from grpc_health.v1 import health
from grpc_health.v1 import health_pb2
from grpc_health.v1 import health_pb2_grpc
from tensorflow.core.framework import tensor_shape_pb2
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_management_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from seed.serving.batching import Batcher
from seed.serving.config import ModelConfig, model_configs, parse_config_text
from seed.serving.errors import ServingError, braces as _braces, invalid as _invalid, not_found as _not_found
from seed.serving.models import DEFAULT_SIGNATURE, ModelManager, Servable, Signature, State as _State
from seed.serving.models import scan_versions  # noqa: F401  (tests use serve.scan_versions)

PREDICT_SERVICE = "tensorflow.serving.PredictionService"
MODEL_SERVICE = "tensorflow.serving.ModelService"
MAX_MESSAGE_SIZE = 256 << 20

_CODE_BY_NUMBER = {c.value[0]: c for c in grpc.StatusCode}
_HTTP_STATUS = {
    grpc.StatusCode.OK: 200, grpc.StatusCode.CANCELLED: 499, grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504, grpc.StatusCode.NOT_FOUND: 404, grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403, grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400, grpc.StatusCode.ABORTED: 409, grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501, grpc.StatusCode.UNAVAILABLE: 503, grpc.StatusCode.UNAUTHENTICATED: 401,
}


def _from_tf_error(e: tf.errors.OpError) -> ServingError:
  return ServingError(_CODE_BY_NUMBER.get(e.error_code, grpc.StatusCode.UNKNOWN), e.message)


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
