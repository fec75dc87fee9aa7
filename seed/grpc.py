"""Tensor RPC: serve tf.functions over gRPC from C++, call them as TF ops.

A `Server` binds tf.functions (by their input_signature) and runs them through
TensorFlow's function runtime on gRPC threads, never in Python. A `Client` has
one method per bound function, usable inside a tf.function (it is then the
client op, so graphs and SavedModels can call servers) and eagerly (then a
direct call through the op library's transport, skipping TF's op dispatch).

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

import collections
import ctypes
import dataclasses
import functools
import json
import os
import threading
import time
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from seed.rpc import build_op, wire

# gRPC's fork support restarts its poller thread in a forked child; a child that then closes
# its inherited fds before exec (subprocess.Popen's close_fds) crashes with "epoll_wait error:
# Bad file descriptor" (grpc/grpc#43055). Processes here fork only to exec, so it is off,
# unless the user set it. Read when gRPC initializes: before the op library is loaded.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

DEFAULT_MAX_MESSAGE_SIZE = 256 << 20  # bytes per message, both directions
_METHOD_LIST = "__methods__"
# Status message of every call to a server after `Server.complete()` (code OUT_OF_RANGE).
RUN_COMPLETE = "run complete"


_LOAD_LOCK = threading.Lock()


@functools.cache
def _library_path() -> str:
  with _LOAD_LOCK:  # lru_cache alone lets concurrent first callers all build
    return str(build_op.op_library_path())


@functools.cache
def _ops():
  return tf.load_op_library(_library_path())


def op_library():
  """The op library's Python op wrappers (built or loaded on first use): for seed.serving's C++ front end."""
  return _ops()


@functools.cache
def _clib() -> tuple[ctypes.CDLL, ctypes.PyDLL]:
  """The op library's C entry points for direct eager calls.

  Blocking entry points go through CDLL (GIL released while they wait); the
  quick ones through PyDLL (GIL kept: no contended re-acquire per call).
  """
  _ops()  # loads (and builds) the library first
  blocking, quick = ctypes.CDLL(_library_path()), ctypes.PyDLL(_library_path())
  blocking.seed_rpc_channel.restype = ctypes.c_void_p
  blocking.seed_rpc_channel.argtypes = [
    ctypes.c_char_p,
    ctypes.c_longlong,
    ctypes.c_int,
    *[ctypes.c_char_p] * 6,
    ctypes.c_char_p,
    ctypes.c_size_t,
  ]
  blocking.seed_rpc_start.restype = ctypes.c_void_p
  blocking.seed_rpc_start.argtypes = [
    ctypes.c_void_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_size_t,
    ctypes.c_longlong,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_int,
  ]
  blocking.seed_rpc_wait.argtypes = [ctypes.c_void_p, ctypes.c_int]
  blocking.seed_rpc_cancel.argtypes = [ctypes.c_void_p]
  quick.seed_rpc_done.argtypes = [ctypes.c_void_p]
  quick.seed_rpc_result.argtypes = [
    ctypes.c_void_p,
    ctypes.POINTER(ctypes.c_void_p),
    ctypes.POINTER(ctypes.c_size_t),
    ctypes.POINTER(ctypes.c_char_p),
  ]
  quick.seed_rpc_free.argtypes = [ctypes.c_void_p]
  return blocking, quick


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


def _call_direct(
  channel: int, path: bytes, request: bytes, timeout_us: int, stream: int = -1
) -> tuple[int, str, bytes | None]:
  """One blocking call on a channel of the op's transport: (code, message, body).

  stream: 1 on the channel's long-lived streams, 0 a unary call, -1 the process default (SEED_RPC_STREAMS)."""
  blocking, quick = _clib()
  handle = blocking.seed_rpc_start(channel, path, request, len(request), timeout_us, 0, stream, 200)
  try:
    while not quick.seed_rpc_done(handle):  # waits in short slices: Ctrl-C still works
      blocking.seed_rpc_wait(handle, 200)
  except BaseException:
    blocking.seed_rpc_cancel(handle)
    while not blocking.seed_rpc_wait(handle, 1000):
      pass
    quick.seed_rpc_free(handle)
    raise
  body, size, message = ctypes.c_void_p(), ctypes.c_size_t(), ctypes.c_char_p()
  code = quick.seed_rpc_result(handle, ctypes.byref(body), ctypes.byref(size), ctypes.byref(message))
  data = ctypes.string_at(body, size.value) if code == 0 else None
  text = (message.value or b"").decode(errors="replace")
  quick.seed_rpc_free(handle)
  return code, text, data


