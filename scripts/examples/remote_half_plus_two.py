"""Seed 004's example: half_plus_two_with_rpop computes y = 0.5 * x + b, b coming from another served model
through the RemotePredict op (seed.serving.remote_predict), both models on one seed.serve.

    .venv/bin/python scripts/examples/remote_half_plus_two.py [--port 8500] [--rest_port 8501]

1. Exports `half_plus_two` (y = 0.5 * x + 2) and `half_plus_two_with_rpop`, whose graph calls
   half_plus_two on 2.0 through the op (target_address localhost:PORT, an attribute of the
   exported graph) and takes b from the first element of its output: y = 0.5 * x + 3.
2. Writes a ModelServerConfig listing both and starts one `python -m seed.serve
   --model_config_file ...` on PORT (gRPC) and REST_PORT: the served model calls the server
   that serves it.
3. `curl -d '{"instances": [1.0, 2.0, 5.0]}' localhost:REST_PORT/v1/models/half_plus_two_with_rpop:predict`
   must answer [3.5, 4.0, 5.5]; so must a gRPC Predict through tensorflow_serving's stub.
4. run_returning_status against a port nobody serves returns UNAVAILABLE, a model it does not
   know NOT_FOUND, with zeros instead of raising; run() raises.

Prints each step and "OK" at the end; exits non-zero if a check fails. Ports default to free ones.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
if REPO not in sys.path:
  sys.path.insert(0, REPO)

import numpy as np
import portpicker
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

import grpc
from seed.runtime import processes
from seed.serving import config as serving_config
from seed.serving import health, remote_predict

EXPECTED = [3.5, 4.0, 5.5]


class HalfPlusTwo(tf.Module):
  @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
  def serve(self, x):
    return {"y": 0.5 * x + 2.0}


class HalfPlusTwoWithRpop(tf.Module):
  """y = 0.5 * x + b, b = half_plus_two(2.0)[0] computed by the remote model."""

  def __init__(self, target_address: str, deadline_ms: int):
    super().__init__()
    self.target_address, self.deadline_ms = target_address, deadline_ms

  @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
  def serve(self, x):
    (b,) = remote_predict.run(
      input_tensor_alias=["x"],
      input_tensors=[tf.constant([2.0])],
      output_tensor_alias=["y"],
      target_address=self.target_address,
      model_name="half_plus_two",
      model_version=-1,
      max_rpc_deadline_millis=self.deadline_ms,
      output_types=[tf.float32],
      signature_name="serving_default",
    )
    return {"y": 0.5 * x + b[0]}


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
  parser.add_argument("--port", type=int, default=0, help="gRPC port (default: a free one)")
  parser.add_argument("--rest_port", type=int, default=0, help="REST port (default: a free one)")
  parser.add_argument("--deadline_ms", type=int, default=3000, help="max_rpc_deadline_millis of the op")
  args = parser.parse_args()
  port = args.port or portpicker.pick_unused_port()
  rest_port = args.rest_port or portpicker.pick_unused_port()
  tmp = tempfile.mkdtemp(prefix="remote-hp2-")
  proc = None
  failures = []

  def check(ok: bool, what: str) -> None:
    print(("ok: " if ok else "FAILED: ") + what, flush=True)
    if not ok:
      failures.append(what)

  try:
    hp2 = HalfPlusTwo()
    tf.saved_model.save(hp2, os.path.join(tmp, "half_plus_two", "1"), signatures={"serving_default": hp2.serve})
    rpop = HalfPlusTwoWithRpop(f"localhost:{port}", args.deadline_ms)
    tf.saved_model.save(
      rpop, os.path.join(tmp, "half_plus_two_with_rpop", "1"), signatures={"serving_default": rpop.serve}
    )
    config = os.path.join(tmp, "config_file.txt")
    with open(config, "w", encoding="utf-8") as f:
      models = ("half_plus_two", "half_plus_two_with_rpop")
      f.write(serving_config.config_text({m: os.path.join(tmp, m) for m in models}))
    print(f"exported both models under {tmp}; serving them on gRPC :{port}, REST :{rest_port}", flush=True)
    proc = subprocess.Popen(
      [sys.executable, "-m", "seed.serve", f"--model_config_file={config}", f"--port={port}",
       f"--rest_api_port={rest_port}", "--file_system_poll_wait_seconds=0"],
      env=dict(os.environ, PYTHONPATH=REPO), cwd=REPO, preexec_fn=processes.die_with_parent,
      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    health.wait_serving(f"127.0.0.1:{port}", 180.0, proc)

    url = f"localhost:{rest_port}/v1/models/half_plus_two_with_rpop:predict"
    body = '{"instances": [1.0, 2.0, 5.0]}'
    print(f"$ curl -d '{body}' {url}", flush=True)
    out = subprocess.run(["curl", "-s", "-d", body, url], capture_output=True, text=True, timeout=60, check=False)
    print(out.stdout.strip(), flush=True)
    try:
      predictions = json.loads(out.stdout)["predictions"]
    except (ValueError, KeyError):
      predictions = None
    check(predictions == EXPECTED, f"REST answers {EXPECTED}")

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
      request = predict_pb2.PredictRequest()
      request.model_spec.name = "half_plus_two_with_rpop"
      request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([1.0, 2.0, 5.0], np.float32)))
      y = tf.make_ndarray(prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, 60).outputs["y"])
    print(f"gRPC Predict: {y.tolist()}", flush=True)
    check(y.tolist() == EXPECTED, f"gRPC answers {EXPECTED}")

    x = tf.constant([1.0])
    nobody = f"localhost:{portpicker.pick_unused_port()}"
    for target, model, want in ((nobody, "half_plus_two", 14), (f"localhost:{port}", "nope", 5)):
      start = time.monotonic()
      code, message, (y,) = remote_predict.run_returning_status(
        ["x"], [x], ["y"], target, model, max_rpc_deadline_millis=args.deadline_ms, output_types=[tf.float32]
      )
      took = time.monotonic() - start
      print(f"run_returning_status({target}, {model}): code {int(code)} {message.numpy()!r}, y = {y.numpy()}")
      check(int(code) == want and float(y) == 0.0 and took < args.deadline_ms / 1000 + 5, f"status {want}, zeros")
    try:
      remote_predict.run(["x"], [x], ["y"], f"localhost:{port}", "nope", output_types=[tf.float32])
      check(False, "run() raises NotFoundError")
    except tf.errors.NotFoundError as e:
      check("Servable not found" in e.message, "run() raises NotFoundError")
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
