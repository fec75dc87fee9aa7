"""Calls on long-lived streams (the default; issue 26): the semantics unary calls have, kept.

SEED_RPC_STREAMS is read once per process, so each case runs in a fresh interpreter. The whole
suite runs over streams; the tensor-RPC tests pass with unary calls too
(`SEED_RPC_STREAMS=0 pytest tests/test_grpc*.py`).
"""

import json
import subprocess

import pytest
from helpers import run_parallel, run_python

from seed.rpc import build_op

# A server with one unbatched method, inc(x) = x + 1.
_INC_SERVER = r"""
server = grpc.Server([address])
@tf.function(input_signature=[tf.TensorSpec([], tf.int32)])
def inc(x):
  return x + 1
server.bind(inc); server.start()
"""

_PRELUDE = r"""
import atexit, concurrent.futures, json, os, shutil, tempfile, threading, time
import tensorflow as tf
from seed import grpc
sock_dir = tempfile.mkdtemp(prefix="seedt-")
atexit.register(shutil.rmtree, sock_dir, True)
address = "unix:" + os.path.join(sock_dir, "s")
def out(**kw):
  print(json.dumps(kw))
"""


def _run(body: str, timeout=180, env=None) -> dict:
  r = run_python(_PRELUDE + body, timeout=timeout, env=env)
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


@pytest.mark.parametrize("streams", [True, False])
def test_a_deadline_inside_a_long_batch_answers_that_caller_and_drops_its_row(streams):
  """The expired caller gets DEADLINE_EXCEEDED at its deadline and its row leaves the open batch
  (grpc/batcher.h), on a stream (which goes on) as on a unary call: the next four calls fill the batch."""
  got = _run(
    r"""
server = grpc.Server([address])
@tf.function(input_signature=[tf.TensorSpec([4], tf.int32)])
def add(x):
  return x + 1
server.bind(add); server.start()
client = grpc.Client(address, streams=STREAMS)
t0 = time.monotonic()
try:
  client.add(7, timeout=0.3)
  expired = None
except tf.errors.DeadlineExceededError as e:
  expired = str(e)
waited = time.monotonic() - t0
deadline = time.monotonic() + 10  # the server learns of the expiry a moment after the client
while server.stats()["add"]["dropped"] < 1 and time.monotonic() < deadline:
  time.sleep(0.01)
with concurrent.futures.ThreadPoolExecutor(4) as pool:
  full = sorted(pool.map(lambda v: int(client.add(v, timeout=30)), [1, 2, 3, 4]))
stats = server.stats()
server.shutdown()
out(expired=expired, waited=waited, full=full, add=stats["add"], server=stats["__server__"])
""".replace("STREAMS", str(streams))
  )
  assert got["expired"] is not None and "deadline" in got["expired"].lower() and 0.25 < got["waited"] < 5, got
  assert got["full"] == [2, 3, 4, 5], got
  assert got["add"]["dropped"] == 1 and got["add"]["batches"] == 1 and got["add"]["slots"] == 4, got
  assert (got["server"]["streams_opened"] >= 1) == streams, got


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


@pytest.mark.soak
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


def test_streams_are_the_default_and_seed_rpc_streams_0_turns_them_off():
  code = (
    _INC_SERVER
    + r"""
client = grpc.Client(address)
got = [int(client.inc(1)), int(tf.function(lambda: client.inc(2))())]
out(got=got, stream_calls=server.stats()["__server__"]["stream_calls"])
server.shutdown()
"""
  )
  cases = (({}, 3), ({"SEED_RPC_STREAMS": "0"}, 0))
  results = run_parallel(lambda env: _run(code, env=env), [(env,) for env, _ in cases], timeout=240)
  for (env, stream_calls), got in zip(cases, results):
    # The client's first call fetches the method list, then the two calls: all on streams, or none.
    assert got == {"got": [2, 3], "stream_calls": stream_calls}, (env, got)


def test_a_client_chooses_streams_or_unary_whatever_the_process_default():
  code = (
    _INC_SERVER
    + r"""
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
  )
  envs = ({}, {"SEED_RPC_STREAMS": "0"})
  for env, got in zip(envs, run_parallel(lambda env: _run(code, env=env), [(env,) for env in envs], timeout=240)):
    # streams=False: both calls unary (the metadata call too); streams=True: both on streams.
    assert got == {"False": [2, 3, 0], "True": [2, 3, 2]}, (env, got)
