"""Batching in the tensor-RPC server (seed.grpc): detection, client-side batches, flush timeout,
pad mask, calls spanning batches, many clients, round robin, shutdown while batches wait."""

import threading
import time

import numpy as np
import pytest
import tensorflow as tf

from seed import grpc
from tests.helpers import call_many, catch, run_parallel, spec

# ----------------------------------------------------------------- batching ---


def test_batch_detection(address):
  @tf.function(input_signature=[spec([4]), spec([4, 2])])
  def batched(a, b):
    return a + tf.reduce_sum(b, 1)

  @tf.function(input_signature=[spec([4])])
  def scalar_out(a):  # rank-0 output: not batched
    return tf.reduce_sum(a)

  @tf.function(input_signature=[spec([4])])
  def unknown_out(a):  # output leading dim not static: not batched
    return tf.boolean_mask(a, a > 0)

  @tf.function(input_signature=[spec([4]), spec([3])])
  def mixed(a, b):
    return a

  server = grpc.Server(address)
  for f in (batched, scalar_out, unknown_out, mixed):
    server.bind(f)
  with pytest.raises(ValueError, match="cannot be batched"):
    server.bind(scalar_out, name="forced", batched=True)
  with server:
    client = grpc.Client(address)
    assert client.batched.batch_size == 4
    assert (client.scalar_out.batch_size, client.unknown_out.batch_size, client.mixed.batch_size) == (0, 0, 0)
    assert client.scalar_out([1, 2, 3, 4]).numpy() == 10
    assert list(client.unknown_out([1, -2, 3, -4]).numpy()) == [1, 3]
    assert list(client.mixed([1, 2, 3, 4], [0, 0, 0]).numpy()) == [1, 2, 3, 4]
    out = run_parallel(client.batched, [(i, [i, i]) for i in range(4)])
    assert [o.numpy() for o in out] == [3 * i for i in range(4)]


def test_forced_unbatched(serve):
  @tf.function(input_signature=[spec([3])])
  def inc(x):
    return x + 1

  client = serve(inc, batched=False)
  assert list(client.inc([1, 2, 3]).numpy()) == [2, 3, 4]


def test_client_side_batching(address):
  @tf.function(input_signature=[spec([4])])
  def inc(x):
    return x + 1

  server = grpc.Server(address)
  server.bind(inc)
  with server:
    c1, c2 = grpc.Client(address), grpc.Client(address)
    out = run_parallel(lambda c, x: c.inc(np.array(x, np.int32)), [(c1, [1, 2]), (c2, [10, 20])])
    assert [list(o.numpy()) for o in out] == [[2, 3], [11, 21]]
    assert server.stats()["inc"]["batches"] == 1


def test_overflowing_call_is_invalid_argument(serve):
  @tf.function(input_signature=[spec([4])])
  def inc(x):
    return x + 1

  client = serve(inc, flush_timeout=0.01)
  with pytest.raises(tf.errors.InvalidArgumentError, match="carries 5 rows but the batch size is 4"):
    client.inc(np.arange(5, dtype=np.int32))
  assert list(client.inc(np.arange(4, dtype=np.int32)).numpy()) == [1, 2, 3, 4]  # still serving


def test_flush_timeout_runs_partial_batch(serve):
  @tf.function(input_signature=[spec([8])])
  def inc(x):
    return x + 1

  client = serve(inc, flush_timeout=0.05)
  t0 = time.time()
  assert client.inc(1).numpy() == 2
  assert 0.04 <= time.time() - t0 < 5


def test_pad_mask_tells_real_slots(address):
  @tf.function(input_signature=[spec([4]), spec([4], tf.bool)])
  def count_real(x, mask):
    return x * 0 + tf.reduce_sum(tf.cast(mask, tf.int32))

  server = grpc.Server(address)
  server.bind(count_real, flush_timeout=0.02, pad_mask=True)
  with server:
    client = grpc.Client(address)
    assert client.count_real(7).numpy() == 1  # ran alone, padded with 3 masked slots
    assert list(client.count_real(np.array([1, 2, 3], np.int32)).numpy()) == [3, 3, 3]
    with pytest.raises(TypeError, match="takes 1 argument"):
      client.count_real(1, True)


def test_pad_mask_validation(address):
  @tf.function(input_signature=[spec([4])])
  def f(x):
    return x

  with pytest.raises(ValueError, match="pad_mask"):
    grpc.Server(address).bind(f, pad_mask=True)


def test_calls_span_batches(serve):
  @tf.function(input_signature=[spec([4])])
  def neg(x):
    return -x

  client = serve(neg, flush_timeout=0.05)
  out = run_parallel(lambda x: client.neg(np.array(x, np.int32)), [([1, 2, 3],), ([4, 5, 6],)])
  assert sorted(list(o.numpy()) for o in out) == [[-4, -5, -6], [-1, -2, -3]]


