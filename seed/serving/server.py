"""ModelServer: the core wired to the gRPC and REST front ends, the health service,
the version watcher thread and the optional tensor-RPC binding.
"""

from __future__ import annotations

import re
import threading
from concurrent import futures

import tensorflow as tf
from absl import logging
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

import grpc
from seed.serving import rest_api
from seed.serving.batching import Batcher
from seed.serving.config import ModelConfig
from seed.serving.core import Core
from seed.serving.grpc_api import MODEL_SERVICE, PREDICT_SERVICE, ModelServicer, PredictionServicer
from seed.serving.models import DEFAULT_SIGNATURE, ModelManager, Servable, Signature

MAX_MESSAGE_SIZE = 256 << 20  # largest gRPC response
MAX_REQUEST_BYTES = 64 << 20  # largest REST body or gRPC request, unless --max_request_bytes says otherwise
REST_READ_TIMEOUT = 30.0  # seconds a REST connection may take to send a request, or sit idle between two


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
    max_request_bytes: int = MAX_REQUEST_BYTES,
    rest_read_timeout: float = REST_READ_TIMEOUT,
  ):
    self.manager = ModelManager(configs)
    batcher = Batcher(max_batch_size, batch_timeout_micros / 1e6) if enable_batching else None
    self.core = Core(self.manager, batcher)
    self._host = host
    self._poll_wait = poll_wait_seconds
    self._stop = threading.Event()
    self._watcher: threading.Thread | None = None
    options = [
      ("grpc.max_receive_message_length", max_request_bytes),
      ("grpc.max_send_message_length", MAX_MESSAGE_SIZE),
      ("grpc.so_reuseport", 0),
    ]
    self._grpc = grpc.server(
      futures.ThreadPoolExecutor(max_workers=grpc_max_threads, thread_name_prefix="grpc"), options=options
    )
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionServicer(self.core), self._grpc)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(self.core), self._grpc)
    self.health = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(self.health, self._grpc)
    try:
      self.port = self._grpc.add_insecure_port(join_host_port(host, port))
    except RuntimeError:
      self.port = 0
    if self.port == 0:
      raise OSError(f"cannot listen for gRPC on {join_host_port(host, port)}")
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
      server.bind(tensor_rpc_function(sig), name=servable.model, batched=False)
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


def join_host_port(host: str, port: int) -> str:
  return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
