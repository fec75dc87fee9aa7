"""Tensor RPC: serve tf.functions over gRPC from C++, call them as TF ops.

A `Server` binds tf.functions (by their input_signature) and runs them through
TensorFlow's function runtime on gRPC threads, never in Python. A `Client` has
one method per bound function, usable inside a tf.function (it is then the
client op, so graphs and SavedModels can call servers) and eagerly (then a
direct call through the TF-free client library of seed.rpc.client, skipping
TF's op dispatch; a process without TensorFlow uses that module alone).

Batching: a function whose inputs all have the same static leading dimension N
(and whose outputs do too) is batched. Each call supplies one element (without
the leading dimension) or k <= N elements; the function runs once N slots are
filled (or after `flush_timeout`, padded with zeros) and every caller gets its
own rows back.

    server = grpc.Server(['unix:/tmp/foo', 'localhost:8000'])

    @tf.function(input_signature=[tf.TensorSpec([5], tf.int32)])
    def foo(x):
      return x + 1

    server.bind(foo)
    server.start()
    grpc.Client('unix:/tmp/foo').foo(42)  # 43, once 5 calls are in

TCP can be secured with TLS (mutual TLS with a client CA) and a bearer token:

    creds = grpc.ServerCredentials(cert_file="learner.crt", key_file="learner.key",
                                   client_ca_file=None, token_file="token")
    server = grpc.Server(["0.0.0.0:8686"], credentials=creds)
    client = grpc.Client("learner:8686", credentials=grpc.ChannelCredentials(
        ca_file="ca.crt", token_file="token"))

Unix-socket addresses of the same server take no credentials (the socket is an
owner-only file). Files are read when the server starts or the channel is made;
only their paths are op attributes, so no key or token is stored in a graph.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import threading
import weakref
from collections.abc import Sequence
from typing import Any

import tensorflow as tf
from tensorflow.python.framework import op_def_registry

from seed.rpc import build_op, errors
from seed.rpc import client as rpc_client
from seed.rpc.credentials import ChannelCredentials, ServerCredentials, channel_attrs
from seed.rpc.errors import RUN_COMPLETE

__all__ = [
  "RUN_COMPLETE",
  "ChannelCredentials",
  "Client",
  "DEFAULT_MAX_MESSAGE_SIZE",
  "Method",
  "Server",
  "ServerCredentials",
  "channel_attrs",
  "grpc_version",
  "is_run_complete",
  "op_library",
]

DEFAULT_MAX_MESSAGE_SIZE = rpc_client.DEFAULT_MAX_MESSAGE_SIZE
_LOAD_LOCK = threading.Lock()


@functools.cache
def _library_path() -> str:
  with _LOAD_LOCK:  # functools.cache alone lets concurrent first callers all build
    return str(build_op.op_library_path())


class _OpLibrary:
  """The loaded op library, whose ops with string attrs get `attrs_digest` (grpc/op_attrs.h says why).

  TensorFlow caches an eager op's kernel under a key that abbreviates long string attrs to their ends:
  without the digest, two servers at long socket paths that differ in the middle shared one kernel.
  """

  def __init__(self, module):
    self._module = module
    self._string_attrs: dict[str, tuple[str, ...]] = {}  # snake_case op function -> its string attrs
    for name in dir(module):
      op = op_def_registry.get(name) if name.startswith("Seed") else None
      if op is not None and any(a.name == "attrs_digest" for a in op.attr):
        snake = re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
        self._string_attrs[snake] = tuple(a.name for a in op.attr if a.type in ("string", "list(string)"))

  def __getattr__(self, name: str):
    fn = getattr(self._module, name)
    keys = self._string_attrs.get(name)
    if keys is None:
      return fn

    def with_digest(*args, **attrs):
      strings = repr([(k, attrs.get(k)) for k in keys]).encode()
      digest = hashlib.blake2b(strings, digest_size=8).digest()
      return fn(*args, attrs_digest=int.from_bytes(digest, "little", signed=True), **attrs)

    return with_digest

  def __dir__(self):
    return dir(self._module)


@functools.cache
def _ops() -> _OpLibrary:
  return _OpLibrary(tf.load_op_library(_library_path()))


def op_library():
  """The op library's Python op wrappers (built or loaded on first use): for seed.serving's C++ front end."""
  return _ops()


_ERRORS = {
  1: tf.errors.CancelledError,
  2: tf.errors.UnknownError,
  3: tf.errors.InvalidArgumentError,
  4: tf.errors.DeadlineExceededError,
  5: tf.errors.NotFoundError,
  6: tf.errors.AlreadyExistsError,
  7: tf.errors.PermissionDeniedError,
  8: tf.errors.ResourceExhaustedError,
  9: tf.errors.FailedPreconditionError,
  10: tf.errors.AbortedError,
  11: tf.errors.OutOfRangeError,
  12: tf.errors.UnimplementedError,
  13: tf.errors.InternalError,
  14: tf.errors.UnavailableError,
  15: tf.errors.DataLossError,
  16: tf.errors.UnauthenticatedError,
}


def _tf_error(code: int, message: str) -> tf.errors.OpError:
  return _ERRORS.get(code, tf.errors.UnknownError)(None, None, message)


def grpc_version() -> str:
  """Version of the gRPC library linked into the op."""
  return _ops().seed_rpc_grpc_version().numpy().decode()


# ------------------------------------------------------------ structures ---
# Structures (tuples, lists, dicts, namedtuples of TensorSpecs) travel from the
# server to clients as JSON so a client can pack outputs like the function did.


def _encode(value) -> Any:
  if value is None:
    return {"none": True}
  if isinstance(value, tf.TensorSpec):
    return {"spec": [value.shape.as_list() if value.shape.rank is not None else None, value.dtype.name, value.name]}
  if isinstance(value, tuple) and hasattr(value, "_fields"):
    return {"namedtuple": type(value).__name__, "fields": list(value._fields), "values": [_encode(v) for v in value]}
  if isinstance(value, (tuple, list)):
    return {"tuple" if isinstance(value, tuple) else "list": [_encode(v) for v in value]}
  if isinstance(value, dict):
    return {"dict": [[k, _encode(v)] for k, v in value.items()]}
  raise TypeError(f"cannot send a structure containing {type(value).__name__}")


def _as_spec(t) -> tf.TensorSpec | None:
  if t is None:
    return None
  if not isinstance(t, tf.Tensor):
    raise TypeError(f"bound functions must return tensors (or None), got {type(t).__name__}")
  return tf.TensorSpec(t.shape, t.dtype)


def _leading_dim(specs) -> int | None:
  dims = {s.shape[0] if s.shape.rank else None for s in specs}
  return dims.pop() if len(dims) == 1 else None


# ---------------------------------------------------------------- server ---


class _Binding:
  """Everything needed to (re)bind one method on a C++ server."""

  def __init__(self, name, concrete_fns, attrs):
    self.name = name
    self.concrete_fns = concrete_fns
    self.attrs = attrs
    # Keeps captured variables alive as long as the server may run them.
    self.variables = [v for cf in concrete_fns for v in cf.variables]


def _concrete_functions(fn) -> list:
  fns = list(fn) if isinstance(fn, (list, tuple)) else [fn]
  if not fns:
    raise ValueError("bind() needs at least one function")
  out = []
  for f in fns:
    if hasattr(f, "get_concrete_function") and not hasattr(f, "captured_inputs"):
      if getattr(f, "input_signature", None) is None:
        raise ValueError(f"tf.function {getattr(f, '__name__', f)!r} needs an input_signature to be bound")
      f = f.get_concrete_function()
    if not hasattr(f, "captured_inputs") or not hasattr(f, "structured_input_signature"):
      raise TypeError(f"bind() expects a tf.function with an input_signature or a ConcreteFunction, got {f!r}")
    out.append(f)
  return out


def _flat_names(structure) -> list[str]:
  flat = tf.nest.flatten(structure)
  names = []
  for i, spec in enumerate(flat):
    names.append(spec.name or f"input_{i}")
  return names


class Server:
  """A gRPC server whose methods are tf.functions run from C++."""

  def __init__(
    self,
    server_addresses: Sequence[str] | str,
    *,
    num_threads: int | None = None,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    credentials: ServerCredentials | None = None,
  ):
    """Creates a server (not yet listening).

    Args:
      server_addresses: addresses to listen on: "unix:/path" or "host:port"
        (port 0 picks a free port, see `ports`).
      num_threads: gRPC completion-queue threads; default: the machine's cores.
      max_message_size: largest request or response in bytes.
      credentials: TLS / token required on the TCP addresses (unix sockets
        stay plain); default: plaintext, no token.
    """
    if isinstance(server_addresses, str):
      server_addresses = [server_addresses]
    self._addresses = list(server_addresses)
    if not self._addresses:
      raise ValueError("Server needs at least one address")
    self._num_threads = num_threads or 0
    self._max_message_size = max_message_size
    self._credentials = credentials
    self._security = credentials.attrs() if credentials else {}  # checks the files now
    self._bindings: dict[str, _Binding] = {}
    self._state = "created"
    self._ports: list[int] = []
    self._lock = threading.Lock()
    self._id = [self._create()]
    self._finalizer = weakref.finalize(self, _shutdown_ids, self._id)

  def _create(self) -> int:
    return int(
      _ops().seed_rpc_server_create(
        addresses=self._addresses,
        num_threads=self._num_threads,
        max_message_size=self._max_message_size,
        **self._security,
      )
    )

  def bind(
    self,
    fn,
    *,
    name: str | None = None,
    batched: bool | None = None,
    flush_timeout: float | None = None,
    pad_mask: bool = False,
  ) -> None:
    """Binds a tf.function (or a list of them, used round robin) as a method.

    Args:
      fn: a tf.function with an input_signature, a ConcreteFunction, or a list
        of either with the same signature (e.g. one per inference device).
      name: method name; default: the function's name.
      batched: force batching on or off; default: detected from the signature.
      flush_timeout: seconds after which a partially filled batch runs anyway,
        padded with zeros; default: wait for a full batch.
      pad_mask: if True, the function's last input is a [N] bool mask that the
        server fills (True = real slot, False = padding); clients don't send it.
    """
    fns = _concrete_functions(fn)
    cf = fns[0]
    name = name or getattr(fn, "__name__", None) or cf.graph.name
    if name.startswith("__"):
      raise ValueError(f"method names starting with '__' are reserved, got {name!r}")
    args_structure = cf.structured_input_signature[0]
    in_specs = tf.nest.flatten(args_structure)
    out_structure = tf.nest.map_structure(_as_spec, cf.structured_outputs)
    out_specs = [s for s in tf.nest.flatten(out_structure) if s is not None]
    for other in fns[1:]:
      if tf.nest.flatten(other.structured_input_signature[0]) != in_specs:
        raise ValueError("functions bound under one name must have the same input signature")

    n = _leading_dim(in_specs) if in_specs else None
    detected = (
      n is not None
      and bool(out_specs)
      and _leading_dim(out_specs) == n
      and all(s.shape[1:].is_fully_defined() for s in in_specs)
    )
    if batched is None:
      batched = detected
    elif batched and not detected:
      raise ValueError(
        f"{name!r} cannot be batched: every input and output needs the same static leading "
        f"dimension and fully defined element shapes; inputs {in_specs}, outputs {out_specs}"
      )
    if pad_mask:
      last = in_specs[-1] if in_specs else None
      if not batched or last.dtype != tf.bool or last.shape != [n]:
        raise ValueError(f"pad_mask=True needs a batched function whose last input is TensorSpec([{n}], tf.bool)")
      args_structure = tuple(args_structure)[:-1]
    if flush_timeout is not None and not batched:
      raise ValueError("flush_timeout only applies to batched functions")
    signature = json.dumps(
      {"inputs": _encode(tuple(args_structure)), "outputs": _encode(out_structure), "batch_size": n if batched else 0}
    )
    attrs = dict(
      method=name,
      input_dtypes=[s.dtype for s in in_specs],
      input_shapes=[s.shape for s in in_specs],
      input_names=_flat_names(tuple(args_structure)) + (["pad_mask"] if pad_mask else []),
      output_dtypes=[s.dtype for s in out_specs],
      output_shapes=[s.shape for s in out_specs],
      batch_size=n if batched else 0,
      flush_timeout_us=-1 if flush_timeout is None else int(flush_timeout * 1e6),
      pad_mask=pad_mask,
      signature=signature,
    )
    with self._lock:
      if name in self._bindings:
        raise ValueError(f"a function named {name!r} is already bound")
      if self._state != "created":
        raise RuntimeError("bind() must be called before start()")
      binding = _Binding(name, fns, attrs)
      self._bind(binding)
      self._bindings[name] = binding

  def _bind(self, binding: _Binding) -> None:
    for i, cf in enumerate(binding.concrete_fns):
      _ops().seed_rpc_server_bind(self._id[0], cf.captured_inputs, fn=cf, append=i > 0, **binding.attrs)

  def start(self) -> None:
    """Starts listening. After shutdown(), start() serves the same bindings again."""
    with self._lock:
      if self._state == "started":
        raise RuntimeError("server already started")
      if self._state == "shut_down":
        self._id[0] = self._create()
        for binding in self._bindings.values():
          self._bind(binding)
      if not self._bindings:
        raise RuntimeError("bind at least one function before start()")
      self._ports = [int(p) for p in _ops().seed_rpc_server_start(self._id[0]).numpy()]
      self._state = "started"

  def complete(self, message: str = RUN_COMPLETE) -> None:
    """Answers every call from now on with OUT_OF_RANGE(message); calls running now finish.

    Tells clients that the job is done so they stop rather than retry (actors
    exit 0 on it); shutdown() afterwards, once they have had time to hear it.
    """
    with self._lock:
      if self._state == "started":
        _ops().seed_rpc_server_complete(self._id[0], message)

  def shutdown(self) -> None:
    """Stops the server; running and waiting calls fail with Cancelled/Unavailable."""
    with self._lock:
      if self._state == "started":
        _ops().seed_rpc_server_shutdown(self._id[0])
        self._state = "shut_down"

  @property
  def ports(self) -> list[int]:
    """Bound TCP port per address (0 for unix sockets); empty before start()."""
    return list(self._ports)

  def stats(self) -> dict[str, dict[str, float]]:
    """Per-method counters: calls, errors, `dropped` (calls cancelled or expired
    while their rows waited in a batch: taken out of it), batches, slots, mean_batch_fill, and
    `function_runs`: runs of each bound function, in bind order (a list bound
    round robin, e.g. one inference function per device, shows the spread).

    The "__server__" entry counts `refused_calls` (TCP calls without the right
    token), says whether the server is `complete`, counts the calls
    answered "run complete" since (`completed_calls`) and the function runs
    in flight (`running`: blocked ones included, e.g. on a queue), and the
    long-lived streams: `streams_open`, `streams_opened`, `stream_calls`
    (calls that came on streams) and `calls_per_stream` (their mean).
    """
    return json.loads(_ops().seed_rpc_server_stats(self._id[0]).numpy())

  def __enter__(self) -> Server:
    if self._state != "started":
      self.start()
    return self

  def __exit__(self, *exc) -> None:
    self.shutdown()


def _shutdown_ids(holder: list[int]) -> None:
  try:
    _ops().seed_rpc_server_shutdown(holder[0])
  except Exception:  # pylint: disable=broad-except
    pass  # interpreter teardown: nothing left to tell


# ---------------------------------------------------------------- client ---


def _tensor_spec(shape, dtype: str, name: str | None) -> tf.TensorSpec:
  return tf.TensorSpec(shape, tf.dtypes.as_dtype(dtype), name)


class Method(rpc_client.Method):
  """A remote function. Calling it runs a TF op in a graph; eagerly, the numpy client's direct call."""

  _make_spec = staticmethod(_tensor_spec)

  def _prepare(self, args, timeout):
    """Flat input tensors and the op attributes for a call in a graph."""
    flat = [tf.convert_to_tensor(v, dtype_hint=s.dtype) for v, s in zip(self._flat_args(args), self._in_specs)]
    out_shapes = [s.shape for s in self._out_specs]
    if self.batch_size and flat:
      x, spec = flat[0], self._in_specs[0]
      if x.shape.rank == spec.shape.rank - 1:
        out_shapes = [s[1:] for s in out_shapes]
      else:
        out_shapes = [tf.TensorShape([x.shape[0] if x.shape.rank else None]).concatenate(s[1:]) for s in out_shapes]
    return flat, dict(
      Tout=[s.dtype for s in self._out_specs],
      output_shapes=out_shapes,
      address=self._client.address,
      method=self.name,
      timeout_ms=self._timeout_ms(timeout),
      max_message_size=self._client.max_message_size,
      stream=self._client.stream,
      **self._client.security,
    )

  def __call__(self, *args, timeout: float | None = None):
    """Calls the remote function; raises the server's TF error on failure.

    `timeout` (seconds) overrides the client's default per-call deadline.
    """
    if tf.executing_eagerly():
      code, message, outputs = self._call_eagerly(args, timeout)
      if code != 0:
        raise self._client.error(code, message)
      return self._pack(outputs if self._client.numpy_outputs else [tf.constant(o) for o in outputs])
    flat, attrs = self._prepare(args, timeout)
    return self._pack(_ops().seed_rpc_call(flat, **attrs))

  def with_status(self, *args, timeout: float | None = None):
    """Like calling, but returns (code, message, outputs) instead of raising.

    code is a gRPC/TF status code (0 = OK); on failure the outputs are zeros
    of the declared shapes (unknown dimensions as 0).
    """
    if tf.executing_eagerly():
      code, message, outputs = self._call_eagerly(args, timeout)
      if code != 0:
        outputs = [
          tf.zeros([d or 0 for d in s.shape] if s.shape.rank is not None else [], s.dtype) for s in self._out_specs
        ]
      return (
        tf.constant(code, tf.int32),
        tf.constant(message),
        self._pack([o if isinstance(o, tf.Tensor) else tf.constant(o) for o in outputs]),
      )
    flat, attrs = self._prepare(args, timeout)
    code, message, outputs = _ops().seed_rpc_call_with_status(flat, **attrs)
    return code, message, self._pack(outputs)


def is_run_complete(error: BaseException) -> bool:
  """True for the error of a call to a server that said its run is complete (`Server.complete()`)."""
  return errors.is_run_complete(error)


class Client(rpc_client.Client):
  """Connects to a `Server` and exposes one `Method` per bound function.

  Eagerly, a call goes straight through the TF-free client library (seed.rpc.client) and
  failures raise tf.errors; inside a tf.function it is the client op.
  """

  method_class = Method

  def __init__(self, address: str, *, numpy_outputs: bool = False, **kwargs):
    """Waits (up to connect_timeout seconds) for the server and reads its methods.

    The keyword arguments are seed.rpc.client.Client's (timeout, connect_timeout,
    max_message_size, credentials, streams). numpy_outputs: eager calls return numpy arrays
    (read-only views of the response) instead of tf.Tensors; calls inside a tf.function always
    give tensors.
    """
    self.numpy_outputs = numpy_outputs
    super().__init__(address, **kwargs)

  def error(self, code: int, message: str) -> tf.errors.OpError:
    return _tf_error(code, message)
