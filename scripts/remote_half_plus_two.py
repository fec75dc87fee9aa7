"""Seed 004's remote-predict example: half_plus_two calls a served model from inside its graph.

    .venv/bin/python scripts/remote_half_plus_two.py [--deadline 2.0] [--address unix:/path|localhost:PORT]

1. Exports a model "b" whose serving_default returns b = x * 0 + 2.
2. Serves it in another process: `python -m seed.serve --model_name b ...
   --tensor_rpc_address ADDR`, which binds the model as the tensor-RPC method `b`.
3. Here, defines the tf.function half_plus_two(x) = 0.5 * x + b, where b comes
   from `grpc.Client(ADDR).b.with_status(x, timeout=deadline)`: a TF op in the
   graph (the role of TF Serving's RemotePredict op), returning
   (y, status_code, message) instead of raising.
4. Exports half_plus_two as a SavedModel, reloads it and calls it again (a
   process loading it needs SEED's op library loaded first: importing
   seed.grpc and creating any Client does that).
5. Stops the remote server: the reloaded model then returns a non-OK status
   (y falls back to 0.5 * x) rather than an exception.

Prints one line per step and "OK" at the end; exits non-zero if a check fails.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import portpicker
import tensorflow as tf

from seed import grpc
from seed.runtime import processes

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STATUS_NAMES = {0: "OK", 4: "DEADLINE_EXCEEDED", 14: "UNAVAILABLE", 1: "CANCELLED", 2: "UNKNOWN"}


class RemoteB(tf.Module):
  """The remote model: b = 2 for every element of x."""

  @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
  def serve(self, x):
    return {"b": x * 0.0 + 2.0}


def export_remote_model(base_path: str) -> None:
  model = RemoteB()
  tf.saved_model.save(model, os.path.join(base_path, "1"), signatures={"serving_default": model.serve})


def start_server(base_path: str, address: str) -> subprocess.Popen:
  argv = [
    sys.executable,
    "-m",
    "seed.serve",
    "--model_name=b",
    f"--model_base_path={base_path}",
    f"--port={portpicker.pick_unused_port()}",
    "--rest_api_port=0",
    "--file_system_poll_wait_seconds=0",
    f"--tensor_rpc_address={address}",
  ]
  env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
  return subprocess.Popen(argv, env=env, cwd=REPO, preexec_fn=processes.die_with_parent, stdout=subprocess.DEVNULL)


def connect(address: str, proc: subprocess.Popen, timeout: float = 180.0) -> grpc.Client:
  """A client once the server answers (fails fast if the server process died)."""
  deadline = time.monotonic() + timeout
  while True:
    if proc.poll() is not None:
      raise RuntimeError(f"seed.serve exited with status {proc.returncode} before serving")
    try:
      return grpc.Client(address, connect_timeout=1.0)
    except tf.errors.DeadlineExceededError:
      if time.monotonic() > deadline:
        raise


class HalfPlusTwo(tf.Module):
  """y = 0.5 * x + b, with b from the remote model "b"."""

  def __init__(self, client: grpc.Client, deadline: float):
    super().__init__()
    remote_b = client.b  # a tensor-RPC method; inside the tf.function it is an op of the graph

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def half_plus_two(x):
      code, message, outputs = remote_b.with_status(x, timeout=deadline)
      # On failure the op returns zeros of the declared shape ([0] here): fall back to b = 0.
      b = tf.cond(tf.equal(code, 0), lambda: outputs["b"], lambda: tf.zeros_like(x))
      return {"y": 0.5 * x + b, "status_code": code, "message": message}

    self.half_plus_two = half_plus_two


def show(label: str, x: np.ndarray, result: dict) -> tuple[list[float], int, str]:
  y = result["y"].numpy().tolist()
  code = int(result["status_code"].numpy())
  message = result["message"].numpy().decode(errors="replace")
  print(
    f"{label}: half_plus_two({x.tolist()}) = {y}  status {code} ({STATUS_NAMES.get(code, code)})"
    + (f" message {message!r}" if message else ""),
    flush=True,
  )
  return y, code, message


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
  parser.add_argument("--deadline", type=float, default=2.0, help="seconds the remote call may take")
  parser.add_argument(
    "--address",
    default=None,
    help="tensor-RPC address for the remote model (default: a unix socket in a private temp dir)",
  )
  args = parser.parse_args()

  tmp = tempfile.mkdtemp(prefix="remote-hp2-")  # 0700: only we reach the socket
  address = args.address or f"unix:{os.path.join(tmp, 'b.sock')}"
  proc = None
  failures = []

  def check(ok: bool, what: str) -> None:
    if not ok:
      failures.append(what)
      print(f"FAILED: {what}", flush=True)

  try:
    export_remote_model(os.path.join(tmp, "b"))
    proc = start_server(os.path.join(tmp, "b"), address)
    client = connect(address, proc)
    print(
      f"remote model b served by seed.serve (pid {proc.pid}) at {address}; methods {sorted(client.methods)}", flush=True
    )

    module = HalfPlusTwo(client, args.deadline)
    x = np.array([1.0, 2.0, 5.0], np.float32)
    expected = (0.5 * x + 2.0).tolist()
    y, code, _ = show("in this process", x, module.half_plus_two(tf.constant(x)))
    check(code == 0 and y == expected, f"direct call: expected {expected} with status 0")

    export_dir = os.path.join(tmp, "half_plus_two", "1")
    tf.saved_model.save(module, export_dir, signatures={"serving_default": module.half_plus_two})
    reloaded = tf.saved_model.load(export_dir)
    print(f"exported and reloaded {export_dir}", flush=True)
    y, code, _ = show("reloaded SavedModel", x, reloaded.half_plus_two(tf.constant(x)))
    check(code == 0 and y == expected, f"reloaded call: expected {expected} with status 0")
    y, code, _ = show("reloaded serving_default", x, reloaded.signatures["serving_default"](x=tf.constant(x)))
    check(code == 0 and y == expected, f"reloaded signature: expected {expected} with status 0")

    processes.stop(proc, 30)
    print("remote server stopped", flush=True)
    start = time.monotonic()
    y, code, message = show("remote server gone", x, reloaded.half_plus_two(tf.constant(x)))
    elapsed = time.monotonic() - start
    check(code != 0 and y == (0.5 * x).tolist(), "after the server is gone: expected a non-OK status and y = 0.5 x")
    check(elapsed < args.deadline + 5, f"the failed call took {elapsed:.1f}s, longer than its deadline")
  finally:
    if proc is not None:
      processes.stop(proc, 30)
    shutil.rmtree(tmp, ignore_errors=True)
  if failures:
    return 1
  print("OK", flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
