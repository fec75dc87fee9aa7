"""Calls on long-lived streams (SEED_RPC_STREAMS=1; issue 26): the semantics unary calls have, kept.

The switch is read once per process, so each case runs in a fresh interpreter. The rest of the
tensor-RPC suite passes with the same switch (`SEED_RPC_STREAMS=1 pytest tests/test_grpc*.py`).
"""

import json
import os
import subprocess

import pytest
from helpers import run_python

from seed.rpc import build_op

_PRELUDE = r"""
import concurrent.futures, json, os, shutil, tempfile, threading, time
import tensorflow as tf
from seed import grpc
sock_dir = tempfile.mkdtemp(prefix="seedt-")
address = "unix:" + os.path.join(sock_dir, "s")
def out(**kw):
  print(json.dumps(kw))
"""


def _run(body: str, timeout=180) -> dict:
  r = run_python(_PRELUDE + body, timeout=timeout, env={"SEED_RPC_STREAMS": "1"})
  assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
  return json.loads(r.stdout.strip().splitlines()[-1])


def test_calls_travel_on_streams_and_replies_come_back_out_of_order():
  """While `slow` blocks in the server, later calls are answered: the channel's streams (two, round
  robin) carry three of them, so at least one answer overtakes `slow` on its own stream."""
  got = _run(r"""
server = grpc.Server([address])
q = tf.queue.FIFOQueue(10, [tf.int32], shapes=[[]])
@tf.function(input_signature=[tf.TensorSpec([], tf.int32)])
def slow(x):  # blocks until `release` puts a value in the queue
  return x + q.dequeue()
@tf.function(input_signature=[tf.TensorSpec([], tf.int32)])
def fast(x):
  return x * 2
@tf.function(input_signature=[tf.TensorSpec([], tf.int32)])
def release(x):
  q.enqueue(x)
  return x
for f in (slow, fast, release): server.bind(f)
server.start()
client = grpc.Client(address, timeout=30)
with concurrent.futures.ThreadPoolExecutor(1) as pool:
  blocked = pool.submit(lambda: int(client.slow(1)))
  time.sleep(0.3)
  fast_answers = [int(client.fast(v)) for v in (10, 20, 30)]
  still_blocked = not blocked.done()
  client.release(41)
  slow_answer = blocked.result(timeout=30)
stats = server.stats()["__server__"]
server.shutdown()
out(fast=fast_answers, still_blocked=still_blocked, slow=slow_answer, stats=stats)
""")
  assert got["fast"] == [20, 40, 60] and got["still_blocked"] and got["slow"] == 42, got
  s = got["stats"]
  assert s["streams_opened"] == 2 and s["stream_calls"] >= 5, s  # slow, 3 x fast, release (+ metadata)


def test_a_deadline_inside_a_long_batch_answers_that_caller_and_the_stream_goes_on():
  """The expired caller gets DEADLINE_EXCEEDED at its deadline; as with unary calls its row stays in the
  batch (grpc/batcher.h: the batch answers it later and the stream drops that late reply)."""
  got = _run(r"""
server = grpc.Server([address])
@tf.function(input_signature=[tf.TensorSpec([4], tf.int32)])
def add(x):
  return x + 1
server.bind(add); server.start()
client = grpc.Client(address)
t0 = time.monotonic()
try:
  client.add(7, timeout=0.3)
  expired = None
except tf.errors.DeadlineExceededError as e:
  expired = str(e)
waited = time.monotonic() - t0
with concurrent.futures.ThreadPoolExecutor(4) as pool:
  rest = sorted(pool.map(lambda v: int(client.add(v, timeout=30)), [1, 2, 3]))  # completes that batch
  full = sorted(pool.map(lambda v: int(client.add(v, timeout=30)), [1, 2, 3, 4]))
stats = server.stats()
server.shutdown()
out(expired=expired, waited=waited, rest=rest, full=full, add=stats["add"], server=stats["__server__"])
""")
  assert got["expired"] is not None and "deadline" in got["expired"] and 0.25 < got["waited"] < 5, got
  assert got["rest"] == [2, 3, 4] and got["full"] == [2, 3, 4, 5], got
  assert got["add"]["batches"] == 2 and got["server"]["streams_opened"] >= 1, got


