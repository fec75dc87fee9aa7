"""The REST front end: TF Serving's /v1/models routes, JSON <-> arrays, and the HTTP handler."""

from __future__ import annotations

import base64
import http.server
import json
import re
import socket
import sys

import numpy as np
import tensorflow as tf
from absl import logging
from google.protobuf import json_format

import grpc
from seed.serving.core import Core, signature_def_map, status_response
from seed.serving.errors import ServingError, braces, invalid, not_found
from seed.serving.models import DEFAULT_SIGNATURE, Signature

_HTTP_STATUS = {
  grpc.StatusCode.OK: 200,
  grpc.StatusCode.CANCELLED: 499,
  grpc.StatusCode.INVALID_ARGUMENT: 400,
  grpc.StatusCode.DEADLINE_EXCEEDED: 504,
  grpc.StatusCode.NOT_FOUND: 404,
  grpc.StatusCode.ALREADY_EXISTS: 409,
  grpc.StatusCode.PERMISSION_DENIED: 403,
  grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
  grpc.StatusCode.FAILED_PRECONDITION: 400,
  grpc.StatusCode.ABORTED: 409,
  grpc.StatusCode.OUT_OF_RANGE: 400,
  grpc.StatusCode.UNIMPLEMENTED: 501,
  grpc.StatusCode.UNAVAILABLE: 503,
  grpc.StatusCode.UNAUTHENTICATED: 401,
}

_REST_PATH = re.compile(
  r"/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"
  r"(?P<suffix>:predict|:classify|:regress|/metadata)?"
)


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
      raise invalid(f"input '{name}': invalid base64 value: {e}") from None
  if isinstance(value, str):
    return value.encode()
  raise invalid(f"input '{name}': value {json.dumps(value)[:80]} is not of expected type: string")


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
      raise invalid(f"input '{name}': values do not form a rectangular array: {e}") from None
    if arr.ndim and any(isinstance(v, list) for v in arr.flat):
      raise invalid(f"input '{name}': values do not form a rectangular array")
    return arr
  try:
    arr = np.array(value)
  except ValueError as e:
    raise invalid(f"input '{name}': values do not form a rectangular array: {e}") from None
  if spec is None:
    return arr if arr.dtype != object else np.zeros([0])
  want = spec.dtype
  kind = arr.dtype.kind
  if arr.size == 0:
    kind = "b" if want == tf.bool else "i"
  ok = (
    kind == "b"
    if want == tf.bool
    else kind in "iu"
    if want.is_integer
    else kind in "iuf"
    if want.is_floating or want.is_complex
    else False
  )
  if not ok:
    bad = _first_bad_leaf(value, want)
    shown = json.dumps(bad, default=str)[:80] if bad is not _NO_LEAF else f"of type {arr.dtype}"
    raise invalid(f"input '{name}': value {shown} is not of expected type: {want.name}")
  if want.is_integer and arr.size and want != tf.bool:
    info = np.iinfo(want.as_numpy_dtype)
    low, high = arr.min(), arr.max()
    if low < info.min or high > info.max:
      raise invalid(f"input '{name}': value {low if low < info.min else high} is out of range for {want.name}")
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
    raise invalid(
      "Missing 'inputs' or 'instances' key"
      if "instances" not in body
      else "Both 'inputs' and 'instances' keys specified: use one of them"
    )
  names = list(sig.inputs)
  if "instances" in body:
    instances = body["instances"]
    if not isinstance(instances, list):
      raise invalid("'instances' must be a JSON list")
    named = [isinstance(i, dict) and not _is_b64(i) for i in instances]
    if instances and all(named):
      keys = set(instances[0])
      for i, inst in enumerate(instances):
        if set(inst) != keys:
          raise invalid(
            f"Failed to process element: {i} of 'instances' list. It has inputs {braces(inst)} "
            f"but element 0 has {braces(keys)}: every instance needs the same named inputs"
          )
      return {k: json_to_array([inst[k] for inst in instances], sig.inputs.get(k), k) for k in keys}, True
    if any(named):
      raise invalid("'instances' mixes objects (named inputs) with plain values")
    if len(names) != 1:
      raise invalid(
        f"the signature has {len(names)} inputs {braces(names)}: 'instances' must be a list of "
        "objects keyed by input name"
      )
    return {names[0]: json_to_array(instances, sig.inputs[names[0]], names[0])}, True
  inputs = body["inputs"]
  if isinstance(inputs, dict) and not _is_b64(inputs):
    return {k: json_to_array(v, sig.inputs.get(k), k) for k, v in inputs.items()}, False
  if len(names) != 1:
    raise invalid(
      f"the signature has {len(names)} inputs {braces(names)}: 'inputs' must be an object keyed by input name"
    )
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
      raise invalid(
        f"Tensor name: {k} has inconsistent batch size: {size} expecting: {n} "
        "(row format needs every output to have the batch as its 0th dimension; send 'inputs')"
      )
  if len(outputs) == 1:
    return '{"predictions": ' + array_to_json(*outputs.values(), next(iter(outputs))) + "}"
  rows = []
  for i in range(n):
    rows.append("{" + ", ".join(f"{json.dumps(k)}: {array_to_json(v[i], k)}" for k, v in outputs.items()) + "}")
  return '{"predictions": [' + ", ".join(rows) + "]}"


