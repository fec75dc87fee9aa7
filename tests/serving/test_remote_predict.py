"""seed.serving.remote_predict (seed 004's op): against an independent grpcio PredictionService written here,
and seed 004's own example against seed.serve (scripts/examples/remote_half_plus_two.py)."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import threading
import time
from concurrent import futures

import numpy as np
import portpicker
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

import grpc
from seed import grpc as tensor_rpc
from seed.serving import remote_predict
from tests.helpers import REPO, TLS_TOKEN


class _Servicer(prediction_service_pb2_grpc.PredictionServiceServicer):
  """Answers y = 0.5 * x + 2 (any dtype) and "echo" of every input; sleeps first when asked; records requests.
  With a token: only calls carrying it are answered (UNAUTHENTICATED otherwise)."""

  def __init__(self, token: str | None = None):
    self.requests: list[predict_pb2.PredictRequest] = []
    self.delay = 0.0
    self.token = token
    self.peer_identities: list = []

  def Predict(self, request, context):
    if self.token is not None:
      metadata = dict(context.invocation_metadata())
      if metadata.get("authorization") != f"Bearer {self.token}":
        context.abort(grpc.StatusCode.UNAUTHENTICATED, "bad or missing token")
      self.peer_identities.append(context.peer_identities())
    self.requests.append(request)
    time.sleep(self.delay)
    if request.model_spec.name != "half_plus_two":
      context.abort(grpc.StatusCode.NOT_FOUND, f"no model {request.model_spec.name}")
    response = predict_pb2.PredictResponse()
    x = tf.make_ndarray(request.inputs["x"])
    response.outputs["y"].CopyFrom(tf.make_tensor_proto(0.5 * x + 2))
    for k, v in request.inputs.items():
      response.outputs[f"echo_{k}"].CopyFrom(v)
    return response


@pytest.fixture(scope="module")
def peer():
  servicer = _Servicer()
  server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
  prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(servicer, server)
  port = server.add_insecure_port("127.0.0.1:0")
  server.start()
  yield servicer, f"127.0.0.1:{port}"
  server.stop(0).wait()


def _run(address, x, **kwargs):
  return remote_predict.run(
    ["x"], [x], ["y"], address, "half_plus_two", output_types=[tf.as_dtype(np.asarray(x).dtype)], **kwargs
  )


def test_eager_and_in_a_tf_function_the_request_is_what_tf_serving_reads(peer):
  servicer, address = peer
  x = np.array([1.0, 2.0, 5.0], np.float32)
  (y,) = _run(address, x)
  np.testing.assert_array_equal(y.numpy(), [2.5, 3.0, 4.5])
  request = servicer.requests[-1]
  assert request.model_spec.name == "half_plus_two" and not request.model_spec.HasField("version")
  assert request.model_spec.signature_name == "serving_default" and list(request.output_filter) == ["y"]
  np.testing.assert_array_equal(tf.make_ndarray(request.inputs["x"]), x)

  @tf.function(input_signature=[tf.TensorSpec([None], tf.float64)])
  def graph(x):
    code, message, (y,) = remote_predict.run_returning_status(
      ["x"], [x], ["y"], address, "half_plus_two", model_version=7, output_types=[tf.float64], signature_name="s"
    )
    return code, message, y

  code, message, y = graph(tf.constant([4.0], tf.float64))
  assert int(code) == 0 and message.numpy() == b"" and y.numpy().tolist() == [4.0]
  assert servicer.requests[-1].model_spec.version.value == 7 and servicer.requests[-1].model_spec.signature_name == "s"


def test_several_inputs_and_outputs_of_every_kind(peer):
  _, address = peer
  s = np.array([[b"a", b"bc"]], object)
  n = np.arange(6, dtype=np.int64).reshape(2, 3)
  x = np.array([2.0], np.float32)
  y, echo_s, echo_n = remote_predict.run(
    ["x", "s", "n"], [x, s, n], ["y", "echo_s", "echo_n"], address, "half_plus_two",
    output_types=[tf.float32, tf.string, tf.int64],
  )  # fmt: skip
  assert y.numpy().tolist() == [3.0] and echo_s.numpy().tolist() == s.tolist()
  np.testing.assert_array_equal(echo_n.numpy(), n)


def test_errors_raise_or_come_back_as_a_status_with_zeros(peer):
  _, address = peer
  x = np.array([1.0], np.float32)
  with pytest.raises(tf.errors.NotFoundError, match="no model nope"):
    remote_predict.run(["x"], [x], ["y"], address, "nope", output_types=[tf.float32])
  code, message, (y,) = remote_predict.run_returning_status(
    ["x"], [x], ["y"], address, "nope", output_types=[tf.float32]
  )
  assert int(code) == 5 and b"no model nope" in message.numpy() and float(y) == 0.0
  # An output the server does not send, or of another dtype: the op says which.
  with pytest.raises(tf.errors.InternalError, match="no output 'z'"):
    remote_predict.run(["x"], [x], ["z"], address, "half_plus_two", output_types=[tf.float32])
  with pytest.raises(tf.errors.InvalidArgumentError, match="output 'y' has dtype float32, expected int32"):
    remote_predict.run(["x"], [x], ["y"], address, "half_plus_two", output_types=[tf.int32])
  with pytest.raises(ValueError, match="output_types"):
    remote_predict.run(["x"], [x], ["y"], address, "half_plus_two")
  # Nobody listening: UNAVAILABLE at once, not after the deadline.
  start = time.monotonic()
  code, _, _ = remote_predict.run_returning_status(
    ["x"], [x], ["y"], f"127.0.0.1:{portpicker.pick_unused_port()}", "m", output_types=[tf.float32]
  )
  assert int(code) == 14 and time.monotonic() - start < 2.5


def test_the_deadline_is_honoured(peer):
  servicer, address = peer
  servicer.delay = 2.0
  try:
    start = time.monotonic()
    code, message, _ = remote_predict.run_returning_status(
      ["x"], [np.ones([1], np.float32)], ["y"], address, "half_plus_two", max_rpc_deadline_millis=300,
      output_types=[tf.float32],
    )  # fmt: skip
    took = time.monotonic() - start
  finally:
    servicer.delay = 0.0
  assert int(code) == 4 and took < 1.5, (int(code), message.numpy(), took)


def test_concurrent_calls_from_threads(peer):
  _, address = peer
  results = {}

  def call(i):
    results[i] = _run(address, np.full([2], float(i), np.float32))[0].numpy().tolist()

  threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
  for t in threads:
    t.start()
  for t in threads:
    t.join(60)
  assert results == {i: [0.5 * i + 2] * 2 for i in range(8)}


def test_seed_004_example_answers_on_one_seed_serve():
  """half_plus_two_with_rpop calls half_plus_two on the server that serves it (REST via curl and gRPC)."""
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)
  proc = subprocess.run(
    [sys.executable, os.path.join(REPO, "scripts", "examples", "remote_half_plus_two.py")],
    capture_output=True, text=True, timeout=240, env=env, cwd=REPO, check=False,
  )  # fmt: skip
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  lines = proc.stdout.splitlines()
  assert '{"predictions": [3.5,4.0,5.5]}' in lines and "gRPC Predict: [3.5, 4.0, 5.5]" in lines
  assert lines[-1] == "OK"


@pytest.fixture(scope="module")
def tls_peer(tls_files):
  """A mutual-TLS + token grpcio PredictionService on 127.0.0.1 (conftest's certificates), and the files."""
  servicer = _Servicer(token=TLS_TOKEN)
  server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
  prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(servicer, server)
  cert, key = (pathlib.Path(path).read_bytes() for path in tls_files["server"])
  server_credentials = grpc.ssl_server_credentials(
    [(key, cert)], root_certificates=pathlib.Path(tls_files["ca"]).read_bytes(), require_client_auth=True
  )
  port = server.add_secure_port("127.0.0.1:0", server_credentials)
  server.start()
  yield servicer, f"localhost:{port}", tls_files
  server.stop(0).wait()


def _credentials(files, ca="ca", client="client", token="token"):
  cert, key = files[client] if client else (None, None)
  return tensor_rpc.ChannelCredentials(ca_file=files[ca], cert_file=cert, key_file=key, token_file=files[token])


def test_mutual_tls_and_a_token_reach_a_secure_server_and_the_token_stays_out_of_the_graph(tls_peer):
  servicer, address, files = tls_peer
  x = np.array([1.0, 2.0, 5.0], np.float32)
  (y,) = _run(address, x, credentials=_credentials(files))
  np.testing.assert_array_equal(y.numpy(), [2.5, 3.0, 4.5])
  assert servicer.peer_identities[-1] == [b"actor-0"]  # the client certificate was presented and verified

  @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
  def graph(x):
    return remote_predict.run(
      ["x"], [x], ["y"], address, "half_plus_two", output_types=[tf.float32], credentials=_credentials(files)
    )[0]

  assert graph(tf.constant([4.0])).numpy().tolist() == [4.0]
  graph_def = graph.get_concrete_function().graph.as_graph_def().SerializeToString()
  assert files["token"].encode() in graph_def and TLS_TOKEN.encode() not in graph_def


@pytest.mark.parametrize(
  "wrong, code, needle",
  [
    (dict(token="wrong_token"), 16, "bad or missing token"),
    (dict(ca="other_ca"), 14, "the server's certificate is not trusted"),  # not signed by the CA we trust
    (dict(client="stranger"), 14, "client certificate"),  # ours is not signed by the CA the server trusts
    (dict(client=None), 14, "client certificate"),  # mutual TLS: none at all
  ],
)
def test_wrong_credentials_come_back_as_a_status_at_once(tls_peer, wrong, code, needle):
  servicer, address, files = tls_peer
  answered = len(servicer.requests)
  start = time.monotonic()
  got, message, (y,) = remote_predict.run_returning_status(
    ["x"], [np.ones([1], np.float32)], ["y"], address, "half_plus_two", max_rpc_deadline_millis=20_000,
    output_types=[tf.float32], credentials=_credentials(files, **wrong),
  )  # fmt: skip
  took = time.monotonic() - start
  assert int(got) == code and needle in message.numpy().decode(), (int(got), message.numpy())
  assert took < 5.0 and float(y) == 0.0 and len(servicer.requests) == answered
