#!/usr/bin/env python3
"""The seeds' serving workloads: seed 003 (MNIST-sized Predict, one sequential client: latency) and seed 002
(16 threads x 100 requests of (50..300, 1025) float32 -> (60,): total time), each over the C++ gRPC path, the
Python gRPC path (`--python_predict`, what served gRPC before) and REST, side by side.

    .venv/bin/python scripts/bench/bench_serving_seeds.py                   # seed 003 for 10 s each, seed 002 in full
    .venv/bin/python scripts/bench/bench_serving_seeds.py --seed002_requests 20 --seed003_seconds 3   # quicker

Two `python -m seed.serve` processes serve the same two models (one with --python_predict, REST off); they
take turns, never measured at once. Clients are this process, as a user's would be: gRPC through
tensorflow_serving's PredictionServiceStub with tf.make_tensor_proto / tf.make_ndarray, REST through
http.client keep-alive connections with json (seed 003: row format {"instances": [image]}; seed 002:
columnar {"inputs": x}, the output having no batch dimension). Every answer is checked against the model
computed here. One more row measures the same server with a C++ client (our remote_predict op, run
eagerly), to separate the server's time from the Python client's. Targets (issue 27): seed 003 gRPC p50
<= REST p50 / 6; seed 002 REST time / gRPC time >= 20. The machine is small and shared: read the ratios,
measured in one run, not the absolute times.
"""

from __future__ import annotations

import argparse
import gc
import http.client
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path[:0] = [REPO, os.path.join(REPO, "scripts", "bench")]

import numpy as np
import portpicker
import tensorflow as tf
from bench_serving import start_server, wait_ready
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

import grpc
from seed.runtime import processes
from seed.serving import config as serving_config
from seed.serving import remote_predict


class Mnist(tf.Module):
  """Seed 003's model size: a 784 -> 128 -> 10 MLP on a flattened 28x28 image."""

  def __init__(self):
    super().__init__()
    rng = np.random.default_rng(3)
    self.w1 = tf.Variable(rng.normal(0, 0.05, [784, 128]).astype(np.float32))
    self.w2 = tf.Variable(rng.normal(0, 0.05, [128, 10]).astype(np.float32))

  @tf.function(input_signature=[tf.TensorSpec([None, 784], tf.float32, name="images")])
  def serve(self, images):
    return {"scores": tf.nn.softmax(tf.nn.relu(images @ self.w1) @ self.w2)}


class Seed002(tf.Module):
  """Seed 002's shapes: (n, 1025) float32 in, (60,) out."""

  def __init__(self):
    super().__init__()
    self.w = tf.Variable(np.random.default_rng(2).normal(0, 0.03, [1025, 60]).astype(np.float32))

  @tf.function(input_signature=[tf.TensorSpec([None, 1025], tf.float32, name="x")])
  def serve(self, x):
    return {"y": tf.reduce_mean(tf.tanh(x @ self.w), axis=0)}


def export(module: tf.Module, base: str) -> None:
  tf.saved_model.save(module, os.path.join(base, "1"), signatures={"serving_default": module.serve})


class Grpc:
  def __init__(self, port: int):
    self.channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", 64 << 20)])
    self.stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)

  def __call__(self, model: str, name: str, x: np.ndarray, out: str) -> np.ndarray:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.inputs[name].CopyFrom(tf.make_tensor_proto(x))
    return tf.make_ndarray(self.stub.Predict(request, timeout=120).outputs[out])

  def close(self) -> None:
    self.channel.close()


class RemotePredict:
  """A C++ client: our remote_predict op run eagerly (the kernel, and its channel, are cached across calls)."""

  def __init__(self, port: int):
    self.address = f"127.0.0.1:{port}"

  def __call__(self, model: str, name: str, x: np.ndarray, out: str) -> np.ndarray:
    deadline_ms, types = 120_000, [tf.float32]
    (y,) = remote_predict.run([name], [x], [out], self.address, model, -1, deadline_ms, types)
    return y.numpy()

  def close(self) -> None:
    pass


class Rest:
  def __init__(self, port: int):
    self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

  def __call__(self, model: str, name: str, x: np.ndarray, out: str) -> np.ndarray:
    columnar = model == "seed002"
    body = json.dumps({"inputs": x.tolist()} if columnar else {"instances": x.tolist()})
    self.connection.request("POST", f"/v1/models/{model}:predict", body, {"Content-Type": "application/json"})
    response = self.connection.getresponse()
    data = response.read()
    if response.status != 200:
      raise RuntimeError(f"REST {response.status}: {data[:200]!r}")
    answer = json.loads(data)
    return np.array(answer["outputs"] if columnar else answer["predictions"], np.float32)

  def close(self) -> None:
    self.connection.close()


def seed003(client, images: np.ndarray, want: np.ndarray, seconds: float) -> dict:
  """One client, one image per request, sequential: latency percentiles in ms."""
  for i in range(20):  # warm-up (connection, first runs)
    client("mnist", "images", images[i : i + 1], "scores")
  latencies, i, end = [], 0, time.perf_counter() + seconds
  while time.perf_counter() < end:
    k = i % len(images)
    t0 = time.perf_counter()
    scores = client("mnist", "images", images[k : k + 1], "scores")
    latencies.append(time.perf_counter() - t0)
    np.testing.assert_allclose(scores, want[k : k + 1], rtol=1e-4, atol=1e-6)
    i += 1
  lat = np.array(latencies) * 1e3
  return {"n": len(lat), "p50": float(np.percentile(lat, 50)), "p99": float(np.percentile(lat, 99))}