def grpc_version() -> str:
  """Version of the gRPC library linked into the op."""
  return _ops().seed_rpc_grpc_version().numpy().decode()


# ----------------------------------------------------------- credentials ---


def _check_readable(path: str | None, what: str) -> str:
  """'' for None; else the path, once it is known to be a readable, non-empty file."""
  if path is None:
    return ""
  path = os.fspath(path)
  try:
    with open(path, "rb") as f:
      if not f.read(1):
        raise ValueError(f"{what} file {path!r} is empty")
  except OSError as e:
    raise FileNotFoundError(f"cannot read {what} file {path!r}: {e.strerror}") from e
  return path


def _check_token_env(name: str | None) -> str:
  if name is None:
    return ""
  if not os.environ.get(name, "").strip():
    raise ValueError(f"environment variable {name} (the auth token) is not set or empty")
  return name


@dataclasses.dataclass(frozen=True)
class ServerCredentials:
  """TLS (and optionally mutual TLS and a bearer token) for a server's TCP addresses.

  Args:
    cert_file, key_file: the server's PEM certificate (chain) and private key.
    client_ca_file: set: mutual TLS; clients must present a certificate it signed.
    token_file: set: every TCP call must carry `authorization: Bearer <token>`,
      the token being this file's content (surrounding whitespace ignored).
    token_env: alternatively, the name of an environment variable holding the token.
  Files are checked now and read when the server starts; the token is compared
  in constant time and never logged.
  """

  cert_file: str | None = None
  key_file: str | None = None
  client_ca_file: str | None = None
  token_file: str | None = None
  token_env: str | None = None

  def __post_init__(self):
    if (self.cert_file is None) != (self.key_file is None):
      raise ValueError("ServerCredentials needs both cert_file and key_file for TLS (or neither)")
    if self.client_ca_file is not None and self.cert_file is None:
      raise ValueError("client_ca_file (mutual TLS) needs the server's own cert_file and key_file")
    if self.token_file is not None and self.token_env is not None:
      raise ValueError("give the token as token_file or token_env, not both")
    if self.cert_file is None and self.token_file is None and self.token_env is None:
      raise ValueError("ServerCredentials needs a certificate and key, a token, or both")

  def attrs(self) -> dict[str, str]:
    """The server-create op's attributes: paths and a variable name, never the secrets."""
    return dict(
      cert_file=_check_readable(self.cert_file, "TLS certificate"),
      key_file=_check_readable(self.key_file, "TLS private key"),
      client_ca_file=_check_readable(self.client_ca_file, "client CA"),
      token_file=_check_readable(self.token_file, "auth token"),
      token_env=_check_token_env(self.token_env),
    )


