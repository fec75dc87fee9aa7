"""Per-environment state kept on the learner, updated inside batched inference.

Everything here is TF variables and queue ops, because inference runs from the
tensor-RPC server's C++ threads with no Python. For every environment (indexed
by env id) the store keeps:
  * the actor's run id: a new id means the actor restarted, so the env's agent
    state, episode counters and partial unroll are dropped;
  * the agent's recurrent state;
  * the unroll being assembled (unroll_length + 1 steps; when full it goes to
    the queue and its last `overlap` steps start the next one: 1 for V-trace,
    more for R2D2's burn-in) and the agent state before each stored step, so an
    unroll carries the state at its first step;
  * episode return/length, and a ring of recently finished episodes that the
    training loop reads for logging.

Unrolls live in slots of one flat buffer and never move: an env writes into
the slot it holds; a full slot's id goes to the queue and the env takes a free
slot. Training gathers the slots it dequeues (the only copy of the frames after
the write) and frees them. There are num_envs + 2 * queue_capacity slots: the
envs' own, a full queue's, and a batch being gathered (batch <= capacity), so
taking a free slot never waits.

Rows of different envs never race: an actor has one call in flight per env.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import tensorflow as tf

from seed.tf_utils import Nest


class Step(NamedTuple):
  """One environment step as stored in an unroll (no batch/time dims in specs).

  observation: what the agent saw at this step.
  reward: reward received on arriving at this step (for the previous action).
  terminated: the episode ended here by the environment's own rule.
  truncated: the episode was cut here (time limit): bootstrap, not terminal.
  first: this observation starts an episode; the previous step's action was
    never applied, so the transition into this step is not real.
  agent_output: what the agent emitted here (action, behaviour logits, ...).
  """

  observation: Nest
  reward: Any
  terminated: Any
  truncated: Any
  first: Any
  agent_output: Nest


class Unroll(NamedTuple):
  """A training sequence: `steps` has a leading time dim of unroll_length + 1."""

  initial_state: Nest  # agent state before steps[0]
  steps: Step


def step_specs(observation_spec: Nest, agent_output_spec: Nest) -> Step:
  scalar = lambda dtype: tf.TensorSpec([], dtype)
  return Step(
    observation_spec, scalar(tf.float32), scalar(tf.bool), scalar(tf.bool), scalar(tf.bool), agent_output_spec
  )


def _with_leading(spec: tf.TensorSpec, *dims: int) -> tf.TensorSpec:
  return tf.TensorSpec([*dims, *spec.shape], spec.dtype)


def _zeros_var(spec: tf.TensorSpec, *dims: int, name: str) -> tf.Variable:
  return tf.Variable(tf.zeros([*dims, *spec.shape], spec.dtype), trainable=False, name=name)


class EnvStore(tf.Module):
  """Per-env state, unroll assembly and episode statistics for `num_envs` envs."""

  def __init__(
    self,
    num_envs: int,
    unroll_length: int,
    step_spec: Step,
    state_spec: Nest,
    initial_state: Callable[[int], Nest],
    queue_capacity: int,
    episode_ring: int = 64,
    overlap: int = 1,
  ):
    super().__init__(name="env_store")
    if not 1 <= overlap <= unroll_length:
      raise ValueError(f"overlap must be in [1, unroll_length={unroll_length}], got {overlap}")
    self.num_envs = num_envs
    self.unroll_length = unroll_length
    self.overlap = overlap
    self.episode_ring = episode_ring
    self._initial_state = initial_state
    self._step_spec = step_spec
    self._state_spec = state_spec
    n, t = num_envs, unroll_length + 1
    self.queue_capacity = queue_capacity
    slots = n + 2 * queue_capacity
    self.run_ids = tf.Variable(tf.zeros([n], tf.int64), trainable=False, name="run_ids")
    self.agent_state = tf.nest.map_structure(lambda s: _zeros_var(s, n, name="agent_state"), state_spec)
    # Unroll slots, flat: row slot * t + position. Writes are row scatters (a
    # memmove per row); scatter_nd into a [slots, t, ...] variable copies element
    # by element, ~15x slower for Atari frames.
    self.state_buffer = tf.nest.map_structure(lambda s: _zeros_var(s, slots * t, name="state_buffer"), state_spec)
    self.buffer = tf.nest.map_structure(lambda s: _zeros_var(s, slots * t, name="unroll"), step_spec)
    self.slot = tf.Variable(tf.range(n), trainable=False, name="slot")  # the slot each env writes into
    self._free = tf.queue.FIFOQueue(slots, tf.int32, [[]], name="free_slots")
    self._free.enqueue_many(tf.range(n, slots))
    self.position = tf.Variable(tf.zeros([n], tf.int32), trainable=False, name="position")
    self.episode_return = tf.Variable(tf.zeros([n]), trainable=False, name="episode_return")
    self.episode_length = tf.Variable(tf.zeros([n], tf.int64), trainable=False, name="episode_length")
    self.episodes_done = tf.Variable(tf.zeros([n], tf.int64), trainable=False, name="episodes_done")
    # Finished episodes per env: (return, length, wall time) in a ring of size episode_ring.
    self.ring_return = tf.Variable(tf.zeros([n, episode_ring]), trainable=False, name="ring_return")
    self.ring_length = tf.Variable(tf.zeros([n, episode_ring], tf.int64), trainable=False, name="ring_length")
    self.ring_time = tf.Variable(tf.zeros([n, episode_ring], tf.float64), trainable=False, name="ring_time")
    self.unroll_spec = Unroll(state_spec, tf.nest.map_structure(lambda s: _with_leading(s, t), step_spec))
    self.queue = tf.queue.FIFOQueue(queue_capacity, tf.int32, [[]], name="full_slots")

  # -- called from inference (inside tf.function), rows already compacted ----

  def begin(self, env_ids: tf.Tensor, run_ids: tf.Tensor) -> Nest:
    """Resets envs whose actor restarted; returns their agent state."""
    tf.debugging.assert_less(
      env_ids,
      self.num_envs,
      message="env id out of range: the learner was configured for num_actors * env_batch_size envs",
    )
    tf.debugging.assert_non_negative(env_ids, message="negative env id")
    changed = tf.boolean_mask(env_ids, tf.not_equal(tf.gather(self.run_ids, env_ids), run_ids))
    idx = changed[:, None]
    k = tf.size(changed)
    tf.nest.map_structure(lambda v, s: v.scatter_nd_update(idx, s), self.agent_state, self._initial_state(k))
    for var in (self.position, self.episode_length):
      var.scatter_nd_update(idx, tf.zeros([k], var.dtype))
    self.episode_return.scatter_nd_update(idx, tf.zeros([k]))
    self.run_ids.scatter_nd_update(env_ids[:, None], run_ids)
    return tf.nest.map_structure(lambda v: tf.gather(v, env_ids), self.agent_state)

  def record(self, env_ids: tf.Tensor, step: Step, state_before: Nest, state_after: Nest) -> None:
    """Stores one step per env; completed unrolls go to the queue (may block: backpressure)."""
    self._count_episodes(env_ids, step)
    k, t = self.overlap, self.unroll_length + 1
    pos = tf.gather(self.position, env_ids)
    slots = tf.gather(self.slot, env_ids)
    rows = slots * t + pos
    write = lambda v, x: v.scatter_update(tf.IndexedSlices(x, rows))
    tf.nest.map_structure(write, self.buffer, step)
    tf.nest.map_structure(write, self.state_buffer, state_before)
    full = tf.equal(pos, self.unroll_length)
    done_envs = tf.boolean_mask(env_ids, full)
    done_slots = tf.boolean_mask(slots, full)
    m = tf.size(done_envs)
    # The last `overlap` steps (and the states before them) start the next
    # unroll. Read them before the slot is queued: training frees it, and
    # another env may write into it, as soon as it is dequeued.
    tail = lambda v: tf.gather(v, tf.reshape(done_slots[:, None] * t + tf.range(t - k, t)[None, :], [-1]))
    tails = tf.nest.map_structure(tail, (self.buffer, self.state_buffer))
    with tf.control_dependencies(tf.nest.flatten(tails)):
      queued = self.queue.enqueue_many(done_slots)  # may block: backpressure
    with tf.control_dependencies([queued]):
      new_slots = self._free.dequeue_many(m)
    front_rows = tf.reshape(new_slots[:, None] * t + tf.range(k)[None, :], [-1])
    tf.nest.map_structure(
      lambda v, x: v.scatter_update(tf.IndexedSlices(x, front_rows)), (self.buffer, self.state_buffer), tails
    )
    self.slot.scatter_nd_update(done_envs[:, None], new_slots)
    self.position.scatter_nd_update(env_ids[:, None], tf.where(full, k, pos + 1))
    tf.nest.map_structure(lambda v, s: v.scatter_nd_update(env_ids[:, None], s), self.agent_state, state_after)

  def _count_episodes(self, env_ids: tf.Tensor, step: Step) -> None:
    idx = env_ids[:, None]
    first = step.first
    ret = tf.where(first, 0.0, tf.gather(self.episode_return, env_ids) + step.reward)
    length = tf.where(first, tf.zeros([], tf.int64), tf.gather(self.episode_length, env_ids) + 1)
    ended = tf.logical_and(tf.logical_or(step.terminated, step.truncated), tf.logical_not(first))
    ended_envs = tf.boolean_mask(env_ids, ended)
    count = tf.gather(self.episodes_done, ended_envs)
    slot = tf.stack([ended_envs, tf.cast(count % self.episode_ring, tf.int32)], axis=1)
    self.ring_return.scatter_nd_update(slot, tf.boolean_mask(ret, ended))
    self.ring_length.scatter_nd_update(slot, tf.boolean_mask(length, ended))
    self.ring_time.scatter_nd_update(slot, tf.fill(tf.shape(ended_envs), tf.timestamp()))
    self.episodes_done.scatter_nd_update(ended_envs[:, None], count + 1)
    self.episode_return.scatter_nd_update(idx, tf.where(ended, 0.0, ret))
    self.episode_length.scatter_nd_update(idx, tf.where(ended, tf.zeros([], tf.int64), length))

  # -- called from the training loop ------------------------------------------

  def dequeue(self, batch_size: int) -> Unroll:
    """`batch_size` (<= queue_capacity) completed unrolls, batch-major; blocks until they are there."""
    if isinstance(batch_size, int) and batch_size > self.queue_capacity:
      raise ValueError(f"dequeue of {batch_size} unrolls from a queue of capacity {self.queue_capacity}")
    t = self.unroll_length + 1
    slots = self.queue.dequeue_many(batch_size)
    rows = tf.reshape(slots[:, None] * t + tf.range(t)[None, :], [-1])
    # Static shapes only: tf.shape(variable) would read (copy) the whole buffer.
    # Packed by the specs: tf.Module wraps the variables' tuples and dicts.
    steps = [tf.reshape(tf.gather(v, rows), [batch_size, t, *v.shape[1:]]) for v in tf.nest.flatten(self.buffer)]
    state = [tf.gather(v, slots * t) for v in tf.nest.flatten(self.state_buffer)]
    unroll = tf.nest.pack_sequence_as(self.unroll_spec, state + steps)
    with tf.control_dependencies(tf.nest.flatten(unroll)):
      self._free.enqueue_many(slots)  # the gathers above are copies: the slots are free again
    return unroll

  def close(self) -> None:
    """Wakes a training step blocked on an empty queue and inference blocked on a full one."""
    self.queue.close(cancel_pending_enqueues=True)
