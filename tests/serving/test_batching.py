"""seed.serving.batching: the Batcher in process, and concurrent requests to a --enable_batching server."""

import threading
import time

import numpy as np
import pytest

import grpc
from seed.serving.batching import Batcher
from seed.serving.errors import ServingError
from tests.serving.serving_helpers import outputs, predict_request, rpc_error


def test_batcher_gives_every_caller_its_rows():
  batcher = Batcher(max_batch_size=4, timeout=0.02)
  runs = []

  def fn(inputs):
    runs.append(len(inputs["x"]))
    time.sleep(0.001)
    return {"y": inputs["x"] * 10, "n": np.full([len(inputs["x"])], len(inputs["x"]))}

  def call(i):
    rows = 1 + i % 3
    x = np.arange(i * 10, i * 10 + rows)
    out, batch_rows = batcher.run("key", fn, {"x": x}, rows)
    assert out["y"].tolist() == (x * 10).tolist() and (out["n"] == batch_rows).all()
    return batch_rows

  results = [None] * 40
  threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, call(i))) for i in range(40)]
  for t in threads:
    t.start()
  for t in threads:
    t.join(30)
  assert all(r is not None for r in results), "a caller never got its answer"
  assert max(runs) <= 4 and sum(runs) == sum(1 + i % 3 for i in range(40)) and len(runs) < 40

  def failing(inputs):
    raise ServingError(grpc.StatusCode.INTERNAL, "boom")

  with pytest.raises(ServingError, match="boom"):
    batcher.run("other", failing, {"x": np.ones([1])}, 1)


# --- batching -----------------------------------------------------------------------------------------


def test_concurrent_requests_are_batched(batch_server):
  n_grpc, n_rest = 8, 2
  barrier = threading.Barrier(n_grpc + n_rest)
  results: dict[int, object] = {}

  def call_grpc(i):
    x = np.full([1, 3], i, np.float32)
    barrier.wait()
    try:
      results[i] = outputs(batch_server.predict.Predict(predict_request("batch", {"x": x}), timeout=60))
    except grpc.RpcError as e:
      results[i] = e

  def call_rest(i):
    barrier.wait()
    code, body = batch_server.rest("POST", "/v1/models/batch:predict", {"instances": [[i, i, i]]})
    results[i] = body["predictions"][0] if code == 200 else body

  threads = [threading.Thread(target=call_grpc, args=(i,)) for i in range(n_grpc)]
  threads += [threading.Thread(target=call_rest, args=(n_grpc + i,)) for i in range(n_rest)]
  for t in threads:
    t.start()
  for t in threads:
    t.join(120)
  sizes = []
  for i in range(n_grpc):
    out = results[i]
    assert isinstance(out, dict), out
    np.testing.assert_allclose(out["y"], np.full([1, 3], 2.0 * i))  # this caller's row, not another's
    sizes.append(int(out["batch_size"][0]))
  for i in range(n_grpc, n_grpc + n_rest):
    assert results[i]["y"] == [2.0 * i] * 3, results[i]
    sizes.append(results[i]["batch_size"])
  assert max(sizes) > 1 and max(sizes) <= 4, sizes  # merged, never past --max_batch_size
  metrics = batch_server.metrics()
  requests = metrics['seed_serve_requests_total{model_name="batch"}']
  runs = metrics['seed_serve_runs_total{model_name="batch"}']
  assert requests == n_grpc + n_rest and runs < requests
  assert metrics['seed_serve_batched_requests_total{model_name="batch"}'] >= 2

  # Larger than max_batch_size: runs alone, still correct.
  x = np.arange(18, dtype=np.float32).reshape(6, 3)
  out = outputs(batch_server.predict.Predict(predict_request("batch", {"x": x}), timeout=60))
  np.testing.assert_allclose(out["y"], 2 * x)
  assert out["batch_size"].tolist() == [6] * 6
  # Errors in one request do not touch the batch machinery.
  e = rpc_error(batch_server.predict.Predict, predict_request("batch", {"x": np.ones([1, 2], np.float32)}))
  assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "input 'x'" in e.details()
