"""seed.serve's limits: oversize bodies and messages, deep JSON, slow and idle REST clients.

The batching server runs with --max_request_bytes=LIMIT_BYTES and --rest_read_timeout=READ_TIMEOUT.
"""

from __future__ import annotations

import json
import socket
import time

import numpy as np

import grpc
from tests.serving.serving_helpers import LIMIT_BYTES, READ_TIMEOUT, outputs, predict_request, rpc_error

PREDICT = "/v1/models/batch:predict"
VALID = {"instances": [[1.0, 2.0, 3.0]]}


def _raw(port: int, data: bytes, wait: float = 10.0) -> tuple[int, dict, bool]:
  """Sends raw bytes; (HTTP status, JSON body, whether the server then closed the connection)."""
  with socket.create_connection(("127.0.0.1", port), timeout=wait) as s:
    s.sendall(data)
    received = b""
    closed = False
    while True:
      try:
        chunk = s.recv(65536)
      except TimeoutError:
        break
      if not chunk:
        closed = True
        break
      received += chunk
      head, _, body = received.partition(b"\r\n\r\n")
      length = [
        int(v) for k, v in (h.split(b":", 1) for h in head.split(b"\r\n")[1:]) if k.lower() == b"content-length"
      ]
      if length and len(body) >= length[0]:
        s.settimeout(1.0)  # the whole answer is in: does the server close the connection now?
  head, _, body = received.partition(b"\r\n\r\n")
  return int(head.split()[1]), json.loads(body), closed


def _post_head(length: int | str, extra: str = "") -> bytes:
  return f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n{extra}\r\n".encode()


def _still_serves(server) -> None:
  assert server.rest("POST", PREDICT, VALID) == (200, {"predictions": [{"y": [2.0, 4.0, 6.0], "batch_size": 1}]})


def test_a_body_over_max_request_bytes_is_413_from_its_content_length_without_being_read(batch_server):
  start = time.monotonic()
  # Announces a gigabyte and sends none of it: the answer cannot have waited for the body.
  code, body, closed = _raw(batch_server.rest_port, _post_head(10**9))
  assert code == 413 and f"--max_request_bytes={LIMIT_BYTES}" in body["error"] and closed
  assert time.monotonic() - start < READ_TIMEOUT
  # One byte over is refused; exactly at the limit is not refused for its size. (A refused body is
  # not sent here: the server closes without reading it, which can reset a connection with data in flight.)
  code, body, closed = _raw(batch_server.rest_port, _post_head(LIMIT_BYTES + 1))
  assert code == 413 and closed
  padded = json.dumps(VALID).encode().ljust(LIMIT_BYTES)
  code, body, _ = _raw(batch_server.rest_port, _post_head(len(padded)) + padded)
  assert code == 200, body
  _still_serves(batch_server)


def test_bodies_without_a_usable_length_are_refused(batch_server):
  code, body, closed = _raw(batch_server.rest_port, _post_head(5, "Transfer-Encoding: chunked\r\n") + b"0\r\n\r\n")
  assert code == 411 and "Content-Length" in body["error"] and closed
  for bad in ("-5", "1e3", "abc"):
    code, body, closed = _raw(batch_server.rest_port, _post_head(bad))
    assert code == 400 and "bad Content-Length" in body["error"] and closed, bad
  _still_serves(batch_server)


def test_a_grpc_message_over_max_request_bytes_is_resource_exhausted(batch_server):
  rows = LIMIT_BYTES // 12 + 1  # float32 [rows, 3]: just over the limit
  err = rpc_error(batch_server.predict.Predict, predict_request("batch", {"x": np.ones([rows, 3], np.float32)}))
  assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err
  small = batch_server.predict.Predict(predict_request("batch", {"x": np.ones([2, 3], np.float32)}), timeout=60)
  assert outputs(small)["batch_size"].tolist() == [2, 2]


def test_json_nested_too_deeply_is_400_not_500(server):
  for depth in (100_000, 5_000, 80):
    raw = b'{"instances": ' + b"[" * depth + b"1.0" + b"]" * depth + b"}"
    code, body = server.rest("POST", "/v1/models/half:predict", raw=raw)
    assert code == 400, (depth, code, body)
  code, body = server.rest("POST", "/v1/models/half:predict", raw=b'{"instances": ' + b"[" * 100_000)
  assert code == 400 and "error" in body
  # Deeper than the signature's rank but within what numpy holds: the shape is named.
  code, body = server.rest("POST", "/v1/models/half:predict", {"instances": [[[1.0]]]})
  assert code == 400 and "input 'x' has shape [1, 1, 1]" in body["error"]
  # Strings are decoded recursively too.
  code, body = server.rest(
    "POST",
    "/v1/models/multi:predict",
    raw=b'{"signature_name": "echo", "instances": ' + b"[" * 5000 + b'"a"' + b"]" * 5000 + b"}",
  )
  assert code == 400
  assert server.rest("POST", "/v1/models/half:predict", {"instances": [0.0]}) == (200, {"predictions": [2.0]})


def test_a_client_that_never_finishes_its_body_times_out_and_frees_its_thread(batch_server):
  start = time.monotonic()
  code, body, closed = _raw(batch_server.rest_port, _post_head(100) + b'{"inst', wait=READ_TIMEOUT + 10)
  waited = time.monotonic() - start
  assert code == 408 and "not received within" in body["error"] and closed
  assert READ_TIMEOUT - 0.5 < waited < READ_TIMEOUT + 5
  _still_serves(batch_server)


def test_a_thousand_idle_connections_do_not_starve_real_requests_and_are_closed(batch_server):
  idle = []
  try:
    for _ in range(1000):
      idle.append(socket.create_connection(("127.0.0.1", batch_server.rest_port), timeout=10))
    start = time.monotonic()
    for _ in range(5):
      _still_serves(batch_server)
    assert time.monotonic() - start < 10
    # Every idle connection is closed by the server once it has been idle for --rest_read_timeout.
    deadline = time.monotonic() + READ_TIMEOUT + 20
    for s in idle:
      s.settimeout(max(0.1, deadline - time.monotonic()))
      assert s.recv(1) == b""
  finally:
    for s in idle:
      s.close()
  _still_serves(batch_server)
