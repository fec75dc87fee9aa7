"""TLS, mutual TLS and bearer tokens in the op, and the "run complete" answer.

Certificates come from trustme (conftest's tls_files: a throwaway CA per test session); every server
listens on loopback only. Failures must be fast and say why.
"""

import os
import time

import numpy as np
import portpicker
import pytest
import tensorflow as tf
from helpers import TLS_TOKEN, run_python, run_pythons

from seed import grpc


@tf.function(input_signature=[tf.TensorSpec([], tf.int32)])
def inc(x):
  return x + 1


@pytest.fixture
def serve(sock_dir):
  """serve(credentials) -> (server, "localhost:port", "unix:..."); shut down afterwards."""
  servers = []

  def start(credentials):
    port = portpicker.pick_unused_port()
    unix = f"unix:{sock_dir}/s{port}.sock"
    server = grpc.Server([f"localhost:{port}", unix], credentials=credentials)
    server.bind(inc)
    server.start()
    servers.append(server)
    return server, f"localhost:{port}", unix

  yield start
  for s in servers:
    s.shutdown()


def tls_server(tls_files, **kwargs):
  return grpc.ServerCredentials(cert_file=tls_files["server"][0], key_file=tls_files["server"][1], **kwargs)


def fails_fast(address, credentials, error, *needles, within=5.0):
  start = time.monotonic()
  with pytest.raises(error) as info:
    grpc.Client(address, credentials=credentials, connect_timeout=30).inc(1)
  assert time.monotonic() - start < within, f"took {time.monotonic() - start:.1f}s: {info.value}"
  for needle in needles:
    assert needle in str(info.value), str(info.value)
  return str(info.value)


def test_tls_round_trip_eager_in_graph_and_unix_on_the_same_server(tls_files, serve):
  server, tcp, unix = serve(tls_server(tls_files))
  client = grpc.Client(tcp, credentials=grpc.ChannelCredentials(ca_file=tls_files["ca"]))
  assert client.inc(41).numpy() == 42
  by_ip = grpc.Client(
    tcp.replace("localhost", "127.0.0.1"), credentials=grpc.ChannelCredentials(ca_file=tls_files["ca"])
  )
  assert by_ip.inc(1).numpy() == 2  # the certificate's IP SAN

  @tf.function
  def twice(x):
    return client.inc(client.inc(x))

  assert twice(tf.constant(1)).numpy() == 3
  assert grpc.Client(unix).inc(7).numpy() == 8  # unix socket: no credentials


def test_tls_with_64_concurrent_callers_and_a_large_payload(tls_files, serve):
  @tf.function(input_signature=[tf.TensorSpec([None], tf.uint8)])
  def echo(x):
    return x

  port = portpicker.pick_unused_port()
  server = grpc.Server([f"localhost:{port}"], credentials=tls_server(tls_files, token_file=tls_files["token"]))
  server.bind(echo)
  server.start()
  try:
    creds = grpc.ChannelCredentials(ca_file=tls_files["ca"], token_file=tls_files["token"])
    client = grpc.Client(f"localhost:{port}", credentials=creds)
    big = np.random.default_rng(0).integers(0, 255, 4 << 20, dtype=np.uint8)
    np.testing.assert_array_equal(client.echo(big).numpy(), big)
    from helpers import run_parallel

    results = run_parallel(lambda i: int(client.echo(np.full(16, i, np.uint8)).numpy()[0]), [(i,) for i in range(64)])
    assert results == list(range(64))
  finally:
    server.shutdown()


def test_token_missing_or_wrong_is_unauthenticated_and_counted_and_others_keep_working(tls_files, serve):
  server, tcp, unix = serve(tls_server(tls_files, token_file=tls_files["token"]))
  good = grpc.Client(tcp, credentials=grpc.ChannelCredentials(ca_file=tls_files["ca"], token_file=tls_files["token"]))
  assert good.inc(1).numpy() == 2
  fails_fast(tcp, grpc.ChannelCredentials(ca_file=tls_files["ca"]), tf.errors.UnauthenticatedError, "auth token")
  fails_fast(
    tcp,
    grpc.ChannelCredentials(ca_file=tls_files["ca"], token_file=tls_files["wrong_token"]),
    tf.errors.UnauthenticatedError,
    "auth token",
  )
  assert good.inc(2).numpy() == 3
  assert grpc.Client(unix).inc(3).numpy() == 4  # unix peers need no token
  assert server.stats()["__server__"]["refused_calls"] == 2


