"""EnvStore: unroll assembly, run-id resets and episode statistics, in TF as inference runs them."""

import numpy as np
import pytest
import tensorflow as tf

from seed.runtime.env_store import EnvStore, Step, step_specs

T = 3  # unroll_length: unrolls hold T + 1 steps


def make_store(num_envs=4, capacity=16, overlap=1):
  spec = step_specs(tf.TensorSpec([], tf.float32), {"action": tf.TensorSpec([], tf.int32)})
  state_spec = tf.TensorSpec([], tf.float32)  # a scalar "recurrent state" to follow
  return EnvStore(num_envs, T, spec, state_spec, lambda k: -tf.ones([k]), capacity, overlap=overlap)


def step(store, env_ids, run_ids, obs, reward=None, terminated=None, truncated=None, first=None):
  """One inference step: state_after = state_before + 1, action = obs * 10."""
  n = len(env_ids)
  env_ids = tf.constant(env_ids, tf.int32)
  obs = tf.constant(obs, tf.float32)
  z = lambda v, dtype: tf.cast(np.zeros(n) if v is None else np.asarray(v), dtype)
  state = store.begin(env_ids, tf.constant(run_ids, tf.int64))
  s = Step(
    obs,
    z(reward, tf.float32),
    z(terminated, tf.bool),
    z(truncated, tf.bool),
    z(first, tf.bool),
    {"action": tf.cast(obs * 10, tf.int32)},
  )
  store.record(env_ids, s, state, state + 1)
  return state.numpy()


def drain(store):
  n = int(store.queue.size())
  return store.dequeue(n) if n else None


def test_unrolls_overlap_by_one_step_and_carry_the_initial_state():
  store = make_store()
  for t in range(8):
    step(store, [1], [7], [float(t)], first=[t == 0])
  u = drain(store)
  # steps 0..3 and 3..6 (the last step of one unroll starts the next); step 7 is pending
  np.testing.assert_array_equal(u.steps.observation.numpy(), [[0, 1, 2, 3], [3, 4, 5, 6]])
  np.testing.assert_array_equal(u.steps.agent_output["action"].numpy(), [[0, 10, 20, 30], [30, 40, 50, 60]])
  # state before step 0 is the initial state (-1); before step 3 it is -1 + 3
  np.testing.assert_array_equal(u.initial_state.numpy(), [-1, 2])
  assert store.position.numpy()[1] == 2


def test_overlap_carries_several_steps_and_their_state_into_the_next_unroll():
  store = make_store(overlap=2)  # e.g. R2D2's burn-in: consecutive unrolls share 2 steps
  for t in range(8):
    step(store, [0], [7], [float(t)], first=[t == 0])
  u = drain(store)
  np.testing.assert_array_equal(u.steps.observation.numpy(), [[0, 1, 2, 3], [2, 3, 4, 5], [4, 5, 6, 7]])
  np.testing.assert_array_equal(u.initial_state.numpy(), [-1, 1, 3])  # state before steps 0, 2 and 4


def test_bad_overlap_is_rejected():
  with pytest.raises(ValueError, match="overlap"):
    make_store(overlap=T + 1)


def test_unrolls_run_across_episode_ends_with_flags():
  store = make_store()
  flags = dict(reward=[[0], [1], [1], [0], [1]], terminated=[[0], [0], [1], [0], [0]], first=[[1], [0], [0], [1], [0]])
  for t in range(5):
    step(store, [0], [3], [float(t)], **{k: v[t] for k, v in flags.items()})
  u = drain(store)
  np.testing.assert_array_equal(u.steps.terminated.numpy(), [[False, False, True, False]])
  np.testing.assert_array_equal(u.steps.first.numpy(), [[True, False, False, True]])
  np.testing.assert_array_equal(u.steps.reward.numpy(), [[0, 1, 1, 0]])


def test_envs_are_independent_within_a_batch():
  store = make_store()
  for t in range(4):
    step(store, [2, 0], [5, 6], [t, 100 + t], first=[t == 0] * 2)
  u = drain(store)
  got = sorted(u.steps.observation.numpy().tolist())
  assert got == [[0, 1, 2, 3], [100, 101, 102, 103]]


def test_new_run_id_drops_the_partial_unroll_and_resets_state():
  store = make_store()
  for t in range(2):
    step(store, [1], [7], [float(t)], first=[t == 0])
  # actor restarted: new run id, fresh episode
  states = [step(store, [1], [8], [10.0 + t], first=[t == 0])[0] for t in range(4)]
  assert states == [-1, 0, 1, 2]  # state reset to the initial state, then carried
  u = drain(store)
  np.testing.assert_array_equal(u.steps.observation.numpy(), [[10, 11, 12, 13]])
  np.testing.assert_array_equal(u.initial_state.numpy(), [-1])
  assert store.run_ids.numpy()[1] == 8


