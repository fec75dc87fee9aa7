"""Tensor RPC across processes and gRPC stacks: import orders, raw grpcio
clients, dead clients, interpreter exit."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import tensorflow as tf

import grpc as grpcio
from seed import grpc
from tests.helpers import REPO, run_parallel, run_python, run_pythons

SERVE_AND_CALL = """
import tensorflow as tf
from seed import grpc as seed_grpc
@tf.function(input_signature=[tf.TensorSpec([], tf.int32)])
def inc(x):
  return x + 1
server = seed_grpc.Server(['unix:{sock}'])
server.bind(inc)
server.start()
client = seed_grpc.Client('unix:{sock}')
assert client.inc(41).numpy() == 42
"""


@pytest.mark.parametrize("order", ["grpcio_first", "grpcio_after"])
def test_coexists_with_python_grpcio_and_tf_grpc(sock_dir, order):
  """Our static gRPC, Python grpcio and TF's own gRPC (tf.data service) in one process."""
  code = SERVE_AND_CALL.format(sock=f"{sock_dir}/a.sock")
  grpcio_part = textwrap.dedent(f"""
      import grpc as grpcio
      channel = grpcio.insecure_channel('unix:{sock_dir}/a.sock')
      """)
  grpcio_use = textwrap.dedent("""
      try:
        channel.unary_unary('/seed/inc')(b'garbage', timeout=10)
        raise SystemExit('garbage accepted')
      except grpcio.RpcError as e:
        assert e.code() == grpcio.StatusCode.INVALID_ARGUMENT, e
      """)
  tf_data = textwrap.dedent("""
      dispatcher = tf.data.experimental.service.DispatchServer()
      worker = tf.data.experimental.service.WorkerServer(
          tf.data.experimental.service.WorkerConfig(dispatcher_address=dispatcher.target.split('://')[1]))
      ds = tf.data.Dataset.range(20).apply(tf.data.experimental.service.distribute(
          processing_mode='parallel_epochs', service=dispatcher.target))
      assert sorted(int(x) for x in ds) == list(range(20))
      assert client.inc(1).numpy() == 2
      print('OK')
      """)
  if order == "grpcio_first":
    script = grpcio_part + code + grpcio_use + tf_data
  else:
    script = code + grpcio_part + grpcio_use + tf_data
  result = run_python(script, timeout=180)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "OK" in result.stdout


def test_interpreter_exits_cleanly_with_live_server_and_calls(sock_dir):
  codes = [SERVE_AND_CALL.format(sock=f"{sock_dir}/b{i}.sock") + "print('OK')\n" for i in range(3)]  # no shutdown
  for result in run_pythons(codes, timeout=60):
    assert result.returncode == 0, result.stderr[-3000:]
    assert "OK" in result.stdout


def test_bound_functions_outlive_tensorflow_clearing_its_caches(sock_dir):
  """tf.random.set_seed and tf_keras's clear_session clear TensorFlow's eager kernel cache; a server bound
  before (a method with a variable and a graph constant, and a batched one) keeps answering."""
  code = textwrap.dedent("""
      import gc
      import tensorflow as tf
      from tensorflow.python.eager import context
      from seed import grpc
      v = tf.Variable(tf.ones([64, 64]))
      @tf.function(input_signature=[tf.TensorSpec([64], tf.float32)])
      def matvec(x):
        return tf.linalg.matvec(v + tf.constant(0.5, shape=[64, 64]), x)
      @tf.function(input_signature=[tf.TensorSpec([4], tf.int32)])
      def batched(x):
        return x * 10
      server = grpc.Server(["unix:SOCK"])
      server.bind(matvec)
      server.bind(batched, flush_timeout=0.05)
      server.start()
      client = grpc.Client("unix:SOCK")
      assert client.matvec(tf.ones([64])).numpy().tolist() == [96.0] * 64
      tf.random.set_seed(7)
      context.context().clear_kernel_cache()
      gc.collect()
      for i in range(3):
        assert client.matvec(tf.ones([64])).numpy().tolist() == [96.0] * 64
        assert client.batched(i).numpy() == 10 * i
      server.shutdown()
      print("OK")
      """).replace("SOCK", f"{sock_dir}/c.sock")
  result = run_python(code, timeout=120)
  assert result.returncode == 0 and "OK" in result.stdout, (result.returncode, result.stderr[-3000:])


