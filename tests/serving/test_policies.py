"""V-trace CartPole policies served: played over gRPC like seed.evaluate, and bound to tensor RPC."""

import os

import numpy as np
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2

import envs
from seed import evaluate as ev
from seed.serving.models import Servable
from seed.serving.positional import positional_function
from tests.serving.serving_helpers import outputs, predict_request

# --- policies -----------------------------------------------------------------------------------------


def play_over_grpc(server, model: str, logdir: str, episodes: int) -> list[tuple[float, int]]:
  """Greedy episodes stepped through Predict, the recurrent state fed back like seed.evaluate does."""
  status = get_model_status_pb2.GetModelStatusRequest()
  status.model_spec.name = model
  version = server.models.GetModelStatus(status, timeout=60).model_version_status[0].version
  request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
  request.model_spec.name = model
  sig_map = get_model_metadata_pb2.SignatureDefMap()
  server.predict.GetModelMetadata(request, timeout=60).metadata["signature_def"].Unpack(sig_map)
  state_inputs = {k: v for k, v in sig_map.signature_def["serving_default"].inputs.items() if k.startswith("state_")}
  env = envs.make(ev.load_config(logdir).env, 0)
  results = []
  try:
    for i in range(episodes):
      obs, _ = env.reset(seed=i)
      state = {k: np.zeros([1] + [d.size for d in v.tensor_shape.dim[1:]], np.float32) for k, v in state_inputs.items()}
      total, length, done = 0.0, 0, False
      while not done:
        response = server.predict.Predict(
          predict_request(model, {"observation": obs[None].astype(np.float32), **state}, version=version), timeout=60
        )
        out = outputs(response)
        state = {k: out[k] for k in state}
        obs, reward, terminated, truncated, _ = env.step(int(out["greedy_action"][0]))
        total += float(reward)
        length += 1
        done = terminated or truncated
      results.append((total, length))
  finally:
    env.close()
  return results


def test_cartpole_policy_plays_like_evaluate(server, models):
  expected = ev.evaluate(models["cartpole_run"], episodes=2, seed=0, greedy=True, verbose=False)
  assert play_over_grpc(server, "cartpole", models["cartpole_run"], 2) == expected


def test_recurrent_policy_steps_its_state(server, models):
  expected = ev.evaluate(models["lstm_run"], episodes=2, seed=0, greedy=True, verbose=False)
  assert play_over_grpc(server, "cartpole_lstm", models["lstm_run"], 2) == expected


# --- calls from inside a graph ------------------------------------------------------------------------


def test_tensor_rpc_binding_of_a_recurrent_policy(models, sock_dir):
  from seed import grpc as tensor_rpc  # pylint: disable=g-import-not-at-top

  servable = Servable("lstm", 7, os.path.join(models["cartpole_lstm"], "7"))
  sig = servable.signatures["serving_default"]
  fn, _ = positional_function(sig)
  assert [s.name for s in fn.input_signature] == ["observation", "state_0", "state_1"]
  address = f"unix:{sock_dir}/policy.sock"
  server = tensor_rpc.Server([address])
  server.bind(fn, name="lstm", batched=False)
  server.start()
  try:
    obs, s0, s1 = np.ones([2, 4], np.float32), np.full([2, 8], 0.5, np.float32), np.zeros([2, 8], np.float32)
    out = tensor_rpc.Client(address, connect_timeout=30).lstm(obs, s0, s1)
    want = sig.fn(observation=obs, state_0=s0, state_1=s1)
    for k in ("logits", "value", "greedy_action", "state_0", "state_1"):
      np.testing.assert_allclose(out[k].numpy(), want[k].numpy(), rtol=1e-6)
  finally:
    server.shutdown()
