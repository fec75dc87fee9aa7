"""Moves completed unrolls from the learner's queue into a replay, at a controlled ratio.

Replay agents (R2D2, SAC) call `pull()` before each gradient step. It takes
unrolls from the queue only when training may not go on without them: while
the replay is below its minimum size, or when the next batch would sample more
than `samples_per_insert` items per item inserted beyond that minimum (the
replay ratio; the warm-up earns no credit, like the offset of Reverb's
SampleToInsertRatio limiter, or training would start with a burst on it).
Otherwise unrolls stay in the queue; once it is full, inference waits
(backpressure), so the ratio holds both ways within one queue's worth of data.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from seed.runtime.agent import Source
from seed.runtime.env_store import Unroll


class ReplayFeeder:
  def __init__(
    self,
    source: Source,
    replay: Any,
    to_items: Callable[[Unroll], tuple[Any, int]],
    min_size: int,
    samples_per_insert: float,
    batch_size: int,
  ):
    """`to_items` turns a batch of numpy unrolls into (items for replay.add, item count)."""
    if samples_per_insert <= 0:
      raise ValueError(f"samples_per_insert must be > 0, got {samples_per_insert}")
    self.source = source
    self.replay = replay
    self.to_items = to_items
    self.min_size = min_size
    self.samples_per_insert = samples_per_insert
    self.batch_size = batch_size
    self.inserted = 0
    self.sampled = 0

  def _starved(self) -> bool:
    too_small = len(self.replay) < max(self.min_size, self.batch_size)
    credit = self.samples_per_insert * max(self.inserted - self.min_size, 0)
    return too_small or self.sampled + self.batch_size > credit

  def pull(self) -> int:
    """Inserts unrolls while training must not go on without them; returns unrolls inserted."""
    pulled = 0
    while True:
      if not self._starved():
        return pulled
      ready = int(self.source.size())
      unrolls = tf.nest.map_structure(lambda t: t.numpy(), self.source.dequeue(max(ready, 1)))
      items, count = self.to_items(unrolls)
      if count:
        self.replay.add(items)
      self.inserted += count
      pulled += max(ready, 1)

  def count_sampled(self, n: int) -> None:
    self.sampled += n

  @property
  def replay_ratio(self) -> float:
    return self.sampled / max(self.inserted, 1)


def valid_transitions(steps, gamma: float) -> dict[str, np.ndarray]:
  """Single-step transitions (o_t, a_t, r_{t+1}, discount_{t+1}, o_{t+1}) from numpy unrolls [B, T+1].

  The step into a `first` observation is not a real transition (the action at a
  final observation is never applied) and is dropped; a truncation keeps its
  bootstrap (discount gamma), a termination gets discount 0.
  """
  real = ~steps.first[:, 1:]
  pick = lambda x: x[real]
  return {
    "observation": pick(steps.observation[:, :-1]),
    "action": pick(steps.agent_output["action"][:, :-1]),
    "reward": pick(steps.reward[:, 1:]).astype(np.float32),
    "discount": (gamma * (1.0 - pick(steps.terminated[:, 1:]))).astype(np.float32),
    "next_observation": pick(steps.observation[:, 1:]),
  }
