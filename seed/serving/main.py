"""`python -m seed.serve` (or `python -m seed.serving`): flags -> a running ModelServer."""

from __future__ import annotations

import gc
import os
import signal
import sys
import threading

from absl import app, flags, logging

from seed.serving.config import ModelConfig, parse_config_text
from seed.serving.errors import ServingError
from seed.serving.models import State
from seed.serving.server import MAX_REQUEST_BYTES, REST_READ_TIMEOUT, ModelServer, join_host_port

_MODEL_NAME = flags.DEFINE_string("model_name", "default", "Name of the model (with --model_base_path).")
_MODEL_BASE_PATH = flags.DEFINE_string(
  "model_base_path", None, "Folder of numbered SavedModel versions (e.g. <logdir>/export)."
)
_MODEL_CONFIG_FILE = flags.DEFINE_string(
  "model_config_file", None, "TF Serving ModelServerConfig text proto listing the models."
)
_HOST = flags.DEFINE_string("host", "127.0.0.1", "Address to listen on (0.0.0.0 for every interface).")
_PORT = flags.DEFINE_integer("port", 8500, "gRPC port (0 picks a free one; see the log).")
_REST_API_PORT = flags.DEFINE_integer("rest_api_port", 8501, "REST port; 0 turns the REST API off.")
_POLL = flags.DEFINE_float(
  "file_system_poll_wait_seconds",
  2.0,
  "Seconds between scans of the base paths for new versions; 0 = load once at startup.",
)
_ENABLE_BATCHING = flags.DEFINE_bool("enable_batching", False, "Batch concurrent Predict calls.")
_MAX_BATCH_SIZE = flags.DEFINE_integer("max_batch_size", 32, "Rows per batch (with --enable_batching).")
_BATCH_TIMEOUT = flags.DEFINE_integer(
  "batch_timeout_micros", 1000, "Longest wait for a batch to fill (with --enable_batching)."
)
_GRPC_MAX_THREADS = flags.DEFINE_integer("grpc_max_threads", 64, "Threads handling gRPC calls.")
_MAX_REQUEST_BYTES = flags.DEFINE_integer(
  "max_request_bytes",
  MAX_REQUEST_BYTES,
  "Largest request accepted: a REST body (larger: HTTP 413, decided from Content-Length before reading it) "
  "or a gRPC message (larger: RESOURCE_EXHAUSTED).",
)
_REST_READ_TIMEOUT = flags.DEFINE_float(
  "rest_read_timeout",
  REST_READ_TIMEOUT,
  "Seconds a REST client may take to send its request, or leave its connection idle; then it is closed.",
)
_PYTHON_PREDICT = flags.DEFINE_bool(
  "python_predict",
  False,
  "Answer gRPC Predict and GetModelMetadata with the Python (grpcio) servicer instead of the C++ one: "
  "the earlier path, kept for comparison (scripts/bench/bench_serving.py).",
)
_TENSOR_RPC_ADDRESS = flags.DEFINE_string(
  "tensor_rpc_address",
  None,
  "Also bind each model's serving_default as a seed.grpc tensor-RPC method here (unix:/path or host:port).",
)


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
  if _MAX_REQUEST_BYTES.value < 1 or _REST_READ_TIMEOUT.value <= 0:
    raise app.UsageError("--max_request_bytes must be >= 1 and --rest_read_timeout > 0")
  configs = _configs_from_flags()
  for c in configs:
    if not os.path.isdir(c.base_path):
      logging.warning("model %s: base path %s does not exist (yet)", c.name, c.base_path)
  stop = threading.Event()
  for s in (signal.SIGINT, signal.SIGTERM):
    signal.signal(s, lambda *_: stop.set())
  try:
    server = ModelServer(
      configs,
      host=_HOST.value,
      port=_PORT.value,
      rest_api_port=_REST_API_PORT.value,
      poll_wait_seconds=_POLL.value,
      enable_batching=_ENABLE_BATCHING.value,
      max_batch_size=_MAX_BATCH_SIZE.value,
      batch_timeout_micros=_BATCH_TIMEOUT.value,
      grpc_max_threads=_GRPC_MAX_THREADS.value,
      tensor_rpc_address=_TENSOR_RPC_ADDRESS.value,
      cpp_predict=not _PYTHON_PREDICT.value,
      max_request_bytes=_MAX_REQUEST_BYTES.value,
      rest_read_timeout=_REST_READ_TIMEOUT.value,
    )
  except OSError as e:
    print(f"error: {e}", file=sys.stderr, flush=True)
    return 1
  server.start()
  # TensorFlow leaves millions of long-lived objects: keep them out of the cyclic GC's full collections, which
  # JSON requests (thousands of lists each) would otherwise trigger every few requests, stalling them all.
  gc.freeze()
  for c in configs:
    try:
      versions = [v for v, state, _, _ in server.manager.status(c.name) if state == State.AVAILABLE]
    except ServingError:
      versions = []
    logging.info("model %s: serving versions %s from %s", c.name, versions, c.base_path)
  rest = f", REST on {join_host_port(_HOST.value, server.rest_api_port)}" if server.rest_api_port else ""
  print(
    f"seed.serve: gRPC on {join_host_port(_HOST.value, server.port)}{rest}"
    + (f", tensor RPC on {_TENSOR_RPC_ADDRESS.value}" if server.serves_tensor_rpc else ""),
    flush=True,
  )
  while not stop.wait(0.5):
    pass
  logging.info("stopping")
  server.stop()
  return 0


def run() -> None:
  """app.run(main), with this module's flags shown by --help as the entry module's own."""
  for flag in flags.FLAGS.get_flags_for_module(__name__):
    flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)  # absl's --help lists sys.argv[0]'s key flags
  app.run(main)


if __name__ == "__main__":
  run()
