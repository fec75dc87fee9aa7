"""seed.rpc.client: the numpy-only tensor-RPC client (no TensorFlow), its errors, dtypes and structures.

The server is a seed.grpc.Server in this process (TensorFlow is loaded here, so the
op library and the client library share the process, as in a learner); the
`without TensorFlow` tests run the client in a child process and check its modules.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
import tensorflow as tf

from seed import grpc
from seed.rpc import client, errors, structure, wire

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_dtype_table_matches_tensorflow():
  for name, (enum, np_type) in wire._TYPES.items():
    dtype = tf.dtypes.as_dtype(name)
    assert dtype.as_datatype_enum == enum, name
    assert np.dtype(dtype.as_numpy_dtype) == np.dtype(np_type), name
    assert wire.numpy_dtype(name) == np.dtype(np_type)
  assert tf.string.as_datatype_enum == wire._STRING and tf.bfloat16.as_datatype_enum == wire._BFLOAT16
  assert wire.numpy_dtype("bfloat16") == np.dtype(tf.bfloat16.as_numpy_dtype)
  x = np.arange(3).astype(tf.bfloat16.as_numpy_dtype)
  (back,) = wire.parse(wire.serialize([x]))
  assert back.dtype == x.dtype and back.tolist() == x.tolist()
  assert wire.numpy_dtype("string") == np.dtype(object)
  with pytest.raises(TypeError, match="resource"):
    wire.numpy_dtype("resource")


def test_structures_flatten_and_pack_like_tf_nest():
  Pair = collections.namedtuple("Pair", ["b", "a"])
  spec = tf.TensorSpec([2], tf.float32, "x")  # a leaf to both (our Spec is a namedtuple to tf.nest)
  nested = ({"z": spec, "a": [spec, None]}, Pair(spec, (spec,)), None)
  assert structure.flatten(nested) == tf.nest.flatten(nested)
  assert len(structure.flatten(nested)) == 6
  assert structure.flatten(structure.Spec((2,), "float32", "x")) == [structure.Spec((2,), "float32", "x")]
  leaves = list(range(6))
  assert structure.pack(nested, leaves) == tf.nest.pack_sequence_as(nested, leaves)
  assert list(structure.pack(nested, leaves)[0]) == ["z", "a"], "a dict keeps its own key order"
  for wrong in (leaves[:5], leaves + [6]):
    with pytest.raises(ValueError, match="leaves for a structure of 6"):
      structure.pack(nested, wrong)


def test_decoded_signature_is_the_servers_structure():
  specs = {"obs": tf.TensorSpec([None, 3], tf.uint8, "obs"), "step": (tf.TensorSpec([], tf.bfloat16, "t"), None)}
  encoded = json.loads(json.dumps(grpc._encode(specs)))
  plain = structure.decode(encoded)
  want = {"obs": structure.Spec((None, 3), "uint8", "obs"), "step": (structure.Spec((), "bfloat16", "t"), None)}
  assert plain == want
  assert structure.decode(encoded, grpc._tensor_spec) == specs


@pytest.fixture(scope="module")
def server(tmp_path_factory):
  address = f"unix:{tmp_path_factory.mktemp('rpc')}/s.sock"
  server = grpc.Server([address])
  gate = threading.Event()

  @tf.function(input_signature=[{"x": tf.TensorSpec([None], tf.float32), "n": tf.TensorSpec([], tf.int64)}])
  def scale(d):
    return {"y": d["x"] * tf.cast(d["n"], tf.float32), "bf": tf.cast(d["x"], tf.bfloat16)}

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
  def shout(s):
    return tf.strings.upper(s), None

  @tf.function(input_signature=[])
  def wait():
    tf.py_function(lambda: gate.wait(10), [], [])
    return tf.constant(0)

  for fn in (scale, shout, wait):
    server.bind(fn)
  server.start()
  yield address
  gate.set()
  server.shutdown()


def test_numpy_calls_keep_the_functions_structure(server):
  c = client.Client(server, connect_timeout=10, timeout=10)
  out = c.scale({"x": np.array([1.0, 2.0], np.float32), "n": 3})
  np.testing.assert_array_equal(out["y"], [3.0, 6.0])
  assert out["bf"].dtype == wire.numpy_dtype("bfloat16")
  up, none = c.shout(["ab", b"cd"])
  assert list(up) == [b"AB", b"CD"] and none is None
  assert isinstance(out["y"], np.ndarray) and not out["y"].flags.writeable


def test_errors_carry_code_and_message(server):
  c = client.Client(server, connect_timeout=10, timeout=10)
  with pytest.raises(errors.InvalidArgument) as e:
    c.scale({"x": np.array([1, 2], np.int32), "n": 3})
  assert e.value.code == 3 and "float" in e.value.message and "scale" in e.value.message
  with pytest.raises(TypeError, match="takes 1 argument"):
    c.scale(1, 2)
  with pytest.raises(TypeError, match="keys"):
    c.scale({"x": [1.0]})
  with pytest.raises(AttributeError, match="no method 'nope'"):
    c.nope  # noqa: B018
  with pytest.raises(errors.DeadlineExceeded):
    c.wait(timeout=0.2)
  assert isinstance(errors.from_code(14, "gone"), errors.Unavailable)
  assert isinstance(errors.from_code(99, "?"), errors.Unknown)


def test_tf_client_raises_tf_errors_for_the_same_failures(server):
  c = grpc.Client(server, connect_timeout=10, timeout=10)
  with pytest.raises(tf.errors.InvalidArgumentError):
    c.scale({"x": np.array([1, 2], np.int32), "n": 3})
  assert isinstance(c.scale({"x": [1.0], "n": 2})["y"], tf.Tensor)


def test_no_server_and_run_complete(tmp_path):
  with pytest.raises(errors.DeadlineExceeded, match="no tensor-RPC server answered"):
    client.Client(f"unix:{tmp_path}/none.sock", connect_timeout=0.3)
  server = grpc.Server([f"unix:{tmp_path}/done.sock"])
  server.bind(tf.function(lambda x: x + 1, input_signature=[tf.TensorSpec([], tf.int32)]), name="inc")
  server.start()
  try:
    c = client.Client(f"unix:{tmp_path}/done.sock", connect_timeout=10)
    assert c.inc(1) == 2
    server.complete()
    with pytest.raises(errors.OutOfRange) as e:
      c.inc(1)
    assert errors.is_run_complete(e.value) and grpc.is_run_complete(e.value)
    with pytest.raises(tf.errors.OutOfRangeError) as tf_e:
      grpc.Client(f"unix:{tmp_path}/done.sock", connect_timeout=10)
    assert errors.is_run_complete(tf_e.value)
  finally:
    server.shutdown()
  with pytest.raises(errors.Unavailable):
    c.inc(1, timeout=5)


def test_a_process_without_tensorflow_calls_the_server(server):
  code = textwrap.dedent(f"""
    import sys
    import numpy as np
    from seed.rpc import client, errors
    c = client.Client({server!r}, connect_timeout=20, timeout=20)
    out = c.scale({{"x": np.arange(3, dtype=np.float32), "n": 2}})
    try:
      c.scale({{"x": np.arange(3), "n": 2}})
    except errors.InvalidArgument as e:
      print("error", e.code)
    print("y", out["y"].tolist())
    print("tf", sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "tf_keras", "keras")))
  """)
  proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = proc.stdout.splitlines()
  assert "error 3" in lines and "y [0.0, 2.0, 4.0]" in lines
  assert "tf []" in lines, lines