@pytest.fixture
def inc_server(address):
  @tf.function(input_signature=[tf.TensorSpec([], tf.int32)])
  def inc(x):
    return x + 1

  @tf.function(input_signature=[tf.TensorSpec([4], tf.int32)])
  def batched(x):
    return x * 10

  server = grpc.Server(address)
  server.bind(inc)
  server.bind(batched, flush_timeout=0.3)
  server.start()
  yield server, address
  server.shutdown()


def test_raw_grpcio_garbage_unknown_method_and_oversize(inc_server):
  server, address = inc_server
  channel = grpcio.insecure_channel(address, options=[("grpc.max_send_message_length", 512 << 20)])
  cases = [
    ("/seed/inc", b"garbage", grpcio.StatusCode.INVALID_ARGUMENT, "malformed"),
    ("/seed/inc", b"SEDT\xff\xff\xff\xff", grpcio.StatusCode.INVALID_ARGUMENT, "malformed"),
    ("/seed/inc", b"", grpcio.StatusCode.INVALID_ARGUMENT, "malformed"),
    ("/seed/nope", b"x", grpcio.StatusCode.UNIMPLEMENTED, "unknown method"),
    ("/other.Service/Method", b"x", grpcio.StatusCode.UNIMPLEMENTED, "unknown method"),
    ("/seed/inc", b"\0" * ((256 << 20) + 10), grpcio.StatusCode.RESOURCE_EXHAUSTED, ""),
  ]
  for method, payload, code, text in cases:
    with pytest.raises(grpcio.RpcError) as info:
      channel.unary_unary(method)(payload, timeout=30)
    assert info.value.code() == code, (method, info.value)
    assert text in info.value.details()
  # A truncated valid header: says what is wrong, server still serves.
  body = b"SEDT" + np.uint32(1).tobytes() + np.uint32(3).tobytes() + np.uint32(0).tobytes()
  with pytest.raises(grpcio.RpcError) as info:
    channel.unary_unary("/seed/inc")(body, timeout=30)
  assert "truncated" in info.value.details()
  assert grpc.Client(address).inc(1).numpy() == 2
  assert server.stats()["inc"]["errors"] >= 3


def test_dead_client_mid_batch(inc_server, tmp_path):
  """A client killed while its row waits in a batch does not stall others."""
  server, address = inc_server
  script = textwrap.dedent(f"""
      import sys
      from seed import grpc
      client = grpc.Client('{address}')
      print('CALLING', flush=True)
      client.batched(1)
      print('RETURNED', flush=True)
      """)
  proc = subprocess.Popen(
    [sys.executable, "-c", script],
    stdout=subprocess.PIPE,
    text=True,
    env=dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2"),
  )
  try:
    assert proc.stdout.readline().strip() == "CALLING"
    deadline = time.time() + 30
    while server.stats()["batched"]["calls"] < 1 and time.time() < deadline:
      time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.wait()
  client = grpc.Client(address)
  out = run_parallel(lambda v: client.batched(v).numpy(), [(2,), (3,)])
  assert sorted(out) == [20, 30]
  assert client.inc(5).numpy() == 6


def test_server_gone_is_unavailable_within_deadline(sock_dir):
  address = f"unix:{sock_dir}/c.sock"
  script = (
    SERVE_AND_CALL.format(sock=f"{sock_dir}/c.sock") + "print('READY', flush=True)\nimport time\ntime.sleep(600)\n"
  )
  proc = subprocess.Popen(
    [sys.executable, "-c", script],
    stdout=subprocess.PIPE,
    text=True,
    env=dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2"),
  )
  try:
    assert proc.stdout.readline().strip() == "READY"
    client = grpc.Client(address)
    assert client.inc(1).numpy() == 2
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    t0 = time.time()
    with pytest.raises(tf.errors.UnavailableError):
      client.inc(1, timeout=5)
    assert time.time() - t0 < 5
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.wait()