@dataclasses.dataclass(frozen=True)
class ChannelCredentials:
  """How a client reaches a TLS server (and authenticates).

  Args:
    ca_file: PEM certificates that must have signed the server's certificate
      (None: gRPC's default roots).
    cert_file, key_file: the client's own certificate and key (mutual TLS).
    token_file / token_env: a bearer token sent with every call, from a file
      or an environment variable.
    server_name: the name the server's certificate must carry (default: the
      host part of the address).
    tls: False sends the token over plaintext (only for a server run with
      --insecure on a trusted network).
  """

  ca_file: str | None = None
  cert_file: str | None = None
  key_file: str | None = None
  token_file: str | None = None
  token_env: str | None = None
  server_name: str | None = None
  tls: bool = True

  def __post_init__(self):
    if (self.cert_file is None) != (self.key_file is None):
      raise ValueError("a client certificate (mutual TLS) needs both cert_file and key_file")
    if self.token_file is not None and self.token_env is not None:
      raise ValueError("give the token as token_file or token_env, not both")
    if not self.tls and (self.ca_file or self.cert_file):
      raise ValueError("certificate files given with tls=False")

  def attrs(self) -> dict[str, Any]:
    """The client op's attributes: paths and a variable name, never the secrets."""
    return dict(
      tls=self.tls,
      ca_file=_check_readable(self.ca_file, "CA certificate"),
      cert_file=_check_readable(self.cert_file, "client certificate"),
      key_file=_check_readable(self.key_file, "client private key"),
      token_file=_check_readable(self.token_file, "auth token"),
      token_env=_check_token_env(self.token_env),
      server_name=self.server_name or "",
    )


_INSECURE_ATTRS = dict(tls=False, ca_file="", cert_file="", key_file="", token_file="", token_env="", server_name="")


def channel_attrs(credentials: ChannelCredentials | None) -> dict[str, Any]:
  """A client op's channel attributes for these credentials (None: plaintext, no token)."""
  return credentials.attrs() if credentials else dict(_INSECURE_ATTRS)


def _open_channel(address: str, max_message_size: int, attrs: dict[str, Any]) -> int:
  """The transport's cached channel for these settings (a handle for _call_direct)."""
  blocking, _ = _clib()
  error = ctypes.create_string_buffer(1024)
  text = [attrs[k].encode() for k in ("ca_file", "cert_file", "key_file", "token_file", "token_env", "server_name")]
  handle = blocking.seed_rpc_channel(address.encode(), max_message_size, int(attrs["tls"]), *text, error, len(error))
  if not handle:
    raise ValueError(f"cannot connect to {address}: {error.value.decode(errors='replace')}")
  return handle


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


def _decode(node) -> Any:
  if "none" in node:
    return None
  if "spec" in node:
    shape, dtype, name = node["spec"]
    return tf.TensorSpec(shape, tf.dtypes.as_dtype(dtype), name)
  if "namedtuple" in node:
    cls = collections.namedtuple(node["namedtuple"], node["fields"])
    return cls(*[_decode(v) for v in node["values"]])
  if "tuple" in node:
    return tuple(_decode(v) for v in node["tuple"])
  if "list" in node:
    return [_decode(v) for v in node["list"]]
  return {k: _decode(v) for k, v in node["dict"]}


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