def seed002(make_client, inputs: list[np.ndarray], want: list[np.ndarray], threads: int) -> dict:
  """`threads` clients, each sending its share of `inputs` in turn: total seconds."""
  clients = [make_client() for _ in range(threads)]
  clients[0]("seed002", "x", inputs[0], "y")  # warm-up
  errors: list[str] = []

  def run(t: int) -> None:
    try:
      for k in range(t, len(inputs), threads):
        y = clients[t]("seed002", "x", inputs[k], "y")
        np.testing.assert_allclose(y, want[k], rtol=1e-4, atol=1e-5)
    except Exception as e:  # pylint: disable=broad-except
      errors.append(repr(e))

  workers = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
  t0 = time.perf_counter()
  for w in workers:
    w.start()
  for w in workers:
    w.join()
  seconds = time.perf_counter() - t0
  for c in clients:
    c.close()
  if errors:
    raise RuntimeError(f"{len(errors)} clients failed, e.g. {errors[0]}")
  return {"seconds": seconds, "requests_per_s": len(inputs) / seconds}


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
  parser.add_argument("--seed003_seconds", type=float, default=10.0, help="measured seconds per path")
  parser.add_argument("--seed002_requests", type=int, default=1600, help="requests in all (the seed: 1,600)")
  parser.add_argument("--seed002_threads", type=int, default=16)
  args = parser.parse_args()
  tmp = tempfile.mkdtemp(prefix="bench-seeds-")
  procs = []
  try:
    mnist, s2 = Mnist(), Seed002()
    export(mnist, os.path.join(tmp, "mnist"))
    export(s2, os.path.join(tmp, "seed002"))
    config = os.path.join(tmp, "models.config")
    with open(config, "w", encoding="utf-8") as f:
      f.write(serving_config.config_text({m: os.path.join(tmp, m) for m in ("mnist", "seed002")}))
    ports = {k: portpicker.pick_unused_port() for k in ("cpp", "python", "rest")}
    procs.append(start_server(config, ports["cpp"], ports["rest"], [], os.path.join(tmp, "cpp.log")))
    procs.append(start_server(config, ports["python"], 0, ["--python_predict"], os.path.join(tmp, "python.log")))
    wait_ready(procs[0], ports["cpp"], os.path.join(tmp, "cpp.log"))
    wait_ready(procs[1], ports["python"], os.path.join(tmp, "python.log"))
    gc.freeze()
    print(
      f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}"
    )
    paths = {
      "gRPC (C++)": lambda: Grpc(ports["cpp"]),
      "gRPC (C++), C++ client (remote_predict, eager)": lambda: RemotePredict(ports["cpp"]),
      "gRPC (Python, --python_predict)": lambda: Grpc(ports["python"]),
      "REST": lambda: Rest(ports["rest"]),
    }

    rng = np.random.default_rng(0)
    images = rng.random([256, 784], dtype=np.float32)
    want = mnist.serve(images)["scores"].numpy()
    print(f"\nseed 003: one client, one 28x28 image per Predict, sequential, {args.seed003_seconds:g} s per path")
    print("| path | requests | p50 ms | p99 ms | REST p50 / this p50 |")
    print("|---|---|---|---|---|")
    s3 = {name: seed003(make(), images, want, args.seed003_seconds) for name, make in paths.items()}
    for name, r in s3.items():
      print(f"| {name} | {r['n']:,} | {r['p50']:.3f} | {r['p99']:.3f} | **{s3['REST']['p50'] / r['p50']:.1f}x** |")

    sizes = rng.integers(50, 301, args.seed002_requests)
    inputs = [rng.normal(size=[n, 1025]).astype(np.float32) for n in sizes]
    wants = [s2.serve(x)["y"].numpy() for x in inputs]
    print(
      f"\nseed 002: {args.seed002_threads} threads, {args.seed002_requests} requests of (n, 1025) float32, "
      f"n in 50..300 (mean {sizes.mean():.0f})"
    )
    print("| path | seconds | requests/s | REST seconds / these |")
    print("|---|---|---|---|")
    s2r = {name: seed002(make, inputs, wants, args.seed002_threads) for name, make in paths.items()}
    for name, r in s2r.items():
      print(
        f"| {name} | {r['seconds']:.2f} | {r['requests_per_s']:.1f} "
        f"| **{s2r['REST']['seconds'] / r['seconds']:.1f}x** |"
      )
    ok3 = s3["REST"]["p50"] / s3["gRPC (C++)"]["p50"] >= 6
    ok2 = s2r["REST"]["seconds"] / s2r["gRPC (C++)"]["seconds"] >= 20
    print(f"\ntargets: seed 003 >= 6x: {'met' if ok3 else 'MISSED'}; seed 002 >= 20x: {'met' if ok2 else 'MISSED'}")
    return 0
  finally:
    for p in procs:
      processes.stop(p, 30)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
  sys.exit(main())
