"""The client op inside tf.function (graph mode): the path a SavedModel or an
in-graph loop takes. Eager calls use a direct path; these cover the op."""

import collections
import threading
import time

import numpy as np
import pytest
import tensorflow as tf

from seed import grpc
from tests.helpers import catch, run_parallel
from tests.test_grpc import NUMERIC


def in_graph(fn, *args, **kwargs):
  """Runs fn(*args) inside a tf.function (arguments become graph constants)."""
  return tf.function(lambda: fn(*args, **kwargs))()


@pytest.mark.parametrize("dtype", NUMERIC + [tf.string], ids=lambda d: d.name)
def test_dtypes_in_graph(serve, dtype):
  @tf.function(input_signature=[tf.TensorSpec([2, 3], dtype)])
  def ident(x):
    return tf.identity(x)

  if dtype == tf.string:
    x = tf.constant([["a", "bb", ""], ["ccc", "d", "é"]])
  else:
    x = tf.cast(tf.reshape(tf.range(6) % 2 if dtype == tf.bool else tf.range(6), [2, 3]), dtype)
  out = in_graph(serve(ident, batched=False).ident, x)
  assert out.dtype == dtype
  np.testing.assert_array_equal(out.numpy(), x.numpy())


def test_errors_in_graph(serve):
  @tf.function(input_signature=[tf.TensorSpec([3], tf.int32, name="x")])
  def positive(x):
    tf.debugging.assert_positive(x, message="must be positive")
    return x

  client = serve(positive, batched=False)
  with pytest.raises(tf.errors.InvalidArgumentError, match=r"'x'.*expected dtype int32, got float"):
    in_graph(client.positive, tf.constant([1.0, 2.0, 3.0]))
  with pytest.raises(tf.errors.InvalidArgumentError, match=r"expected shape \[3\], got \[2\]"):
    in_graph(client.positive, tf.constant([1, 2]))
  with pytest.raises(tf.errors.InvalidArgumentError, match="must be positive"):
    in_graph(client.positive, tf.constant([1, -2, 3]))
  assert list(in_graph(client.positive, tf.constant([1, 2, 3])).numpy()) == [1, 2, 3]


def test_nested_structures_in_graph(serve):
  Pair = collections.namedtuple("Pair", ["a", "b"])

  @tf.function(
    input_signature=[
      Pair(tf.TensorSpec([], tf.int32), [tf.TensorSpec([2], tf.float32)]),
      {"k": tf.TensorSpec([], tf.string)},
    ]
  )
  def f(p, d):
    return {"sum": tf.cast(p.a, tf.float32) + tf.reduce_sum(p.b[0]), "tag": d["k"]}, Pair(p.a * 2, p.b)

  client = serve(f)
  out, pair = in_graph(client.f, Pair(tf.constant(1), [tf.constant([2.0, 3.0])]), {"k": tf.constant("z")})
  assert out["sum"].numpy() == 6.0 and out["tag"].numpy() == b"z"
  assert pair.a.numpy() == 2 and list(pair.b[0].numpy()) == [2.0, 3.0]


def test_client_side_batching_in_graph(serve):
  @tf.function(input_signature=[tf.TensorSpec([4, 2], tf.int32)])
  def double(x):
    return x * 2

  client = serve(double, flush_timeout=0.01)
  out = in_graph(client.double, tf.constant([[1, 2], [3, 4]]))
  assert out.shape == (2, 2) and out.numpy().tolist() == [[2, 4], [6, 8]]
  one = in_graph(client.double, tf.constant([5, 6]))
  assert one.shape == (2,) and one.numpy().tolist() == [10, 12]
  with pytest.raises(tf.errors.InvalidArgumentError, match="carries 5 rows"):
    in_graph(client.double, tf.zeros([5, 2], tf.int32))


def test_large_tensor_in_graph(serve):
  @tf.function(input_signature=[tf.TensorSpec([None], tf.uint8)])
  def total(x):
    return tf.reduce_sum(tf.cast(x, tf.int64)), x

  data = np.random.default_rng(1).integers(0, 255, 40 << 20, dtype=np.uint8)
  s, back = in_graph(serve(total).total, data)
  assert s.numpy() == int(data.sum(dtype=np.int64))
  np.testing.assert_array_equal(back.numpy(), data)


def test_deadline_and_shutdown_in_graph(address):
  q = tf.queue.FIFOQueue(10, tf.int32, shapes=[[]])

  @tf.function(input_signature=[tf.TensorSpec([], tf.int32)])
  def wait(x):
    return q.dequeue() + x

  server = grpc.Server(address)
  server.bind(wait)
  server.start()
  client = grpc.Client(address)
  t0 = time.time()
  with pytest.raises(tf.errors.DeadlineExceededError):
    in_graph(client.wait, 1, timeout=0.3)
  assert time.time() - t0 < 10
  result = []
  thread = threading.Thread(target=lambda: result.append(catch(in_graph, client.wait, 1)))
  thread.start()
  time.sleep(0.5)
  server.shutdown()
  thread.join(30)
  assert not thread.is_alive()
  assert isinstance(result[0], (tf.errors.CancelledError, tf.errors.UnavailableError)), result


def test_batched_calls_from_concurrent_graphs(serve):
  @tf.function(input_signature=[tf.TensorSpec([8], tf.int32)])
  def inc(x):
    return x + 1

  client = serve(inc)

  @tf.function(input_signature=[tf.TensorSpec([], tf.int32)])
  def loop(start):
    return tf.while_loop(lambda i, acc: i < 20, lambda i, acc: (i + 1, acc + client.inc(start + i)), (0, 0))[1]

  out = run_parallel(lambda s: int(loop(tf.constant(s))), [(s * 100,) for s in range(8)], timeout=120)
  assert out == [sum(s * 100 + i + 1 for i in range(20)) for s in range(8)]


def test_concurrent_first_use_in_fresh_process(sock_dir):
  """Many threads making their first call at once (library load races)."""
  from tests.helpers import run_python

  code = f"""
import threading, numpy as np, tensorflow as tf
from seed import grpc
server = grpc.Server(['unix:{sock_dir}/x.sock'])
@tf.function(input_signature=[tf.TensorSpec([16], tf.int32)])
def inc(x):
  return x + 1
server.bind(inc)
server.start()
client = grpc.Client('unix:{sock_dir}/x.sock', numpy_outputs=True)
out = [None] * 16
def call(i):
  out[i] = int(client.inc(np.int32(i)))
threads = [threading.Thread(target=call, args=(i,)) for i in range(16)]
[t.start() for t in threads]
[t.join(60) for t in threads]
assert out == list(range(1, 17)), out
print('OK')
"""
  result = run_python(code, timeout=120)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "OK" in result.stdout
