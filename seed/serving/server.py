"""ModelServer: the core wired to the gRPC and REST front ends, the health service,
the version watcher thread and the optional tensor-RPC binding.

The gRPC port is the C++ front end (native.py): Predict and GetModelMetadata run
there without Python, Health is gRPC's own, and the rest (ModelService) is
forwarded to the grpcio servicers here, which listen on a unix socket in a
private directory.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from concurrent import futures

import tensorflow as tf
from absl import logging
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

import grpc
from seed.serving import rest_api
from seed.serving.batching import Batcher
from seed.serving.config import ModelConfig
from seed.serving.core import Core
from seed.serving.grpc_api import ModelServicer, PredictionServicer
from seed.serving.models import DEFAULT_SIGNATURE, ModelManager, Servable
from seed.serving.native import NativeFront
from seed.serving.positional import positional_function

MAX_MESSAGE_SIZE = 256 << 20  # largest gRPC response
MAX_REQUEST_BYTES = 64 << 20  # largest REST body or gRPC request, unless --max_request_bytes says otherwise
REST_READ_TIMEOUT = 30.0  # seconds a REST connection may take to send a request, or sit idle between two


class ModelServer:
  """The gRPC and REST front ends, the version watcher and the optional tensor-RPC server."""

  def __init__(
    self,
    configs: list[ModelConfig],
    *,
    host: str = "127.0.0.1",
    port: int = 8500,
    rest_api_port: int = 8501,
    poll_wait_seconds: float = 2.0,
    enable_batching: bool = False,
    max_batch_size: int = 32,
    batch_timeout_micros: int = 1000,
    grpc_max_threads: int = 64,
    tensor_rpc_address: str | None = None,
    cpp_predict: bool = True,
    max_request_bytes: int = MAX_REQUEST_BYTES,
    rest_read_timeout: float = REST_READ_TIMEOUT,
  ):
    self._host = host
    self._poll_wait = poll_wait_seconds
    self._stop = threading.Event()
    self._watcher: threading.Thread | None = None
    self._private_dir = tempfile.mkdtemp(prefix="seed-serve-")  # 0700: only we reach the servicers' socket
    forward = f"unix:{os.path.join(self._private_dir, 'servicers.sock')}"
    options = [
      ("grpc.max_receive_message_length", max(max_request_bytes, MAX_MESSAGE_SIZE)),
      ("grpc.max_send_message_length", MAX_MESSAGE_SIZE),
    ]
    self._grpc = grpc.server(
      futures.ThreadPoolExecutor(max_workers=grpc_max_threads, thread_name_prefix="grpc"), options=options
    )
    self._native = NativeFront(
      join_host_port(host, port),
      forward,
      max_request_bytes=max_request_bytes,
      max_response_bytes=MAX_MESSAGE_SIZE,
      cpp_predict=cpp_predict,
      enable_batching=enable_batching,
      max_batch_size=max_batch_size,
      batch_timeout_micros=batch_timeout_micros,
    )
    try:
      self.manager = ModelManager(configs, listener=self._native)
      batcher = Batcher(max_batch_size, batch_timeout_micros / 1e6) if enable_batching else None
      self.core = Core(self.manager, batcher)
      self.core.counters.add_source(self._native.counters)
      if not cpp_predict:
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionServicer(self.core), self._grpc)
      model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(self.core), self._grpc)
      if self._grpc.add_insecure_port(forward) == 0:
        raise OSError(f"cannot listen on {forward}")
      self._grpc.start()
      try:
        self.port = self._native.start()
      except tf.errors.OpError as e:
        raise OSError(f"cannot listen for gRPC on {join_host_port(host, port)}: {e.message}") from None
      self._native.set_serving(False)  # until start()
    except BaseException:
      self._close_grpc()
      raise
    self._http = None
    self.rest_api_port = 0
    if rest_api_port:
      self._http = rest_api.make_server(self.core, host, rest_api_port, max_request_bytes, rest_read_timeout)
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
      server.bind(positional_function(sig)[0], name=servable.model, batched=False)
      self._rpc_models.append(servable)  # keeps the version (its variables) alive while bound
      logging.info(
        "tensor RPC: model %s version %d bound as method %r", servable.model, servable.version, servable.model
      )
    if not self._rpc_models:
      logging.warning("tensor RPC: no model loaded at startup; not serving %s", address)
      return
    server.start()
    self._rpc = server

  @property
  def serves_tensor_rpc(self) -> bool:
    return self._rpc is not None

  def start(self) -> None:
    if self._http is not None:
      threading.Thread(target=self._http.serve_forever, name="rest", daemon=True).start()
    self._native.set_serving(True)
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
    self._native.set_serving(False)
    if self._http is not None:
      self._http.shutdown()
      self._http.server_close()
    if self._watcher is not None:
      self._watcher.join(timeout=30)
    self._close_grpc(grace)
    if self._rpc is not None:
      self._rpc.shutdown()

  def _close_grpc(self, grace: float = 0.0) -> None:
    self._native.shutdown()  # answers every call first: forwarded ones need the servicers below
    self._grpc.stop(grace).wait()
    shutil.rmtree(self._private_dir, ignore_errors=True)


def join_host_port(host: str, port: int) -> str:
  return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