class Method:
  """A remote function. Calling it runs a TF op (eagerly or in a graph)."""

  def __init__(self, client: Client, name: str, signature: dict):
    self.name = name
    self._client = client
    self._in_structure = _decode(signature["inputs"])
    self._in_specs = tf.nest.flatten(self._in_structure)
    self._out_structure = _decode(signature["outputs"])
    self._out_specs = [s for s in tf.nest.flatten(self._out_structure) if s is not None]
    self.batch_size = signature["batch_size"]
    self._path = f"/seed/{name}".encode()
    self._out_np_dtypes = [
      np.dtype(object) if s.dtype == tf.string else np.dtype(s.dtype.as_numpy_dtype) for s in self._out_specs
    ]

  def __repr__(self) -> str:
    return f"<remote {self.name}{self._in_structure} -> {self._out_structure}>"

  def _timeout_ms(self, timeout: float | None) -> int:
    timeout = self._client.timeout if timeout is None else timeout
    return -1 if timeout is None else int(timeout * 1000)

  def _flat_args(self, args) -> list:
    """The call's arguments flattened like the signature; arity checked."""
    if len(args) != len(self._in_structure):
      raise TypeError(f"{self.name}() takes {len(self._in_structure)} argument(s), got {len(args)}")
    return _flatten_like(self._in_structure, args, self.name)

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

  def _call_eagerly(self, args, timeout) -> tuple[int, str, list[np.ndarray] | None]:
    """The eager path: numpy framing + a direct call, no TF op dispatch."""
    arrays = [wire.as_array(v, s.dtype) for v, s in zip(self._flat_args(args), self._in_specs)]
    timeout_ms = self._timeout_ms(timeout)
    code, message, body = _call_direct(
      self._client.channel,
      self._path,
      wire.serialize(arrays),
      timeout_ms * 1000 if timeout_ms >= 0 else -1,
      self._client.stream,
    )
    if code != 0:
      return code, f"{message} [method '{self.name}' at {self._client.address}]", None
    outputs = wire.parse(body)
    if [o.dtype if o.dtype != object else np.dtype(object) for o in outputs] != self._out_np_dtypes:
      return 13, f"server returned unexpected outputs [method '{self.name}' at {self._client.address}]", None
    return 0, "", outputs

  def _pack(self, outputs):
    outputs = iter(outputs)  # None leaves (no tensor) are not sent
    leaves = [None if leaf is None else next(outputs) for leaf in tf.nest.flatten(self._out_structure)]
    return tf.nest.pack_sequence_as(self._out_structure, leaves)

  def __call__(self, *args, timeout: float | None = None):
    """Calls the remote function; raises the server's TF error on failure.

    `timeout` (seconds) overrides the client's default per-call deadline.
    """
    if tf.executing_eagerly():
      code, message, outputs = self._call_eagerly(args, timeout)
      if code != 0:
        raise _ERRORS.get(code, tf.errors.UnknownError)(None, None, message)
      if self._client.numpy_outputs:
        return self._pack(outputs)
      return self._pack([tf.constant(o) for o in outputs])
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


def _flatten_like(structure, value, where: str) -> list:
  """Flattens `value` down to the leaves of `structure` (in tf.nest order).

  Unlike tf.nest.flatten, a Python list where the structure has a TensorSpec
  stays one value (it is converted to a tensor).
  """
  if isinstance(structure, tf.TensorSpec):
    return [value]
  if isinstance(structure, dict):
    if not isinstance(value, dict) or set(value) != set(structure):
      raise TypeError(
        f"{where}: expected a dict with keys {sorted(structure)}, got {value!r}; arguments do not match the signature"
      )
    return [x for k in sorted(structure) for x in _flatten_like(structure[k], value[k], f"{where}[{k!r}]")]
  if not isinstance(value, (tuple, list)) or len(value) != len(structure):
    raise TypeError(
      f"{where}: expected a sequence of {len(structure)}, got {value!r}; arguments do not match the signature"
    )
  return [x for i, (s, v) in enumerate(zip(structure, value)) for x in _flatten_like(s, v, f"{where}[{i}]")]


# Messages of a connection that found no server (yet): worth waiting for.
_NOT_LISTENING = ("connection refused", "no such file or directory", "dns resolution failed", "deadline exceeded")


def _not_listening(message: str) -> bool:
  return any(s in message.lower() for s in _NOT_LISTENING)


def _certificate_problem(address: str, credentials: ChannelCredentials) -> str:
  """Why the server's certificate fails verification ("certificate has expired", ...), found
  by one TLS handshake with Python's ssl; gRPC's message only says that it failed."""
  import socket  # pylint: disable=g-import-not-at-top
  import ssl  # pylint: disable=g-import-not-at-top

  host, _, port = address.rpartition(":")
  if not host or not port.isdigit() or "/" in host:
    return ""
  host = host.strip("[]")
  try:
    ctx = ssl.create_default_context(cafile=credentials.ca_file)
    if credentials.cert_file:
      ctx.load_cert_chain(credentials.cert_file, credentials.key_file)
    ctx.set_alpn_protocols(["h2"])
    with socket.create_connection((host, int(port)), timeout=5) as sock:
      with ctx.wrap_socket(sock, server_hostname=credentials.server_name or host):
        return ""
  except ssl.SSLCertVerificationError as e:
    return f"the server's certificate failed verification: {e.verify_message}"
  except (OSError, ValueError):
    return ""