def test_whole_batch_calls_and_split_calls_agree(address):
  """A call of exactly batch_size rows is run as the batch itself (no staging copy); mixed with
  calls that share or span batches, every caller still gets its own rows, and the mask is all real."""

  @tf.function(input_signature=[spec([4]), spec([4], tf.bool)])
  def times_ten(x, mask):
    return x * 10 + (4 - tf.reduce_sum(tf.cast(mask, tf.int32)))  # + number of padding slots

  server = grpc.Server(address)
  server.bind(times_ten, flush_timeout=0.05, pad_mask=True)
  with server:
    client = grpc.Client(address)
    assert list(client.times_ten(np.arange(4, dtype=np.int32)).numpy()) == [0, 10, 20, 30]
    calls = [([1, 2],), ([3, 4, 5, 6],), ([7, 8, 9, 10],), ([11],)]
    out = run_parallel(lambda x: client.times_ten(np.array(x, np.int32)), calls)
    for (x,), o in zip(calls, out):
      assert list(o.numpy() // 10) == x  # own rows back, whichever batch they ran in
    assert server.stats()["times_ten"]["slots"] == 4 + 11


def test_shutdown_while_waiting_for_batch(address):
  @tf.function(input_signature=[spec([4])])
  def inc(x):
    return x + 1

  server = grpc.Server(address)
  server.bind(inc)
  server.start()
  client = grpc.Client(address)
  results = []
  threads = [threading.Thread(target=lambda: results.append(catch(client.inc, 1))) for _ in range(2)]
  for t in threads:
    t.start()
  time.sleep(0.5)
  server.shutdown()
  for t in threads:
    t.join(30)
    assert not t.is_alive()
  assert len(results) == 2
  assert all(isinstance(r, (tf.errors.CancelledError, tf.errors.UnavailableError)) for r in results), results


def test_one_client_many_threads_not_serialized(address):
  # Batch of 8 without timeout: completes only if 8 calls are in flight at once.
  @tf.function(input_signature=[spec([8])])
  def inc(x):
    return x + 1

  server = grpc.Server(address)
  server.bind(inc)
  with server:
    client = grpc.Client(address)
    assert call_many(client.inc, list(range(8)), timeout=30) == list(range(1, 9))


def test_two_clients(address):
  @tf.function(input_signature=[spec([2])])
  def inc(x):
    return x + 1

  server = grpc.Server(address)
  server.bind(inc)
  with server:
    clients = [grpc.Client(address), grpc.Client(address)]
    out = run_parallel(lambda c, v: c.inc(v), [(clients[0], 1), (clients[1], 2)])
    assert sorted(o.numpy() for o in out) == [2, 3]


def test_stress_10_clients_100_calls(address):
  @tf.function(input_signature=[spec([5])])
  def square(x):
    return x * x

  server = grpc.Server(address)
  # The timeout only matters at the tail, when fewer than 5 callers are left.
  server.bind(square, flush_timeout=0.05)
  with server:

    def worker(i):
      client = grpc.Client(address)
      return [client.square(i * 1000 + j).numpy() for j in range(100)]

    out = run_parallel(worker, [(i,) for i in range(10)], timeout=120)
    for i, values in enumerate(out):
      assert not isinstance(values, BaseException), values
      assert values == [(i * 1000 + j) ** 2 for j in range(100)]
    stats = server.stats()["square"]
    assert stats["slots"] == 1000 and stats["errors"] == 0
    assert stats["mean_batch_fill"] > 0.6  # mostly full batches


def test_bind_several_functions(address):
  server = grpc.Server(address)

  def make_adder(k):
    @tf.function(input_signature=[spec([])])
    def add(x):
      return x + k

    return add

  for k in range(5):
    server.bind(make_adder(k), name=f"add{k}")
  with server:
    client = grpc.Client(address)
    assert sorted(client.methods) == [f"add{k}" for k in range(5)]
    assert [getattr(client, f"add{k}")(10).numpy() for k in range(5)] == [10, 11, 12, 13, 14]


def test_round_robin_over_concrete_functions(address):
  v0, v1 = tf.Variable(0), tf.Variable(0)

  def make(v):
    @tf.function(input_signature=[spec([])])
    def f(x):
      v.assign_add(1)
      return x + 1

    return f

  server = grpc.Server(address)
  server.bind([make(v0), make(v1)], name="inc")
  with server:
    client = grpc.Client(address)
    assert [client.inc(i).numpy() for i in range(10)] == list(range(1, 11))
  assert (v0.numpy(), v1.numpy()) == (5, 5)


def test_20_clients_200_calls_with_shutdown_midway(address):
  @tf.function(input_signature=[spec([8])])
  def inc(x):
    return x + 1

  server = grpc.Server(address)
  server.bind(inc, flush_timeout=0.005)
  server.start()
  progress = [0] * 20

  def worker(i):
    client = grpc.Client(address)
    for j in range(200):
      try:
        assert client.inc(j).numpy() == j + 1
      except (tf.errors.CancelledError, tf.errors.UnavailableError):
        return "stopped"
      progress[i] += 1
    return "done"

  threads = []
  results = []
  for i in range(20):
    t = threading.Thread(target=lambda i=i: results.append(worker(i)))
    t.start()
    threads.append(t)
  deadline = time.time() + 60
  while sum(progress) < 1000 and time.time() < deadline:
    time.sleep(0.01)
  server.shutdown()
  for t in threads:
    t.join(60)
    assert not t.is_alive(), "a client hung after shutdown"
  assert len(results) == 20 and "stopped" in results
  assert sum(progress) >= 1000


def test_server_threads_configurable(address):
  @tf.function(input_signature=[spec([4])])
  def inc(x):
    return x + 1

  server = grpc.Server(address, num_threads=1)
  server.bind(inc)
  with server:
    client = grpc.Client(address)
    assert call_many(client.inc, [1, 2, 3, 4]) == [2, 3, 4, 5]


def test_numpy_outputs(address):
  @tf.function(input_signature=[spec([2]), spec([], tf.string)])
  def f(x, s):
    return {"x": x * 3, "s": s + "!"}

  server = grpc.Server(address)
  server.bind(f)
  with server:
    out = grpc.Client(address, numpy_outputs=True).f(np.array([1, 2], np.int32), "hi")
    assert isinstance(out["x"], np.ndarray) and out["x"].tolist() == [3, 6]
    assert out["s"] == b"hi!"
