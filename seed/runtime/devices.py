"""Which devices a learner trains and runs inference on, and the tf.distribute strategy for training.

Three runtime fields decide it (documented in seed/runtime/config.py):
`logical_cpu_devices` splits the host CPU into N logical devices (how the
multi-device code runs on a CPU host), `training_devices` and
`inference_devices` say how many devices do each job. The candidates are the
accelerators (TPU cores, else GPUs); on a host without any, the (logical) CPUs.
When the host has enough devices, inference devices come after the training
ones (SEED's split of a TPU host); otherwise they are the first training devices
(shared). The per-env store and the replay always stay on the host CPU.

Training runs under one strategy made by `make_strategy` (OneDeviceStrategy for
one device, MirroredStrategy for several, TPUStrategy on a TPU). A learner takes
the factory as an argument, so tests replace it (a TPUStrategy cannot be made
without a TPU) and benchmarks compare against the plain, strategy-less path.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import ml_collections

from seed.runtime.agent_package import AgentPackage

HOST = "/device:CPU:0"

StrategyFactory = Callable[["DevicePlan"], object]


@dataclasses.dataclass(frozen=True)
class DevicePlan:
  """Device names (e.g. "/device:GPU:1") for training and inference; `kind` is TPU, GPU or CPU."""

  kind: str
  training: tuple[str, ...]
  inference: tuple[str, ...]

  @property
  def shared(self) -> bool:
    """True when some inference device also trains."""
    return bool(set(self.training) & set(self.inference))


def configure_logical_cpus(config: ml_collections.ConfigDict) -> None:
  """Splits the host CPU into config.logical_cpu_devices devices; must run before TF initializes them."""
  n = config.logical_cpu_devices
  if not n:
    return
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  cpu = tf.config.list_physical_devices("CPU")[0]
  current = tf.config.get_logical_device_configuration(cpu)
  if current is not None and len(current) == n:
    return  # already split this way (a second learner in the same process)
  try:
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(n)])
  except RuntimeError as e:
    have = len(current) if current else 1
    raise ValueError(
      f"config.logical_cpu_devices={n}: TensorFlow already initialized its devices in this process "
      f"({have} CPU device(s)); it must be set before the first TensorFlow op runs"
    ) from e


def _physical_counts() -> tuple[str, int]:
  """(kind, count) of the accelerators this host has: TPU, else GPU; ("CPU", 0) for none."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  for kind in ("TPU", "GPU"):
    n = len(tf.config.list_physical_devices(kind))
    if n:
      return kind, n
  return "CPU", 0


def plan(config: ml_collections.ConfigDict, physical: tuple[str, int] | None = None) -> DevicePlan:
  """The devices for config's training_devices / inference_devices (validated counts); ValueError naming the field.

  Does not initialize TensorFlow's devices (it only lists physical ones), so it
  runs in a launcher before any process starts. `physical` = (kind, count)
  overrides what the host has (tests).
  """
  kind, count = physical if physical is not None else _physical_counts()
  if count == 0:  # no accelerator: the CPU, split or not
    kind, count = "CPU", config.logical_cpu_devices or 1
  what = f"{count} {kind} device(s)" + (" (config.logical_cpu_devices)" if kind == "CPU" else "")
  train = config.training_devices or (count if kind != "CPU" else 1)
  if train > count:
    raise ValueError(f"config.training_devices={train} but this host has {what}")
  infer = config.inference_devices
  if infer > count:
    raise ValueError(f"config.inference_devices={infer} but this host has {what}")
  names = [f"/device:{kind}:{i}" for i in range(count)]
  if not infer:  # 0: the training devices
    return DevicePlan(kind, tuple(names[:train]), tuple(names[:train]))
  first_inference = train if train + infer <= count else 0
  return DevicePlan(kind, tuple(names[:train]), tuple(names[first_inference : first_inference + infer]))


# One strategy per device list and process: two MirroredStrategy objects over the same devices
# number their collectives alike, so the all-reduces of one could meet the other's and fail.
_strategies: dict[tuple[str, ...], object] = {}


def make_strategy(devices: DevicePlan):
  """The training strategy: TPUStrategy on a TPU, else Mirrored over several devices, else OneDevice.

  A second call for the same training devices returns the same strategy.
  """
  if devices.training not in _strategies:
    _strategies[devices.training] = _new_strategy(devices)
  return _strategies[devices.training]


def _new_strategy(devices: DevicePlan):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  if devices.kind == "TPU":
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu="local")
    tf.config.experimental_connect_to_cluster(resolver)
    topology = tf.tpu.experimental.initialize_tpu_system(resolver)
    assignment = tf.tpu.experimental.DeviceAssignment.build(topology, num_replicas=len(devices.training))
    return tf.distribute.TPUStrategy(resolver, experimental_device_assignment=assignment)
  if len(devices.training) == 1:
    return tf.distribute.OneDeviceStrategy(devices.training[0])
  return tf.distribute.MirroredStrategy(list(devices.training))


def check(
  config: ml_collections.ConfigDict, agent: AgentPackage, physical: tuple[str, int] | None = None
) -> DevicePlan:
  """plan(config), and the agent's split batch a multiple of the training devices; ValueError naming the field."""
  devices = plan(config, physical)
  value = agent.replica_batch_value(config)
  if value % len(devices.training):
    raise ValueError(
      f"config.{agent.replica_batch}={value} must be a multiple of the {len(devices.training)} training devices "
      "(each trains on an equal share of the batch)"
    )
  return devices


def needs_check(config: ml_collections.ConfigDict) -> bool:
  """False for the default single-device fields (checking them would import TensorFlow for nothing)."""
  return bool(config.training_devices or config.inference_devices or config.logical_cpu_devices)
