"""A tensor-RPC client without TensorFlow: numpy in, numpy out, over the op's own C++ transport.

The transport (grpc/transport*.cc, c_api.cc) is built as a small shared
library with no TensorFlow in it (`build_op.client_library_path()`, cached like
the op) and called through ctypes: TLS, mutual TLS and the bearer token,
deadlines, cancellation and the long-lived streams all work as in the op.
An actor process needs only this, numpy and its environments:

    from seed.rpc import client, errors
    learner = client.Client("unix:/tmp/x/learner.sock", connect_timeout=30)
    action = learner.inference(*request, timeout=60)   # numpy arrays
    # a failed call raises errors.Unavailable, errors.OutOfRange, ... (code, message)

`seed.grpc.Client` builds on this one: the same eager path, but tf.errors and
tf.Tensor outputs, and the client op inside a tf.function.
"""

from __future__ import annotations

import ctypes
import functools
import json
import os
import threading
import time
from typing import Any

import numpy as np

from seed.rpc import build_op, errors, structure, wire
from seed.rpc.credentials import ChannelCredentials, channel_attrs

# gRPC's fork support restarts its poller thread in a forked child; a child that then closes
# its inherited fds before exec (subprocess.Popen's close_fds) crashes with "epoll_wait error:
# Bad file descriptor" (grpc/grpc#43055). Processes here fork only to exec, so it is off,
# unless the user set it. Read when gRPC initializes: before either library is loaded.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

DEFAULT_MAX_MESSAGE_SIZE = 256 << 20  # bytes per message, both directions
METHOD_LIST = "__methods__"
# Messages of a connection that found no server (yet), or of a cached channel's stream to a server
# that has since shut down (the channel learns it asynchronously, so a call right after a restart
# can land on the dead stream): worth waiting for, since the listing is safe to send again.
_NOT_LISTENING = (
  "connection refused",
  "no such file or directory",
  "dns resolution failed",
  "deadline exceeded",
  "cancelling all calls",
  "the stream broke",
  "the server closed the stream",
)

_LOAD_LOCK = threading.Lock()


@functools.cache
def _library() -> tuple[ctypes.CDLL, ctypes.PyDLL]:
  """The client library's C entry points (built on first use).

  Blocking entry points go through CDLL (GIL released while they wait); the
  quick ones through PyDLL (GIL kept: no contended re-acquire per call).
  """
  with _LOAD_LOCK:  # functools.cache alone lets concurrent first callers all build
    path = str(build_op.client_library_path())
  blocking, quick = ctypes.CDLL(path), ctypes.PyDLL(path)
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


def open_channel(address: str, max_message_size: int, attrs: dict[str, Any]) -> int:
  """The transport's cached channel for these settings (`attrs`: credentials.channel_attrs)."""
  blocking, _ = _library()
  error = ctypes.create_string_buffer(1024)
  text = [attrs[k].encode() for k in ("ca_file", "cert_file", "key_file", "token_file", "token_env", "server_name")]
  handle = blocking.seed_rpc_channel(address.encode(), max_message_size, int(attrs["tls"]), *text, error, len(error))
  if not handle:
    raise ValueError(f"cannot connect to {address}: {error.value.decode(errors='replace')}")
  return handle


def call(channel: int, path: bytes, request: bytes, timeout_us: int, stream: int = -1) -> tuple[int, str, bytes | None]:
  """One blocking call on a channel: (code, message, body).

  stream: 1 on the channel's long-lived streams, 0 a unary call, -1 the process default (SEED_RPC_STREAMS)."""
  blocking, quick = _library()
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


def dtype_name(spec) -> str:
  """A spec's TF dtype name, for a Spec (a str) or a tf.TensorSpec (a tf.DType)."""
  return getattr(spec.dtype, "name", spec.dtype)


