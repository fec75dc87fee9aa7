"""Fixtures for the seed.serving tests (`python -m seed.serve`): TF Serving's gRPC and REST APIs over SavedModels
built here.

Three `python -m seed.serve` processes: one with a model config file (several
models, version policies, labels, hot reload, REST, errors, V-trace CartPole
policies), one with --model_name and --enable_batching, and one serving the
first's models with --python_predict (the Python Predict path, to compare). Clients are the
real tensorflow_serving.apis stubs, grpc_health and urllib.

The models and the server processes are made once for all the files here. tests/serving/ has no
__init__.py, so pytest runs "package"-scoped fixtures as session-scoped ones: the servers are stopped
at the end of the test session.
"""

from __future__ import annotations

import os

import pytest

from tests.serving.serving_helpers import (
  LIMIT_BYTES,
  POLL_SECONDS,
  READ_TIMEOUT,
  BatchSize,
  Dtypes,
  Half,
  Multi,
  ServeProcess,
  export,
  make_serving_run,
  model_config_text,
  served_paths,
)

# --- fixtures -----------------------------------------------------------------------------------------


@pytest.fixture(scope="package")
def models(tmp_path_factory):
  root = tmp_path_factory.mktemp("serve")
  paths = {name: str(root / name) for name in ("half", "multi", "hot", "broken", "dtypes")}
  for v in (1, 2):
    export(Half(v), os.path.join(paths["half"], str(v)))
  export(Multi(), os.path.join(paths["multi"], "1"))
  export(Half(1), os.path.join(paths["hot"], "1"))
  export(Dtypes(), os.path.join(paths["dtypes"], "1"))
  os.makedirs(os.path.join(paths["broken"], "1"))
  with open(os.path.join(paths["broken"], "1", "saved_model.pb"), "wb") as f:
    f.write(b"this is not a SavedModel")
  export(BatchSize(), str(root / "batch" / "1"))
  cartpole = make_serving_run(str(root / "cartpole"))
  lstm = make_serving_run(str(root / "cartpole_lstm"), lstm_size=8)
  return dict(
    root=str(root),
    **paths,
    batch=str(root / "batch"),
    cartpole_run=cartpole,
    lstm_run=lstm,
    cartpole=os.path.join(cartpole, "export"),
    cartpole_lstm=os.path.join(lstm, "export"),
  )


@pytest.fixture(scope="package")
def servers(models):
  """The server processes, started together (their TensorFlow imports overlap)."""
  config = os.path.join(models["root"], "models.config")
  with open(config, "w", encoding="utf-8") as f:
    f.write(model_config_text(served_paths(models)))
  procs = {}
  try:
    procs["main"] = ServeProcess(
      [f"--model_config_file={config}", f"--file_system_poll_wait_seconds={POLL_SECONDS}"],
      os.path.join(models["root"], "server.log"),
    )
    procs["batch"] = ServeProcess(
      [
        "--model_name=batch",
        f"--model_base_path={models['batch']}",
        "--enable_batching",
        "--max_batch_size=4",
        "--batch_timeout_micros=300000",
        "--file_system_poll_wait_seconds=0",
        f"--max_request_bytes={LIMIT_BYTES}",
        f"--rest_read_timeout={READ_TIMEOUT}",
      ],
      os.path.join(models["root"], "batch_server.log"),
    )
    procs["python"] = ServeProcess(  # the same models, Predict answered by the Python servicer
      [f"--model_config_file={config}", "--file_system_poll_wait_seconds=0", "--python_predict"],
      os.path.join(models["root"], "python_server.log"),
      rest=False,
    )
    for proc in procs.values():
      proc.wait_ready()
    yield procs
  finally:
    for proc in procs.values():
      proc.stop()


@pytest.fixture(scope="package")
def server(servers):
  return servers["main"]


@pytest.fixture(scope="package")
def batch_server(servers):
  return servers["batch"]


@pytest.fixture(scope="package")
def python_server(servers):
  return servers["python"]
