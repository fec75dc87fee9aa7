"""The learner on several logical CPUs: device plan, round-robin inference, checkpoints across device counts."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from helpers import REPO

from agents import registry
from configs import cartpole_vtrace
from seed import grpc
from seed.diagnostics import RecordedSource
from seed.runtime import devices, request
from seed.runtime import learner as learner_lib


def _config(training, inference, **fields):
  c = cartpole_vtrace.get_config()
  c.logical_cpu_devices, c.training_devices, c.inference_devices = 4, training, inference
  c.num_actors, c.env_batch_size, c.inference_batch_size = 1, 4, 4
  c.unroll_length, c.batch_size, c.unroll_queue_capacity = 5, 4, 8
  c.agent.mlp_sizes = (16,)
  for k, v in fields.items():
    c[k] = v
  return c


def _learner(tmp_path, config, name="run"):
  return learner_lib.Learner(config, str(tmp_path / name), registry.package(config.agent_name))


def _step_devices(fn) -> set[str]:
  """Devices of the MatMul ops (the policy network) in an inference function's graph."""
  graph = fn.get_concrete_function().graph
  return {op.device.split("device:")[-1] for op in graph.get_operations() if op.type == "MatMul"}


def test_separate_inference_devices_run_the_policy_and_alternate(tmp_path, sock_dir):
  learner = _learner(tmp_path, _config(2, 2))
  assert learner.devices.training == ("/device:CPU:0", "/device:CPU:1")
  assert learner.devices.inference == ("/device:CPU:2", "/device:CPU:3")
  assert isinstance(learner.strategy, tf.distribute.MirroredStrategy)
  assert [_step_devices(fn) for fn in learner.inference] == [{"CPU:2"}, {"CPU:3"}]
  # The per-env store stays on the host: its variables and its ops in the inference graph.
  assert learner.store.episode_length.device.endswith("CPU:0") and learner.frames_var.device.endswith("CPU:0")
  scatters = [op for op in learner.inference[0].get_concrete_function().graph.get_operations() if "Scatter" in op.type]
  assert scatters and all(op.device.endswith("CPU:0") for op in scatters)

  server = grpc.Server([f"unix:{sock_dir}/l.sock"])
  server.bind(learner.inference, name=request.METHOD, pad_mask=True)
  with server:
    client = grpc.Client(f"unix:{sock_dir}/l.sock")
    n = 4
    for i in range(10):
      req = request.InferenceRequest(
        np.arange(n, dtype=np.int32),
        np.full(n, 7, np.int64),
        np.zeros(n, np.float32),
        np.zeros(n, bool),
        np.zeros(n, bool),
        np.full(n, i == 0),
        np.random.default_rng(i).normal(size=(n, 4)).astype(np.float32),
      )
      actions = client.inference(*req).numpy()
      assert actions.shape == (n,) and set(actions) <= {0, 1}
    assert server.stats()[request.METHOD]["function_runs"] == [5, 5]
  # Both devices' steps went into the one host store: every env's episode is 10 steps in.
  assert learner.store.episode_length.numpy().tolist() == [9] * n, learner.store.episode_length.numpy()


def test_too_few_devices_for_both_jobs_share_them(tmp_path):
  plan = devices.plan(_config(3, 2))
  assert plan.training == ("/device:CPU:0", "/device:CPU:1", "/device:CPU:2")
  assert plan.inference == ("/device:CPU:0", "/device:CPU:1") and plan.shared
  learner = _learner(tmp_path, _config(2, 0, logical_cpu_devices=4))
  assert learner.devices.inference == learner.devices.training  # 0: the training devices
  assert [_step_devices(fn) for fn in learner.inference] == [{"CPU:0"}, {"CPU:1"}]


def _train(learner, steps=2):
  """`steps` learner steps on a fixed batch shaped like the learner's unrolls."""
  rng = np.random.default_rng(0)
  batch = tf.nest.map_structure(
    lambda s: (
      tf.constant(rng.normal(size=[4, *s.shape]), s.dtype) if s.dtype.is_floating else tf.zeros([4, *s.shape], s.dtype)
    ),
    learner.store.unroll_spec,
  )
  for _ in range(steps):
    learner.agent.learn(RecordedSource(batch))
    learner.train_steps.assign_add(1)


def test_checkpoint_restores_across_device_counts_and_exports_one_device_model(tmp_path):
  one = _learner(tmp_path, _config(1, 1))
  assert isinstance(one.strategy, tf.distribute.OneDeviceStrategy)
  _train(one)
  one.save()
  saved = [v.numpy() for v in one.agent.trainable_variables]

  two = _learner(tmp_path, _config(2, 2))
  two.checkpoint.restore(two.manager.latest_checkpoint).assert_existing_objects_matched()
  for a, b in zip(saved, two.agent.trainable_variables):
    for component in b.values:  # every replica's copy restored
      np.testing.assert_array_equal(component.numpy(), a)
  _train(two)
  two.save()
  trained = [v.numpy() for v in two.agent.trainable_variables]
  assert any(not np.array_equal(a, b) for a, b in zip(saved, trained))

  back = _learner(tmp_path, _config(1, 1))
  back.checkpoint.restore(back.manager.latest_checkpoint).assert_existing_objects_matched()
  for a, b in zip(trained, back.agent.trainable_variables):
    np.testing.assert_array_equal(b.numpy(), a)
  assert int(back.train_steps.numpy()) == 4

  # The 2-device learner's export serves in a process that has one CPU device.
  export = os.path.join(tmp_path, "run", "export", "4")
  code = (
    "import numpy as np, tensorflow as tf\n"
    f"fn = tf.saved_model.load({export!r}).signatures['serving_default']\n"
    "assert len(tf.config.list_logical_devices('CPU')) == 1\n"
    "out = fn(observation=tf.zeros([3, 4]), state_0=tf.zeros([3, 0]))\n"
    "print(sorted(out), out['action'].shape)\n"
  )
  spec = tf.saved_model.load(export).signatures["serving_default"].structured_input_signature[1]
  if "state_0" not in spec:
    code = code.replace(", state_0=tf.zeros([3, 0])", "")
  r = subprocess.run(
    [sys.executable, "-c", code],
    capture_output=True,
    text=True,
    timeout=120,
    cwd=REPO,
    env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
  )
  assert r.returncode == 0, r.stderr[-3000:]
  assert "'action'" in r.stdout and "(3,)" in r.stdout, r.stdout


def test_logical_devices_after_tensorflow_started_is_a_clear_error():
  tf.config.list_logical_devices()  # initializes TF's devices (if no test before did)
  with pytest.raises(ValueError, match=r"config.logical_cpu_devices=2: TensorFlow already initialized"):
    devices.configure_logical_cpus(_config(1, 1, logical_cpu_devices=2))
  devices.configure_logical_cpus(_config(1, 1))  # the split this process has: nothing to do