class Method:
  """A remote function called eagerly: numpy arrays (or anything np.asarray takes) in, numpy out."""

  def __init__(self, client: Client, name: str, signature: dict):
    self.name = name
    self._client = client
    self._in_structure = structure.decode(signature["inputs"], self._make_spec)
    self._in_specs = structure.flatten(self._in_structure)
    self._out_structure = structure.decode(signature["outputs"], self._make_spec)
    self._out_leaves = structure.flatten(self._out_structure)  # None leaves: outputs that are not sent
    self._out_specs = [s for s in self._out_leaves if s is not None]
    self.batch_size = signature["batch_size"]
    self._path = f"/seed/{name}".encode()
    self._out_np_dtypes = [wire.numpy_dtype(dtype_name(s)) for s in self._out_specs]

  _make_spec = staticmethod(structure.Spec)  # what a spec leaf is built as (seed.grpc: tf.TensorSpec)

  def __repr__(self) -> str:
    return f"<remote {self.name}{self._in_structure} -> {self._out_structure}>"

  def _timeout_ms(self, timeout: float | None) -> int:
    timeout = self._client.timeout if timeout is None else timeout
    return -1 if timeout is None else int(timeout * 1000)

  def _flat_args(self, args) -> list:
    """The call's arguments flattened like the signature; arity checked."""
    if len(args) != len(self._in_structure):
      raise TypeError(f"{self.name}() takes {len(self._in_structure)} argument(s), got {len(args)}")
    return structure.flatten_like(self._in_structure, args, self.name)

  def _call_eagerly(self, args, timeout) -> tuple[int, str, list[np.ndarray] | None]:
    """(code, message, outputs): numpy framing and one direct call."""
    arrays = [wire.as_array(v, dtype_name(s)) for v, s in zip(self._flat_args(args), self._in_specs)]
    timeout_ms = self._timeout_ms(timeout)
    code, message, body = call(
      self._client.channel,
      self._path,
      wire.serialize(arrays),
      timeout_ms * 1000 if timeout_ms >= 0 else -1,
      self._client.stream,
    )
    if code != 0:
      return code, f"{message} [method '{self.name}' at {self._client.address}]", None
    outputs = wire.parse(body)
    if [o.dtype for o in outputs] != self._out_np_dtypes:
      return 13, f"server returned unexpected outputs [method '{self.name}' at {self._client.address}]", None
    return 0, "", outputs

  def _pack(self, outputs):
    outputs = iter(outputs)
    return structure.pack(self._out_structure, [None if leaf is None else next(outputs) for leaf in self._out_leaves])

  def __call__(self, *args, timeout: float | None = None):
    """Calls the remote function: its outputs as read-only numpy arrays, in the function's structure.

    `timeout` (seconds) overrides the client's default per-call deadline. A
    failure raises the errors.RpcError subclass of its status code."""
    code, message, outputs = self._call_eagerly(args, timeout)
    if code != 0:
      raise self._client.error(code, message)
    return self._pack(outputs)


def _not_listening(message: str) -> bool:
  return any(s in message.lower() for s in _NOT_LISTENING)


def certificate_problem(address: str, credentials: ChannelCredentials) -> str:
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


class Client:
  """Connects to a `seed.grpc.Server` and exposes one `Method` per bound function."""

  method_class = Method

  def __init__(
    self,
    address: str,
    *,
    timeout: float | None = None,
    connect_timeout: float = 60.0,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
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
      credentials: TLS and/or a token for a secured TCP server; default:
        plaintext. Fails fast (Unavailable, naming TLS) when one side uses TLS
        and the other does not, or the server's certificate is not trusted.
      streams: calls travel tagged on the channel's long-lived bidirectional
        streams (True) or each as a unary call of its own (False); None: the
        process default, streams unless SEED_RPC_STREAMS=0.
    """
    self.address = address
    self.timeout = timeout
    self.max_message_size = max_message_size
    self.credentials = credentials
    self.stream = -1 if streams is None else int(bool(streams))
    self.security = channel_attrs(credentials)
    self.channel = open_channel(address, max_message_size, self.security)
    names, signatures = self._list_methods(connect_timeout)
    self._methods = {}
    for name, sig in zip(names, signatures):
      name = name.decode()
      self._methods[name] = self.method_class(self, name, json.loads(sig))

  def error(self, code: int, message: str) -> Exception:
    """The exception a failed call raises (seed.grpc.Client: its tf.errors class)."""
    return errors.from_code(code, message)

  def _list_methods(self, connect_timeout: float) -> tuple[np.ndarray, np.ndarray]:
    """Polls until the server answers: a server not up yet is waited for, any other failure raised at once."""
    deadline = time.monotonic() + connect_timeout
    path = f"/seed/{METHOD_LIST}".encode()
    while True:
      left = deadline - time.monotonic()
      code, message, body = call(self.channel, path, wire.serialize([]), int(max(left, 0.01) * 1e6), self.stream)
      if code == 0:
        return tuple(wire.parse(body))
      if code == 14 and _not_listening(message) and left > 0:
        time.sleep(min(0.1, max(left, 0)))
        continue
      if code in (4, 14) and left <= 0:
        raise self.error(4, f"no tensor-RPC server answered at {self.address} within {connect_timeout}s ({message})")
      if code == 14 and "certificate verify failed" in message and self.credentials is not None:
        cause = certificate_problem(self.address, self.credentials)
        message += f": {cause}" if cause else ""
      raise self.error(code, f"{message} [connecting to {self.address}]")

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