def test_new_run_id_resets_episode_counters():
  store = make_store()
  step(store, [0], [1], [0.0], first=[True])
  step(store, [0], [1], [0.0], reward=[5.0])
  step(store, [0], [2], [0.0], first=[True])  # restart mid-episode: the partial return is dropped
  step(store, [0], [2], [0.0], reward=[1.0], terminated=[True])
  assert store.episodes_done.numpy()[0] == 1
  assert store.ring_return.numpy()[0, 0] == 1.0
  assert store.ring_length.numpy()[0, 0] == 1


def test_episode_statistics_for_termination_and_truncation():
  store = make_store()
  # episode A: rewards 1+2+3, terminated; episode B: 4+4, truncated (time limit)
  seq = [
    dict(first=[True]),
    dict(reward=[1.0]),
    dict(reward=[2.0]),
    dict(reward=[3.0], terminated=[True]),
    dict(first=[True]),
    dict(reward=[4.0]),
    dict(reward=[4.0], truncated=[True]),
    dict(first=[True]),
  ]
  for kw in seq:
    step(store, [3], [9], [0.0], **kw)
  assert store.episodes_done.numpy()[3] == 2
  np.testing.assert_array_equal(store.ring_return.numpy()[3, :2], [6.0, 8.0])
  np.testing.assert_array_equal(store.ring_length.numpy()[3, :2], [3, 2])
  assert store.episode_return.numpy()[3] == 0 and store.episode_length.numpy()[3] == 0


def test_env_id_out_of_range_is_an_error():
  store = make_store(num_envs=2)
  with pytest.raises(tf.errors.InvalidArgumentError, match="env id out of range"):
    step(store, [2], [1], [0.0])


def test_full_queue_blocks_until_training_dequeues():
  store = make_store(num_envs=1, capacity=1)
  for t in range(4 + T):  # two unrolls complete; the second blocks on the full queue
    if t == 2 * T:
      import threading

      done = threading.Event()
      th = threading.Thread(target=lambda: (step(store, [0], [1], [float(t)]), done.set()), daemon=True)
      th.start()
      assert not done.wait(0.5), "enqueue into a full queue must wait (backpressure)"
      store.dequeue(1)
      assert done.wait(10)
      break
    step(store, [0], [1], [float(t)], first=[t == 0])
  assert int(store.queue.size()) == 1


def test_works_inside_tf_function():
  store = make_store()

  @tf.function
  def f(env_ids, obs):
    state = store.begin(env_ids, tf.ones_like(env_ids, tf.int64))
    s = Step(
      obs,
      tf.zeros_like(obs),
      tf.zeros_like(obs, tf.bool),
      tf.zeros_like(obs, tf.bool),
      tf.zeros_like(obs, tf.bool),
      {"action": tf.cast(obs, tf.int32)},
    )
    store.record(env_ids, s, state, state + 1)

  for t in range(T + 1):
    f(tf.constant([0, 1]), tf.constant([float(t), float(t)]))
  u = drain(store)
  np.testing.assert_array_equal(u.steps.observation.numpy(), [[0, 1, 2, 3]] * 2)


def test_slots_are_reused_and_a_dequeued_unroll_keeps_its_data():
  # 2 envs and capacity 2: 6 slots, so 20+ unrolls go through every slot several times.
  store = make_store(num_envs=2, capacity=2)
  take = tf.function(lambda: store.dequeue(2))  # the training side frees its slots inside a graph
  got = {0: [], 1: []}
  held = []
  for t in range(40):
    step(store, [0, 1], [1, 1], [float(t), 100.0 + t], first=[t == 0] * 2)
    if int(store.queue.size()) == 2:
      u = take()
      held.append(u)  # must not change as later steps reuse its slots
      for obs in u.steps.observation.numpy():
        got[int(obs[0] >= 100)].append(obs.tolist())
      assert int(store._free.size()) == 2 * 2, "dequeued slots must go back to the free list"
  want = lambda base: [[base + i for i in range(s, s + T + 1)] for s in range(0, 40 - T, T)]
  assert got[0] == want(0.0) and got[1] == want(100.0)
  first = held[0].steps.observation.numpy()
  np.testing.assert_array_equal(np.sort(first[:, 0]), [0, 100])
  np.testing.assert_array_equal(np.sort(first, axis=0), [[0, 1, 2, 3], [100, 101, 102, 103]])


def test_dequeue_larger_than_the_queue_is_rejected():
  with pytest.raises(ValueError, match="capacity"):
    make_store(capacity=2).dequeue(3)
