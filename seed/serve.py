"""Serves exported policies (SavedModels) with TF Serving's gRPC and REST APIs.

    python -m seed.serve --model_name pong --model_base_path runs/pong/export \\
        --port 8500 --rest_api_port 8501
    python -m seed.serve --model_config_file models.config [--enable_batching]

The manual (config files, versions, REST formats, batching, errors, recurrent
policies, tensor-RPC binding) is docs/serving.md.
"""

from __future__ import annotations

import gc
import os
import re
import signal
import sys
import threading
from concurrent import futures

import grpc
import tensorflow as tf
from absl import app
from absl import flags
from absl import logging
from grpc_health.v1 import health
from grpc_health.v1 import health_pb2
from grpc_health.v1 import health_pb2_grpc
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import prediction_service_pb2_grpc

from seed.serving import rest_api
from seed.serving.batching import Batcher
from seed.serving.config import ModelConfig, parse_config_text
from seed.serving.core import Core
from seed.serving.errors import ServingError
from seed.serving.grpc_api import MODEL_SERVICE, PREDICT_SERVICE, ModelServicer, PredictionServicer
from seed.serving.models import DEFAULT_SIGNATURE, ModelManager, Servable, Signature, State as _State
from seed.serving.models import scan_versions  # noqa: F401  (tests use serve.scan_versions)

MAX_MESSAGE_SIZE = 256 << 20


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
      self._http = rest_api.make_server(self.core, host, rest_api_port)
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