def test_token_from_an_environment_variable(tls_files, serve, monkeypatch):
  monkeypatch.setenv("SEED_TEST_TOKEN", TLS_TOKEN)
  _, tcp, _ = serve(tls_server(tls_files, token_env="SEED_TEST_TOKEN"))
  creds = grpc.ChannelCredentials(ca_file=tls_files["ca"], token_env="SEED_TEST_TOKEN")
  assert grpc.Client(tcp, credentials=creds).inc(1).numpy() == 2
  monkeypatch.delenv("SEED_TEST_TOKEN")
  with pytest.raises(ValueError, match="SEED_TEST_TOKEN"):
    grpc.ChannelCredentials(ca_file=tls_files["ca"], token_env="SEED_TEST_TOKEN").attrs()


def test_plaintext_and_tls_mismatches_fail_fast_naming_tls(tls_files, serve):
  _, tls_tcp, _ = serve(tls_server(tls_files))
  _, plain_tcp, _ = serve(None)
  fails_fast(tls_tcp, None, tf.errors.UnavailableError, "TLS")
  fails_fast(
    plain_tcp, grpc.ChannelCredentials(ca_file=tls_files["ca"]), tf.errors.UnavailableError, "does not use TLS"
  )


def test_bad_server_certificates_fail_fast_naming_the_cause(tls_files, serve):
  _, tcp, _ = serve(tls_server(tls_files))
  fails_fast(tcp, grpc.ChannelCredentials(ca_file=tls_files["other_ca"]), tf.errors.UnavailableError, "not trusted")
  fails_fast(
    tcp,
    grpc.ChannelCredentials(ca_file=tls_files["ca"], server_name="learner"),
    tf.errors.UnavailableError,
    "not issued for this host name",
  )
  _, expired, _ = serve(grpc.ServerCredentials(cert_file=tls_files["expired"][0], key_file=tls_files["expired"][1]))
  fails_fast(expired, grpc.ChannelCredentials(ca_file=tls_files["ca"]), tf.errors.UnavailableError, "expired")


def test_mutual_tls_needs_a_client_certificate_the_server_trusts(tls_files, serve):
  _, tcp, _ = serve(tls_server(tls_files, client_ca_file=tls_files["ca"]))
  ok = grpc.ChannelCredentials(
    ca_file=tls_files["ca"], cert_file=tls_files["client"][0], key_file=tls_files["client"][1]
  )
  assert grpc.Client(tcp, credentials=ok).inc(1).numpy() == 2
  fails_fast(tcp, grpc.ChannelCredentials(ca_file=tls_files["ca"]), tf.errors.UnavailableError, "TLS")
  stranger = grpc.ChannelCredentials(
    ca_file=tls_files["ca"], cert_file=tls_files["stranger"][0], key_file=tls_files["stranger"][1]
  )
  fails_fast(tcp, stranger, tf.errors.UnavailableError, "TLS")
  assert grpc.Client(tcp, credentials=ok).inc(2).numpy() == 3


def test_missing_or_unreadable_files_are_errors_at_start_naming_the_file(tls_files, tmp_path):
  missing = str(tmp_path / "nope.crt")
  with pytest.raises(FileNotFoundError, match="nope.crt"):
    grpc.Server(["localhost:0"], credentials=grpc.ServerCredentials(cert_file=missing, key_file=tls_files["server"][1]))
  with pytest.raises(FileNotFoundError, match="nope.crt"):
    grpc.Client("localhost:1", credentials=grpc.ChannelCredentials(ca_file=missing))
  with pytest.raises(FileNotFoundError, match="nope.crt"):
    grpc.Server(["localhost:0"], credentials=tls_server(tls_files, token_file=missing))
  empty = tmp_path / "empty"
  empty.write_text("")
  with pytest.raises(ValueError, match="empty"):
    grpc.Server(["localhost:0"], credentials=tls_server(tls_files, token_file=str(empty)))
  with pytest.raises(ValueError, match="both cert_file and key_file"):
    grpc.ServerCredentials(cert_file=tls_files["server"][0])
  # A file that is there but not a certificate fails at start, naming the address.
  garbage = tmp_path / "garbage.crt"
  garbage.write_text("not a certificate\n")
  server = grpc.Server(
    [f"localhost:{portpicker.pick_unused_port()}"],
    credentials=grpc.ServerCredentials(cert_file=str(garbage), key_file=tls_files["server"][1]),
  )
  server.bind(inc)
  with pytest.raises(tf.errors.OpError, match="could not"):
    server.start()


