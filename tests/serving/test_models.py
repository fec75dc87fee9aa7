"""seed.serving.models while serving: versions appearing (hot reload) and HandleReloadConfigRequest."""

import os
import shutil
import threading
import time

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_serving.apis import get_model_status_pb2, model_management_pb2

import grpc
from tests.serving.serving_helpers import (
  AVAILABLE,
  END,
  POLL_SECONDS,
  Half,
  model_config_text,
  outputs,
  predict_request,
  rpc_error,
  served_paths,
)

# --- versions appearing while serving -----------------------------------------------------------------


def test_hot_reload_while_requests_run(server, models):
  base = models["hot"]
  stop = threading.Event()
  seen: list[int] = []
  failures: list[str] = []
  lock = threading.Lock()

  def grpc_client():
    x = np.array([2.0], np.float32)
    while not stop.is_set():
      try:
        response = server.predict.Predict(predict_request("hot", {"x": x}), timeout=60)
        version = response.model_spec.version.value
        y = outputs(response)["y"]
        if not np.allclose(y, [1.0 + version]):  # Half(v) answers 0.5 * 2 + v
          failures.append(f"version {version} answered {y}")
        with lock:
          seen.append(version)
      except grpc.RpcError as e:
        failures.append(f"gRPC {e.code()}: {e.details()}")

  def rest_client():
    while not stop.is_set():
      code, body = server.rest("POST", "/v1/models/hot:predict", {"instances": [2.0]})
      if code != 200 or body["predictions"][0] not in (2.0, 4.0):
        failures.append(f"REST {code}: {body}")

  threads = [threading.Thread(target=grpc_client) for _ in range(3)] + [threading.Thread(target=rest_client)]
  for t in threads:
    t.start()
  try:
    time.sleep(1.0)
    # Partial exports: a numbered folder without saved_model.pb, and a <step>.tmp folder.
    os.makedirs(os.path.join(base, "4", "variables"))
    v3 = Half(3)
    tf.saved_model.save(v3, os.path.join(base, "3.tmp"), signatures=v3.signatures())
    time.sleep(3 * POLL_SECONDS)
    os.replace(os.path.join(base, "3.tmp"), os.path.join(base, "3"))  # complete: served from the next poll
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not seen or seen[-1] != 3):
      time.sleep(0.1)
    time.sleep(1.0)  # keep requests going across the unload of version 1
  finally:
    stop.set()
    for t in threads:
      t.join(60)
  assert not failures, failures[:5]
  assert seen[0] == 1 and seen[-1] == 3 and set(seen) == {1, 3}
  request = get_model_status_pb2.GetModelStatusRequest()
  request.model_spec.name = "hot"
  states = {s.version: s.state for s in server.models.GetModelStatus(request, timeout=60).model_version_status}
  assert states == {3: AVAILABLE, 1: END}  # 4 has no saved_model.pb: not a version

  # Completing folder 4 in place (a plain copy) makes it the newest version.
  tmp = os.path.join(models["root"], "half4")
  v4 = Half(4)
  tf.saved_model.save(v4, tmp, signatures=v4.signatures())
  shutil.rmtree(os.path.join(base, "4"))
  shutil.copytree(tmp, os.path.join(base, "4"))
  deadline = time.monotonic() + 60
  while time.monotonic() < deadline:
    response = server.predict.Predict(predict_request("hot", {"x": np.array([2.0], np.float32)}), timeout=60)
    if response.model_spec.version.value == 4:
      break
    time.sleep(0.1)
  assert response.model_spec.version.value == 4 and outputs(response)["y"][0] == 5.0


def test_reload_config_replaces_the_models(server, models):
  paths = served_paths(models)

  def reload(text: str):
    request = model_management_pb2.ReloadConfigRequest()
    text_format.Parse(text, request.config)
    return server.models.HandleReloadConfigRequest(request, timeout=120)

  x = {"x": np.array([1.0], np.float32)}
  bad = model_config_text({"half": paths["half"]}).replace('"tensorflow"', '"pytorch"')
  with pytest.raises(grpc.RpcError) as info:
    reload(bad)
  assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "pytorch" in info.value.details()
  multi = predict_request("multi", {"a": np.ones([1, 2], np.float32), "n": np.ones([1], np.int32)})
  server.predict.Predict(multi, timeout=60)
  try:
    smaller = {k: v for k, v in paths.items() if k != "multi"}
    smaller["renamed"] = paths["half"]
    response = reload(model_config_text(smaller))
    assert response.status.error_code == 0
    assert server.predict.Predict(predict_request("renamed", x), timeout=60).model_spec.version.value == 2
    e = rpc_error(server.predict.Predict, multi)
    assert e.code() == grpc.StatusCode.NOT_FOUND
    assert server.rest("GET", "/v1/models/renamed")[0] == 200
    assert server.rest("GET", "/v1/models/multi")[0] == 404
  finally:
    reload(model_config_text(paths))
  server.predict.Predict(multi, timeout=60)
  assert server.predict.Predict(predict_request("half", x, version=1), timeout=60).model_spec.version.value == 1
