"""Waiting for a seed.serve to answer: the gRPC health service reports SERVING once its models are loaded."""

from __future__ import annotations

import subprocess
import time

from grpc_health.v1 import health_pb2, health_pb2_grpc

import grpc


def wait_serving(
  address: str, timeout: float, proc: subprocess.Popen | None = None, log_path: str | None = None
) -> None:
  """Returns once the server at `address` (host:port) reports SERVING; RuntimeError if `proc` (the server's
  process, when we started it) exits first or `timeout` seconds pass, with the tail of `log_path` if given."""

  def fail(what: str):
    tail = ""
    if log_path is not None:
      with open(log_path, encoding="utf-8", errors="replace") as f:
        tail = ":\n" + f.read()[-3000:]
    return RuntimeError(what + tail)

  with grpc.insecure_channel(address) as channel:
    stub = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
      if proc is not None and proc.poll() is not None:
        raise fail(f"seed.serve exited with status {proc.returncode}")
      try:
        if stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == health_pb2.HealthCheckResponse.SERVING:
          return
      except grpc.RpcError:
        time.sleep(0.2)
  raise fail(f"seed.serve at {address} not serving after {timeout}s")