def test_cancel_and_a_server_restart_fail_only_the_calls_in_flight():
  got = _run(r"""
q = tf.queue.FIFOQueue(10, [tf.int32], shapes=[[]])
@tf.function(input_signature=[tf.TensorSpec([], tf.int32)])
def block(x):
  return x + q.dequeue()
@tf.function(input_signature=[tf.TensorSpec([], tf.int32)])
def echo(x):
  return x
server = grpc.Server([address]); server.bind(block); server.bind(echo); server.start()
client = grpc.Client(address, timeout=30)
# A call blocked in the server when the server goes away fails with Unavailable or Cancelled, at once.
def blocked():
  try:
    client.block(1)
    return "answered"
  except (tf.errors.UnavailableError, tf.errors.CancelledError) as e:
    return type(e).__name__
with concurrent.futures.ThreadPoolExecutor(1) as pool:
  f = pool.submit(blocked)
  time.sleep(0.5)
  t0 = time.monotonic()
  server.shutdown()
  first = f.result(timeout=20)
  shutdown_s = time.monotonic() - t0
# The next call opens a new stream to the restarted server.
server = grpc.Server([address]); server.bind(block); server.bind(echo); server.start()
deadline = time.monotonic() + 20
while True:
  try:
    again = int(client.echo(5))
    break
  except tf.errors.UnavailableError:
    if time.monotonic() > deadline: raise
    time.sleep(0.1)
stats = server.stats()["__server__"]
server.shutdown()
out(first=first, shutdown_s=shutdown_s, again=again, stats=stats)
""")
  assert got["first"] in ("UnavailableError", "CancelledError"), got
  assert got["shutdown_s"] < 10 and got["again"] == 5 and got["stats"]["streams_opened"] >= 1, got


def test_thousands_of_concurrent_callers_on_streams(tmp_path):
  """2,000 callers in flight at once through the C++ stream client (echo_bench), none lost."""
  binary = str(build_op.echo_bench_path())
  address = f"unix:{tmp_path}/echo"
  with subprocess.Popen(
    [binary, "server", address, "2"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
  ) as srv:
    try:
      assert srv.stdout.readline().startswith("READY")
      r = subprocess.run(
        [binary, "stream-client", address, "2000", "64", "1", "0.3"], capture_output=True, text=True, timeout=120
      )
      assert r.returncode == 0, r.stdout + r.stderr
      assert "ERRORS 0" in r.stdout and float(r.stdout.split()[1]) > 0, r.stdout
    finally:
      srv.stdin.close()
      assert srv.wait(30) == 0


@pytest.mark.skipif(not os.path.exists("/proc"), reason="linux only")
def test_the_switch_is_off_by_default():
  r = run_python(_PRELUDE + "out(on=os.environ.get('SEED_RPC_STREAMS'))")
  assert json.loads(r.stdout.strip().splitlines()[-1])["on"] is None


def test_a_client_chooses_streams_or_unary_whatever_the_process_default():
  code = r"""
server = grpc.Server([address])
@tf.function(input_signature=[tf.TensorSpec([], tf.int32)])
def inc(x):
  return x + 1
server.bind(inc); server.start()
got = {}
for streams in (False, True):
  client = grpc.Client(address, streams=streams)
  before = server.stats()["__server__"]["stream_calls"]
  eager = int(client.inc(1))
  graph = int(tf.function(lambda: client.inc(2))())
  got[str(streams)] = [eager, graph, server.stats()["__server__"]["stream_calls"] - before]
server.shutdown()
out(**got)
"""
  for env in ({}, {"SEED_RPC_STREAMS": "1"}):
    r = run_python(_PRELUDE + code, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    # streams=False: both calls unary (the metadata call too); streams=True: both on streams.
    assert got == {"False": [2, 3, 0], "True": [2, 3, 2]}, (env, got)
