"""What updates do to a network, measured on recorded batches rather than over hours of flat reward.

`RecordedSource` plays a config's envs with an agent's own `step` (for a fresh agent,
its near-uniform initial policy: random play) and lays the steps out as the learner's
store does, so any agent's `learn` trains on it. `probe` runs updates on it and reads
the health metrics the agents log: dead units per torso layer (`dead/<layer>`), and
how much V and the logits vary across states (`spread/value`, `spread/logits`).
scripts/tools/diagnose_update.py and the pixel regression test (tests/test_pixel_health.py)
are built on these.
"""

from __future__ import annotations

import ml_collections
import numpy as np
import tensorflow as tf

import envs
from seed.runtime.agent import Agent, Source
from seed.runtime.env_store import Step, Unroll


def record_unrolls(
  agent: Agent,
  config: ml_collections.ConfigDict,
  num_envs: int,
  length: int,
  *,
  seed: int = 0,
  warmup_steps: int = 0,
) -> Unroll:
  """`num_envs` unrolls of `length + 1` steps (batch-major), after `warmup_steps` steps of the
  same play that are not kept (Pong's first frames, before the serve, barely differ)."""
  vec = envs.make_vector(config.env, num_envs, seed=seed)
  obs, _ = vec.reset(seed=seed)
  state = agent.initial_state(num_envs)
  env_ids = tf.range(num_envs, dtype=tf.int32)
  first = np.ones(num_envs, bool)
  reward = np.zeros(num_envs, np.float32)
  terminated = truncated = np.zeros(num_envs, bool)
  steps, initial_state = [], state
  step = tf.function(agent.step)  # eager convolutions per env step would dominate the recording
  try:
    for i in range(warmup_steps + length + 1):
      if i == warmup_steps:
        initial_state = state
      out, state = step(tf.constant(obs), tf.constant(first), state, env_ids)
      if i >= warmup_steps:
        steps.append(Step(obs, reward, terminated, truncated, first, tf.nest.map_structure(np.asarray, out)))
      first = terminated | truncated
      obs, reward, terminated, truncated, _ = vec.step(np.asarray(out["action"]))
      reward = reward.astype(np.float32)
  finally:
    vec.close()
  batch_major = lambda *xs: tf.constant(np.stack(xs, axis=1))
  return Unroll(initial_state, tf.nest.map_structure(batch_major, *steps))


class RecordedSource(Source):
  """A Source over recorded unrolls: the first `n` every time (`sample=False`: a fixed batch),
  or `n` drawn at random with replacement (in TF, so it works inside tf.function)."""

  def __init__(self, unrolls: Unroll, sample: bool = False, seed: int = 0):
    self._pool = unrolls
    self._count = int(tf.nest.flatten(unrolls.steps)[0].shape[0])
    self._sample = sample
    self._rng = tf.random.Generator.from_seed(seed)
    self.spec = tf.nest.map_structure(lambda t: tf.TensorSpec(t.shape[1:], t.dtype), unrolls)
    self.dequeued = 0

  def size(self) -> tf.Tensor:
    return tf.constant(self._count, tf.int32)

  def dequeue(self, n) -> Unroll:
    self.dequeued += 1  # counts traces inside tf.function, calls outside
    if self._sample:
      idx = self._rng.uniform([n], 0, self._count, dtype=tf.int32)
    else:
      idx = tf.range(n) % self._count
    return tf.nest.map_structure(lambda t: tf.gather(t, idx), self._pool)


def health(logs: dict) -> dict[str, float]:
  """The dead-unit and spread entries of an agent's logs, as floats."""
  return {k: float(v) for k, v in logs.items() if k.startswith(("dead/", "spread/"))}


def probe(agent: Agent, source: Source, updates: int) -> list[dict[str, float]]:
  """Runs `updates` learning steps; returns every step's logs as floats. Each step's dead-unit
  and spread entries describe the network it trained (before that step's update), so entry k
  is the network after k updates."""
  return [{k: float(v) for k, v in agent.learn(source).items()} for _ in range(updates + 1)]