def _metrics_text(core: Core) -> str:
  lines = []
  kinds = {
    "requests": "Predict requests",
    "runs": "model runs (one per batch)",
    "batched_requests": "requests that shared a run with others",
  }
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
  # Set on a subclass per server. `timeout` is the socket timeout of every read: a client that stops
  # sending mid-request, or keeps an idle connection, is dropped after it and frees its thread.
  core: Core = None
  max_request_bytes: int = 0
  timeout: float = None

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

  def _error(self, code: int, message: str) -> None:
    self._send(code, json.dumps({"error": message}))

  def _refuse(self, code: int, message: str) -> None:
    """Answers a request whose body is not (fully) read; the connection then closes, as its stream is unusable."""
    self.close_connection = True
    self._error(code, message)

  def _read_body(self) -> bytes | None:
    """The request body, or None after refusing it (or when the client closed mid-body)."""
    if "Transfer-Encoding" in self.headers:
      return self._refuse(411, "Content-Length required: chunked request bodies are not accepted")
    raw = self.headers.get("Content-Length") or "0"
    if not raw.isdigit():  # no sign, no spaces: the body's end must be unambiguous
      return self._refuse(400, f"Malformed request: bad Content-Length {raw!r}")
    length = int(raw)
    if length > self.max_request_bytes:  # decided before reading a byte of the body
      return self._refuse(413, f"request body of {length} bytes exceeds --max_request_bytes={self.max_request_bytes}")
    body = self.rfile.read(length) if length else b""
    if len(body) < length:  # the client closed mid-body
      self.close_connection = True
      return None
    return body

  def _handle(self, method: str) -> None:
    try:
      try:
        body = self._read_body()
      except TimeoutError:
        self._refuse(408, f"request body not received within {self.timeout:g} s")
        return
      if body is None:
        return
      path = self.path.split("?", 1)[0]
      if method == "GET" and path == "/monitoring/prometheus/metrics":
        self._send(200, _metrics_text(self.core), "text/plain; version=0.0.4")
        return
      self._send(200, self._route(method, path, body))
    except ServingError as e:
      self._error(_HTTP_STATUS.get(e.code, 500), e.message)
    except (ConnectionError, BrokenPipeError, TimeoutError):
      self.close_connection = True
    except RecursionError:  # a body nested deeper than Python's recursion limit anywhere in the decoding
      self._error(400, f"JSON nested too deeply: over {sys.getrecursionlimit()} levels")
    except Exception as e:  # pylint: disable=broad-except  (nothing a client sends may crash the server)
      logging.exception("REST %s %s failed", method, self.path)
      self._error(500, f"{type(e).__name__}: {e}")

  def _route(self, method: str, path: str, body: bytes) -> str:
    match = _REST_PATH.fullmatch(path)
    if match is None:
      if path.startswith("/v1/"):
        raise invalid(f"Malformed request: {method} {path}")
      raise not_found(f"Not found: {method} {path} (the API is under /v1/models/<name>)")
    name, suffix, label = match["name"], match["suffix"], match["label"]
    version = None
    if match["version"] is not None:
      if not re.fullmatch(r"\d{1,18}", match["version"]):
        raise invalid(f"Failed to convert version: {match['version']} to a number (malformed request {path})")
      version = int(match["version"])
    manager = self.core.manager
    if method == "GET" and suffix is None:
      response = status_response(manager.status(name, version, label))
      return json_format.MessageToJson(
        response, always_print_fields_with_no_presence=True, preserving_proto_field_name=True
      )
    if method == "GET" and suffix == "/metadata":
      servable = manager.get(name, version, label)
      sig_map = json_format.MessageToDict(signature_def_map(servable), preserving_proto_field_name=True)
      return json.dumps(
        {
          "model_spec": {"name": name, "signature_name": "", "version": str(servable.version)},
          "metadata": {"signature_def": sig_map},
        },
        indent=1,
      )
    if method == "POST" and suffix in (":classify", ":regress"):
      raise ServingError(grpc.StatusCode.UNIMPLEMENTED, f"{suffix[1:]} is not implemented by seed.serve; use :predict")
    if method != "POST" or suffix != ":predict":
      raise invalid(f"Malformed request: {method} {path}")
    try:
      request = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
      raise invalid(f"JSON Parse error: {e}" if body.strip() else "JSON Parse error: The document is empty") from None
    if not isinstance(request, dict):
      raise invalid("JSON Parse error: the request body must be a JSON object with 'instances' or 'inputs'")
    signature_name = request.get("signature_name", DEFAULT_SIGNATURE)
    if not isinstance(signature_name, str):
      raise invalid("'signature_name' key must be a string value.")
    resolved = self.core.resolve(name, version, label, signature_name)
    inputs, row_format = rest_inputs(request, resolved[1])
    result = self.core.predict(name, version, label, signature_name, inputs, resolved=resolved)
    return rest_outputs(result.outputs, row_format)


class _HTTPServer(http.server.ThreadingHTTPServer):  # a thread per connection (daemon threads)
  request_queue_size = 128


class _HTTPServer6(_HTTPServer):
  address_family = socket.AF_INET6


def make_server(
  core: Core, host: str, port: int, max_request_bytes: int, read_timeout: float
) -> http.server.ThreadingHTTPServer:
  """An HTTP server answering the REST API from core (serve_forever() starts it).

  Bodies over `max_request_bytes` get 413 from their Content-Length, unread; a connection that
  sends nothing for `read_timeout` seconds (mid-request or idle) is closed.
  """
  handler = type(
    "RestHandler", (_RestHandler,), {"core": core, "max_request_bytes": max_request_bytes, "timeout": read_timeout}
  )
  server_class = _HTTPServer6 if ":" in host else _HTTPServer
  return server_class((host, port), handler)
