"""Device plans, the strategy factory, and bad device fields stopping a run before anything starts."""

import pytest
import tensorflow as tf
from test_train import CARTPOLE, _fails_before_anything_starts

from agents import registry
from configs import cartpole_vtrace
from seed.runtime import devices

_AGENT = registry.package("vtrace")  # cartpole_vtrace's agent: its batch is config.batch_size


def _config(training=0, inference=0, logical=0, **fields):
  c = cartpole_vtrace.get_config()
  c.training_devices, c.inference_devices, c.logical_cpu_devices = training, inference, logical
  for k, v in fields.items():
    c[k] = v
  return c


@pytest.mark.parametrize(
  "physical,fields,training,inference",
  [
    (("CPU", 0), {}, ["CPU:0"], ["CPU:0"]),  # the default: one CPU does both
    (("CPU", 0), {"logical": 4}, ["CPU:0"], ["CPU:0"]),  # 0 = one CPU when there is no accelerator
    (("CPU", 0), {"logical": 4, "training": 2, "inference": 2}, ["CPU:0", "CPU:1"], ["CPU:2", "CPU:3"]),
    (("CPU", 0), {"logical": 3, "training": 2, "inference": 2}, ["CPU:0", "CPU:1"], ["CPU:0", "CPU:1"]),
    (("GPU", 4), {}, ["GPU:0", "GPU:1", "GPU:2", "GPU:3"], ["GPU:0", "GPU:1", "GPU:2", "GPU:3"]),
    (("GPU", 4), {"training": 3, "inference": 1}, ["GPU:0", "GPU:1", "GPU:2"], ["GPU:3"]),
    (("GPU", 2), {"logical": 4, "training": 1, "inference": 1}, ["GPU:0"], ["GPU:1"]),  # accelerators first
    (("TPU", 8), {"training": 6, "inference": 2}, [f"TPU:{i}" for i in range(6)], ["TPU:6", "TPU:7"]),
  ],
)
def test_plan(physical, fields, training, inference):
  plan = devices.plan(_config(**fields), physical)
  assert plan.kind == training[0].split(":")[0]
  assert [d.split("device:")[-1] for d in plan.training] == training
  assert [d.split("device:")[-1] for d in plan.inference] == inference


def test_check_needs_the_split_batch_to_divide_over_training_devices():
  assert devices.check(_config(2, 0, 2, batch_size=16), _AGENT, ("CPU", 0)).training == (
    "/device:CPU:0",
    "/device:CPU:1",
  )
  with pytest.raises(ValueError, match=r"config.batch_size=15 must be a multiple of the 2 training devices"):
    devices.check(_config(2, 0, 2, batch_size=15, unroll_queue_capacity=32), _AGENT, ("CPU", 0))
  with pytest.raises(ValueError, match=r"config.training_devices=3 but this host has 2 GPU device"):
    devices.check(_config(3), _AGENT, ("GPU", 2))
  with pytest.raises(
    ValueError, match=r"config.inference_devices=5 but this host has 4 CPU device\(s\) \(config.logical"
  ):
    devices.check(_config(1, 5, 4), _AGENT, ("CPU", 0))


def test_strategy_factory_one_device_and_tpu(monkeypatch):
  monkeypatch.setattr(devices, "_strategies", {})
  one = devices.make_strategy(devices.DevicePlan("CPU", ("/device:CPU:0",), ("/device:CPU:0",)))
  assert isinstance(one, tf.distribute.OneDeviceStrategy)
  assert devices.make_strategy(devices.DevicePlan("CPU", ("/device:CPU:0",), ())) is one  # one per device list
  # A TPUStrategy needs a TPU: record what the factory asks TensorFlow for instead.
  calls = {}
  monkeypatch.setattr(tf.distribute.cluster_resolver, "TPUClusterResolver", lambda tpu: calls.setdefault("tpu", tpu))
  monkeypatch.setattr(tf.config, "experimental_connect_to_cluster", lambda r: calls.setdefault("connect", r))
  monkeypatch.setattr(tf.tpu.experimental, "initialize_tpu_system", lambda r: "topology")
  monkeypatch.setattr(
    tf.tpu.experimental.DeviceAssignment, "build", lambda topology, num_replicas: (topology, num_replicas)
  )
  monkeypatch.setattr(
    tf.distribute, "TPUStrategy", lambda r, experimental_device_assignment: ("tpu", experimental_device_assignment)
  )
  plan = devices.plan(_config(6, 2), ("TPU", 8))
  assert devices.make_strategy(plan) == ("tpu", ("topology", 6))
  assert calls == {"tpu": "local", "connect": "local"}


@pytest.mark.parametrize(
  "args,message",
  [
    (
      ["--config.training_devices=3", "--config.logical_cpu_devices=2"],
      "config.training_devices=3 but this host has 2",
    ),
    (["--config.inference_devices=2"], "config.inference_devices=2 but this host has 1 CPU device(s)"),
    (["--config.training_devices=-1"], "config.training_devices must be an integer >= 0, got -1"),
    (["--config.logical_cpu_devices=-2"], "config.logical_cpu_devices must be an integer >= 0, got -2"),
    (
      ["--config.training_devices=2", "--config.logical_cpu_devices=2", "--config.batch_size=15"],
      "config.batch_size=15 must be a multiple of the 2 training devices",
    ),
  ],
)
def test_bad_device_fields_fail_before_any_process_starts(tmp_path, args, message):
  _fails_before_anything_starts(tmp_path, [f"--config={CARTPOLE}", *args], message)
