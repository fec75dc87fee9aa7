"""ReplayFeeder: the replay ratio holds both ways; transitions drop the non-transition into `first`."""

import numpy as np
import tensorflow as tf

from seed.replay.buffers import UniformReplay
from seed.replay.feeder import ReplayFeeder, valid_transitions
from seed.runtime.env_store import Step


class CountingSource:
  """`ready` unrolls waiting; each carries 4 items."""

  def __init__(self, ready):
    self.ready = ready
    self.taken = 0

  def size(self):
    return tf.constant(self.ready)

  def dequeue(self, n):
    assert n <= max(self.ready, 1), "the feeder must not wait for more than it needs"
    self.ready -= min(n, self.ready)
    self.taken += n
    return {"x": tf.zeros([n, 4])}


def to_items(unrolls):
  x = unrolls["x"].reshape(-1)
  return {"x": x}, x.size


def test_warm_up_then_ratio_holds_and_surplus_stays_queued():
  source = CountingSource(ready=3)
  replay = UniformReplay(10_000)
  feeder = ReplayFeeder(source, replay, to_items, min_size=8, samples_per_insert=2.0, batch_size=4)
  for _ in range(50):
    source.ready += 1  # actors produce one unroll (4 items) per gradient step...
    feeder.pull()
    assert len(replay) >= 8  # the warm-up is filled before any training
    feeder.count_sampled(4)  # ...while a step needs only 4 / 2 = 2 items of credit
    assert feeder.sampled <= 2.0 * (feeder.inserted - 8)
  # only what the ratio needed was taken: the surplus stays queued (backpressure on the actors)
  assert source.ready >= 20
  assert feeder.replay_ratio > 1.0


def test_pull_does_nothing_while_within_the_ratio():
  source = CountingSource(ready=10)
  feeder = ReplayFeeder(source, UniformReplay(1000), to_items, min_size=4, samples_per_insert=100.0, batch_size=2)
  feeder.pull()
  taken = source.taken
  feeder.pull()
  assert source.taken == taken


def test_valid_transitions_drop_the_step_into_a_first_observation():
  b, t1 = 1, 4
  first = np.array([[True, False, True, False]])
  terminated = np.array([[False, True, False, False]])
  steps = Step(
    np.arange(t1, dtype=np.float32).reshape(b, t1),
    np.array([[0, 1, 0, 2]], np.float32),
    terminated,
    np.zeros((b, t1), bool),
    first,
    {"action": np.array([[10, 11, 12, 13]])},
  )
  tr = valid_transitions(steps, gamma=0.9)
  np.testing.assert_array_equal(tr["observation"], [0, 2])  # 1 -> 2 is the reset, dropped
  np.testing.assert_array_equal(tr["next_observation"], [1, 3])
  np.testing.assert_array_equal(tr["action"], [10, 12])
  np.testing.assert_array_equal(tr["reward"], [1, 2])
  np.testing.assert_allclose(tr["discount"], [0.0, 0.9])  # termination -> 0
