"""Runtime configuration shared by every agent: fields, defaults and checks.

A run's config is an ml_collections ConfigDict built by a file in `configs/`
(`get_config()`), made of three parts: the runtime fields below, `env` (see
`envs.env_config`) and `agent` (the agent's own `config.py`). The same config
runs locally or on many hosts; only the command-line mode flags differ.
"""

from __future__ import annotations

import difflib

import ml_collections
from ml_collections import config_dict

import envs
from seed.runtime.agent_package import AgentPackage


def runtime_config() -> ml_collections.ConfigDict:
  """Defaults for the generic learner/actor runtime; every field documented."""
  c = ml_collections.ConfigDict()
  # Which agent package under agents/ plugs into the runtime ("vtrace", ...).
  c.agent_name = "vtrace"
  # Number of actor processes. The learner keeps state for
  # num_actors * env_batch_size environments, so it must match on every host.
  c.num_actors = 2
  # Environments stepped by each actor; one inference call per step carries all of them.
  c.env_batch_size = 8
  # Slots per batched inference call on the learner. A call from one actor carries
  # env_batch_size slots, so this must be at least env_batch_size.
  c.inference_batch_size = 16
  # Seconds after which a partially filled inference batch runs anyway, so a slow
  # or dead actor never stalls the others.
  c.inference_flush_timeout = 0.005
  # Steps per training unroll (each unroll stores unroll_length + 1 steps;
  # consecutive unrolls share the agent's sequence_overlap steps: 1 for most
  # agents, so the last step of one is the first of the next; more for R2D2).
  c.unroll_length = 20
  # Unrolls per training batch.
  c.batch_size = 32
  # Capacity of the queue of completed unrolls, in unrolls. Full queue = actors
  # wait (backpressure), so a slow learner never trains on very stale data.
  c.unroll_queue_capacity = 64
  # Training stops after this many environment frames (env steps x frame skip).
  c.total_environment_frames = 1_000_000
  # Optional: stop early once the mean return of the last 50 episodes reaches this.
  c.stop_mean_return = config_dict.placeholder(float)
  # Random seed for network init, sampling and environments.
  c.seed = 0
  # Seconds between progress lines / TensorBoard summaries.
  c.log_interval = 5.0
  # Seconds between checkpoints (also written at exit, with a SavedModel export).
  c.checkpoint_interval = 300.0
  # Checkpoints kept in <logdir>/checkpoints.
  c.checkpoints_to_keep = 3
  # Threads serving inference RPCs on the learner (0: one per core).
  c.server_threads = 0
  # Threads one TF op may use on the learner (0: TF's default, one per core).
  # 1 suits a learner sharing its cores with actors: inference ops are small,
  # and splitting them across threads that the actors keep busy costs more
  # CPU in hand-offs than it saves. Leave 0 on a dedicated learner host.
  c.learner_intra_op_threads = 0
  # Devices of the learner (seed/runtime/devices.py). Candidates are the accelerators
  # (TPU cores, else GPUs), or the (logical) CPUs on a host without any.
  # How many devices train, under tf.distribute (Mirrored, OneDevice or TPU strategy;
  # each takes an equal share of the batch): 0 = every accelerator found, one CPU if none.
  c.training_devices = 0
  # How many devices run batched inference, round robin (0 = the training devices). They are
  # the devices after the training ones when the host has enough, else the first ones (shared).
  c.inference_devices = 0
  # Split the host CPU into this many logical devices (0 = off), before TensorFlow
  # initializes its devices: how the multi-device learner runs and is tested on a CPU host.
  c.logical_cpu_devices = 0
  # Local mode: how many times an actor may be restarted within a minute before
  # the run is aborted (a crash loop is a bug, not bad luck).
  c.max_actor_restarts_per_minute = 5
  # Seconds an actor keeps retrying to reach a learner that went away (restart,
  # network) before it gives up.
  c.actor_reconnect_timeout = 600.0
  return c


def check_fields(config: ml_collections.ConfigDict, agent: AgentPackage) -> None:
  """Raises ValueError naming any field that is not in the defaults (a typo in a config file).

  The command line's `--config.x=...` is checked by ml_collections already;
  this catches `c.unrol_length = 40` in the file itself, which would add a
  field nothing reads.
  """
  expected = runtime_config()
  expected.env = envs.env_config(config.env.id)
  expected.agent = agent.default_config()
  _check_known(config, expected, "config")


def _check_known(config: ml_collections.ConfigDict, expected: ml_collections.ConfigDict, path: str) -> None:
  for key in config.keys():
    if key not in expected:
      close = difflib.get_close_matches(key, list(expected.keys()), n=1)
      hint = f"; did you mean {path}.{close[0]}?" if close else ""
      raise ValueError(f"{path}.{key} is not a config field{hint}")
    value, default = config[key], expected[key]
    # An empty default dict (env.kwargs) is free-form: its keys belong to the env.
    if isinstance(value, ml_collections.ConfigDict) and isinstance(default, ml_collections.ConfigDict) and default:
      _check_known(value, default, f"{path}.{key}")


def validate(config: ml_collections.ConfigDict, agent: AgentPackage) -> None:
  """Raises ValueError naming the field for any field or value the runtime or `agent` cannot use.

  `agent` is config.agent_name's package (agents.registry.check_config resolves it and calls this)."""
  if not isinstance(config.get("env"), ml_collections.ConfigDict) or not config.env.get("id"):
    raise ValueError("config.env.id must name a gymnasium environment")
  if config.get("agent_name") != agent.name:
    raise ValueError(f"config.agent_name={config.get('agent_name')!r} but the runtime was given agent {agent.name!r}")
  check_fields(config, agent)
  positive = [
    "num_actors",
    "env_batch_size",
    "inference_batch_size",
    "unroll_length",
    "batch_size",
    "unroll_queue_capacity",
    "total_environment_frames",
    "checkpoints_to_keep",
  ]
  for name in positive:
    value = config[name]
    if not isinstance(value, int) or value <= 0:
      raise ValueError(f"config.{name} must be a positive integer, got {value!r}")
  for name in ["inference_flush_timeout", "log_interval", "checkpoint_interval", "actor_reconnect_timeout"]:
    if not config[name] > 0:
      raise ValueError(f"config.{name} must be > 0 seconds, got {config[name]!r}")
  for name in [
    "server_threads",
    "learner_intra_op_threads",
    "training_devices",
    "inference_devices",
    "logical_cpu_devices",
  ]:
    if not isinstance(config[name], int) or config[name] < 0:
      raise ValueError(f"config.{name} must be an integer >= 0, got {config[name]!r}")
  if config.inference_batch_size < config.env_batch_size:
    raise ValueError(
      f"config.inference_batch_size ({config.inference_batch_size}) must be >= "
      f"config.env_batch_size ({config.env_batch_size}): one actor call carries all its envs"
    )
  if config.unroll_queue_capacity < config.batch_size:
    raise ValueError(
      f"config.unroll_queue_capacity ({config.unroll_queue_capacity}) must be >= "
      f"config.batch_size ({config.batch_size})"
    )
  if agent.validate is not None:
    agent.validate(config)