def is_run_complete(error: BaseException) -> bool:
  """True for the error of a call to a server that said its run is complete (`Server.complete()`)."""
  return isinstance(error, tf.errors.OutOfRangeError) and RUN_COMPLETE in str(error)


class Client:
  """Connects to a `Server` and exposes one `Method` per bound function."""

  def __init__(
    self,
    address: str,
    *,
    timeout: float | None = None,
    connect_timeout: float = 60.0,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    numpy_outputs: bool = False,
    credentials: ChannelCredentials | None = None,
    streams: bool | None = None,
  ):
    """Waits (up to connect_timeout seconds) for the server and reads its methods.

    Args:
      address: "unix:/path" or "host:port".
      timeout: default per-call deadline in seconds (None: no deadline; a dead
        server is still detected by keepalive and answered with Unavailable).
      connect_timeout: how long to wait for the server to come up.
      max_message_size: largest request or response in bytes.
      numpy_outputs: eager calls return numpy arrays (read-only views of the
        response) instead of tf.Tensors: cheaper, and what an actor stepping
        environments wants. Calls inside a tf.function always give tensors.
      credentials: TLS and/or a token for a secured TCP server; default:
        plaintext. Fails fast (Unavailable, naming TLS) when one side uses TLS
        and the other does not, or the server's certificate is not trusted.
      streams: calls travel tagged on the channel's long-lived bidirectional
        streams (True) or each as a unary call of its own (False); None: the
        process default, streams unless SEED_RPC_STREAMS=0.
    """
    self.address = address
    self.numpy_outputs = numpy_outputs
    self.timeout = timeout
    self.max_message_size = max_message_size
    self.credentials = credentials
    self.stream = -1 if streams is None else int(bool(streams))
    self.security = channel_attrs(credentials)
    self.channel = _open_channel(address, max_message_size, self.security)
    names, signatures = self._list_methods(connect_timeout)
    self._methods = {}
    for name, sig in zip(names, signatures):
      name = name.decode()
      self._methods[name] = Method(self, name, json.loads(sig))

  def _list_methods(self, connect_timeout: float) -> tuple[np.ndarray, np.ndarray]:
    """Polls until the server answers: a server not up yet is waited for, any other failure raised at once."""
    deadline = time.monotonic() + connect_timeout
    path = f"/seed/{_METHOD_LIST}".encode()
    while True:
      left = deadline - time.monotonic()
      code, message, body = _call_direct(
        self.channel, path, wire.serialize([]), int(max(left, 0.01) * 1e6), self.stream
      )
      if code == 0:
        return tuple(wire.parse(body))
      if code == 14 and _not_listening(message) and left > 0:
        time.sleep(min(0.1, max(left, 0)))
        continue
      if code in (4, 14) and left <= 0:
        raise tf.errors.DeadlineExceededError(
          None, None, f"no tensor-RPC server answered at {self.address} within {connect_timeout}s ({message})"
        )
      if code == 14 and "certificate verify failed" in message and self.credentials is not None:
        cause = _certificate_problem(self.address, self.credentials)
        message += f": {cause}" if cause else ""
      raise _ERRORS.get(code, tf.errors.UnknownError)(None, None, f"{message} [connecting to {self.address}]")

  @property
  def methods(self) -> dict[str, Method]:
    return dict(self._methods)

  def __getattr__(self, name: str) -> Method:
    methods = self.__dict__.get("_methods", {})
    if name in methods:
      return methods[name]
    raise AttributeError(
      f"server at {self.__dict__.get('address')} has no method {name!r}; it serves {sorted(methods)}"
    )

  def __dir__(self):
    return list(super().__dir__()) + list(self._methods)