def test_savedmodel_calls_a_tls_server_with_a_token_that_is_not_in_the_model(tls_files, serve, tmp_path):
  _, tcp, _ = serve(tls_server(tls_files, token_file=tls_files["token"]))
  client = grpc.Client(tcp, credentials=grpc.ChannelCredentials(ca_file=tls_files["ca"], token_file=tls_files["token"]))

  class Remote(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([], tf.int32)])
    def __call__(self, x):
      return client.inc(x) * 10

  path = str(tmp_path / "model")
  tf.saved_model.save(Remote(), path)
  for root, _, names in os.walk(path):
    for name in names:
      with open(os.path.join(root, name), "rb") as f:
        assert TLS_TOKEN.encode() not in f.read(), f"the token leaked into {name}"
  r = run_python(
    f"import tensorflow as tf\nfrom seed import grpc\ngrpc._ops()\n"
    f"print('result', int(tf.saved_model.load({path!r})(tf.constant(4))))"
  )
  assert "result 50" in r.stdout, r.stderr[-3000:]


def test_refused_calls_are_logged_with_the_peer_and_never_the_token(tls_files):
  port = portpicker.pick_unused_port()
  code = f"""
import time, tensorflow as tf
from seed import grpc
@tf.function(input_signature=[tf.TensorSpec([], tf.int32)])
def inc(x):
  return x + 1
s = grpc.Server(["localhost:{port}"], credentials=grpc.ServerCredentials(
    cert_file={tls_files["server"][0]!r}, key_file={tls_files["server"][1]!r}, token_file={tls_files["token"]!r}))
s.bind(inc)
s.start()
try:
  grpc.Client("localhost:{port}", credentials=grpc.ChannelCredentials(ca_file={tls_files["ca"]!r}))
except tf.errors.UnauthenticatedError:
  print("refused")
print("stats", s.stats()["__server__"]["refused_calls"])
s.shutdown()
"""
  r = run_python(code, env={"TF_CPP_MIN_LOG_LEVEL": "0"})
  assert "refused" in r.stdout and "stats 1" in r.stdout, r.stdout + r.stderr[-3000:]
  assert "refused a call from ipv4:127.0.0.1" in r.stderr, r.stderr[-3000:]
  assert TLS_TOKEN not in r.stdout + r.stderr


def test_run_complete_is_a_distinct_status_for_calls_and_new_clients(tls_files, serve):
  server, tcp, unix = serve(tls_server(tls_files))
  client = grpc.Client(tcp, credentials=grpc.ChannelCredentials(ca_file=tls_files["ca"]))
  assert client.inc(1).numpy() == 2
  server.complete()
  with pytest.raises(tf.errors.OutOfRangeError) as info:
    client.inc(1)
  assert grpc.is_run_complete(info.value)
  with pytest.raises(tf.errors.OutOfRangeError) as info:
    grpc.Client(unix)
  assert grpc.is_run_complete(info.value)
  stats = server.stats()["__server__"]
  assert stats["complete"] == 1 and stats["completed_calls"] == 2
  assert not grpc.is_run_complete(tf.errors.OutOfRangeError(None, None, "end of sequence"))


def test_process_exits_cleanly_with_tls_channels_still_failing(tls_files, serve):
  """OpenSSL's atexit cleanup is disabled: exiting while channels retry handshakes must not crash."""
  _, tcp, _ = serve(tls_server(tls_files))
  code = f"""
import tensorflow as tf
from seed import grpc
for i in range(40):
  try:
    grpc.Client("{tcp}", credentials=grpc.ChannelCredentials(ca_file={tls_files["other_ca"]!r}, server_name=f"h{{i}}"))
  except tf.errors.UnavailableError:
    pass
print("done")
"""
  for r in run_pythons([code] * 3):
    assert r.returncode == 0 and "done" in r.stdout, r.stderr[-3000:]
