"""R2D2 agent: exploration, sequence loss (burn-in, masks, targets), replay plumbing, and end to end.

Unit tests build the agent on CartPole's spaces with tiny sizes and feed it
either hand-made batches or unrolls assembled by a real EnvStore (begin/record,
as inference does). The end-to-end tests run `python -m seed.train` like
tests/test_train.py (whose Run/runs helpers they use).
"""

import collections
import os

import gymnasium
import ml_collections
import numpy as np
import pytest
import tensorflow as tf
from helpers import REPO
from test_train import _episodes, _no_process_left, runs  # noqa: F401  (runs is a fixture)

from agents.r2d2 import agent as r2d2_agent
from agents.r2d2 import config as r2d2_config
from agents.r2d2 import losses
from seed.runtime.env_store import EnvStore, Step, Unroll, step_specs
from seed.tf_utils import time_major

ATARI_R2D2 = os.path.join(REPO, "configs", "atari_r2d2.py")

OBS = gymnasium.spaces.Box(-1.0, 1.0, (3,), np.float32)
ACTIONS = gymnasium.spaces.Discrete(3)
L = 8  # unroll_length
BURN_IN = 3
B = 4  # sequences per batch


def agent_config(**overrides) -> ml_collections.ConfigDict:
  c = r2d2_config.get_config()
  c.mlp_sizes = (16,)
  c.lstm_size = 8
  c.head_hidden = 8
  c.burn_in = BURN_IN
  c.n_step = 2
  c.discount = 0.9
  c.learning_rate = 1e-2
  c.target_update_period = 1000
  c.replay_capacity = 64
  c.min_replay_size = 4
  c.samples_per_insert = 100.0
  c.update(overrides)
  return c


def make_agent(num_envs=4, **overrides) -> r2d2_agent.R2D2Agent:
  tf.random.set_seed(0)
  return r2d2_agent.R2D2Agent(
    agent_config(**overrides), OBS, ACTIONS, num_envs=num_envs, unroll_length=L, batch_size=B, seed=0
  )


def random_batch(seed=0, first_prob=0.0, batch=B) -> Unroll:
  """A batch of sequences as numpy (batch-major), first step of each sequence an episode start."""
  rng = np.random.default_rng(seed)
  t = L + 1
  first = rng.random((batch, t)) < first_prob
  first[:, 0] = True
  steps = Step(
    observation=rng.normal(size=(batch, t, 3)).astype(np.float32),
    reward=rng.normal(size=(batch, t)).astype(np.float32),
    terminated=np.zeros((batch, t), bool),
    truncated=np.zeros((batch, t), bool),
    first=first,
    agent_output={"action": rng.integers(0, 3, (batch, t)).astype(np.int32)},
  )
  state = tuple(rng.normal(size=(batch, 8)).astype(np.float32) for _ in range(2))
  return Unroll(state, steps)


def with_steps(unroll: Unroll, **fields) -> Unroll:
  steps = unroll.steps
  for k, v in fields.items():
    steps = steps._replace(**{k: v})
  return unroll._replace(steps=steps)


def loss_of(agent, unroll, weights=None):
  weights = np.ones(unroll.steps.first.shape[0], np.float32) if weights is None else weights
  out = agent.loss(tf.nest.map_structure(tf.convert_to_tensor, unroll), tf.constant(weights))
  return {k: v.numpy() for k, v in out.items()}


# ------------------------------------------------------------- exploration ---


def test_ape_x_epsilons_per_env_id():
  eps = r2d2_agent.ape_x_epsilons(32, 0.4, 7.0)
  i = np.arange(32)
  np.testing.assert_allclose(eps, 0.4 ** (1 + 7 * i / 31), rtol=1e-6)
  assert eps[0] == pytest.approx(0.4) and eps[-1] == pytest.approx(0.4**8)
  assert np.all(np.diff(eps) < 0)
  np.testing.assert_allclose(r2d2_agent.ape_x_epsilons(1), [0.4])


def test_step_explores_with_its_env_ids_epsilon():
  agent = make_agent(num_envs=3)  # epsilons 0.4, 0.4^4.5, 0.4^8
  np.testing.assert_allclose(agent.epsilons, [0.4, 0.4**4.5, 0.4**8], rtol=1e-6)
  n = 20000
  obs = tf.zeros([n, 3])
  state = agent.initial_state(n)
  q, _ = agent.online(obs, tf.ones([n], tf.bool), state)
  greedy = int(tf.argmax(q[0]))
  for env, eps in enumerate(agent.epsilons):
    out, new_state = agent.step(obs, tf.ones([n], tf.bool), state, tf.fill([n], env))
    assert out["action"].dtype == tf.int32 and out["action"].shape == [n]
    assert new_state[0].shape == [n, 8]
    off_greedy = np.mean(out["action"].numpy() != greedy)
    expected = eps * 2 / 3  # a random action is the greedy one 1/3 of the time
    assert abs(off_greedy - expected) < 4 * np.sqrt(expected * (1 - expected) / n) + 1e-3, (env, off_greedy)


# ------------------------------------------------------------------ loss ---


def test_loss_shapes_cover_only_the_trained_transitions():
  agent = make_agent()
  out = loss_of(agent, random_batch())
  assert out["_td"].shape == (L - BURN_IN, B)
  assert out["priorities"].shape == (B,)
  assert np.isfinite(out["loss/total"]) and out["loss/total"] > 0
  assert np.all(out["priorities"] >= 0)
  np.testing.assert_allclose(
    out["priorities"], losses.r2d2_priorities(out["_td"], 0.9, out["_mask"]).numpy(), rtol=1e-6
  )


def test_burn_in_steps_are_excluded_from_the_loss():
  agent = make_agent()
  u = random_batch(1)
  base = loss_of(agent, u)
  rng = np.random.default_rng(5)
  # Rewards/terminations into steps 0..BURN_IN and actions at steps < BURN_IN belong to burn-in transitions.
  reward = u.steps.reward.copy()
  reward[:, : BURN_IN + 1] = rng.normal(size=(B, BURN_IN + 1)) * 100
  action = u.steps.agent_output["action"].copy()
  action[:, :BURN_IN] = (action[:, :BURN_IN] + 1) % 3
  terminated = u.steps.terminated.copy()
  terminated[:, 1 : BURN_IN + 1] = True
  changed = loss_of(agent, with_steps(u, reward=reward, terminated=terminated, agent_output={"action": action}))
  np.testing.assert_allclose(changed["loss/total"], base["loss/total"], rtol=1e-6)
  np.testing.assert_allclose(changed["priorities"], base["priorities"], rtol=1e-6)
  # ... while the first trained transition's reward does count.
  reward = u.steps.reward.copy()
  reward[:, BURN_IN + 1] += 10.0
  assert not np.allclose(loss_of(agent, with_steps(u, reward=reward))["loss/total"], base["loss/total"])


def test_no_gradient_flows_through_burn_in_into_the_stored_state():
  def state_grad(agent, u):
    u = tf.nest.map_structure(tf.convert_to_tensor, u)
    with tf.GradientTape() as tape:
      tape.watch(u.initial_state)
      total = agent.loss(u, tf.ones([B]))["loss/total"]
    return tape.gradient(total, u.initial_state)

  u = random_batch(2)
  u = with_steps(u, first=np.zeros_like(u.steps.first))  # the stored state matters: no reset at step 0
  grads = state_grad(make_agent(), u)
  assert all(g is None or np.allclose(g.numpy(), 0.0) for g in grads)
  no_burn_in = state_grad(make_agent(burn_in=0), u)
  assert any(g is not None and np.abs(g.numpy()).max() > 0 for g in no_burn_in)


def test_transitions_into_a_first_step_are_masked():
  agent = make_agent()
  u = random_batch(3)
  first = u.steps.first.copy()
  k = BURN_IN + 3  # x_k starts an episode: transition k-1 -> k is not real
  first[:, k] = True
  u = with_steps(u, first=first)
  base = loss_of(agent, u)
  expected_mask = np.ones((L - BURN_IN, B), np.float32)
  expected_mask[k - 1 - BURN_IN] = 0
  np.testing.assert_array_equal(base["_mask"], expected_mask)
  # Its action and its (autoreset) reward change nothing.
  reward, action = u.steps.reward.copy(), u.steps.agent_output["action"].copy()
  reward[:, k] = 1000.0
  action[:, k - 1] = (action[:, k - 1] + 1) % 3
  changed = loss_of(agent, with_steps(u, reward=reward, agent_output={"action": action}))
  np.testing.assert_allclose(changed["loss/total"], base["loss/total"], rtol=1e-6)
  np.testing.assert_allclose(changed["priorities"], base["priorities"], rtol=1e-6)


def _reference_targets(q, reward, terminated, first, n, gamma):
  """Independent n-step double-Q targets over one sequence's trained part (target net = online net).

  Windows stop at a transition into a `first` step and bootstrap from the final observation; a
  termination zeroes the bootstrap.
  """
  h, h_inv = losses.signed_hyperbolic, losses.signed_parabolic
  t_len = q.shape[0] - 1
  out = np.full(t_len, np.nan)
  for t in range(t_len):
    if first[t + 1]:
      continue
    ret, disc, s = 0.0, 1.0, t
    for k in range(n):
      if t + k >= t_len or first[t + k + 1]:
        break
      ret += disc * reward[t + k + 1]
      disc *= gamma * (1.0 - terminated[t + k + 1])
      s = t + k + 1
    out[t] = float(h(ret + disc * float(h_inv(q[s, np.argmax(q[s])]))))
  return out


@pytest.mark.parametrize("n_step", [1, 3])
def test_targets_bootstrap_at_truncation_and_stop_at_termination(n_step):
  burn_in = 1
  agent = make_agent(n_step=n_step, burn_in=burn_in)
  u = random_batch(4, batch=2)
  first, terminated, truncated = (np.zeros_like(u.steps.first) for _ in range(3))
  first[:, 0] = True
  truncated[0, 4], first[0, 5] = True, True  # sequence 0: time limit at x_4, x_5 is a reset
  terminated[1, 4], first[1, 5] = True, True  # sequence 1: terminal x_4
  u = with_steps(u, first=first, terminated=terminated, truncated=truncated)
  out = agent.sequence_targets(tf.nest.map_structure(tf.convert_to_tensor, u))
  q = out["q_online"].numpy()  # the target network is a copy of the online one
  for b in range(2):
    trained = slice(burn_in, None)  # the reference indexes rewards/flags by the trained part's steps
    ref = _reference_targets(
      q[:, b],
      u.steps.reward[b, trained],
      u.steps.terminated[b, trained].astype(np.float32),
      u.steps.first[b, trained],
      n_step,
      0.9,
    )
    real = ~np.isnan(ref)
    np.testing.assert_allclose(out["targets"].numpy()[real, b], ref[real], rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------ train / learn ---


def test_target_network_is_copied_exactly_every_period():
  agent = make_agent(target_update_period=3)
  u, w = random_batch(5), np.ones(B, np.float32)
  same = lambda: all(
    np.array_equal(t.numpy(), o.numpy()) for t, o in zip(agent.target.variables, agent.online.variables)
  )
  assert same() and int(agent.target_updates) == 1  # copied at construction
  history = []
  for _ in range(7):
    logs = agent.train(u, w)
    history.append((int(logs["updates"]), same(), int(agent.target_updates)))
  assert history == [
    (1, False, 1),
    (2, False, 1),
    (3, True, 2),
    (4, False, 2),
    (5, False, 2),
    (6, True, 3),
    (7, False, 3),
  ]


class StoreSource:
  """The learner's UnrollSource without the frame counter: a real EnvStore's queue."""

  def __init__(self, store):
    self.store = store
    self.spec = store.unroll_spec

  def size(self):
    return self.store.queue.size()

  def dequeue(self, n):
    return self.store.dequeue(n)


def fill_store(agent, num_envs, steps, episode_length=5, seed=0):
  """Runs inference as the learner does (begin, agent.step, record) on a toy env."""
  obs_spec = tf.TensorSpec([3], tf.float32)
  store = EnvStore(
    num_envs,
    L,
    step_specs(obs_spec, agent.output_spec),
    agent.state_spec,
    agent.initial_state,
    queue_capacity=1000,
    overlap=agent.sequence_overlap,
  )
  rng = np.random.default_rng(seed)
  env_ids = tf.range(num_envs)
  run_ids = tf.fill([num_envs], tf.constant(7, tf.int64))
  for t in range(steps):
    phase = t % episode_length
    first = tf.fill([num_envs], phase == 0)
    ended = tf.fill([num_envs], phase == episode_length - 1)
    obs = tf.constant(rng.normal(size=(num_envs, 3)), tf.float32)
    state = store.begin(env_ids, run_ids)
    out, new_state = agent.step(obs, first, state, env_ids)
    reward = tf.fill([num_envs], 0.0 if phase == 0 else 1.0)
    store.record(env_ids, Step(obs, reward, ended, tf.zeros([num_envs], tf.bool), first, out), state, new_state)
  return store


def test_learn_samples_replay_updates_priorities_and_reports_memory():
  agent = make_agent(num_envs=2)
  assert agent.sequence_overlap == BURN_IN + (L - BURN_IN) // 2
  store = fill_store(agent, 2, 40)
  ready = int(store.queue.size())
  assert ready >= B
  sampled, updated = [], []
  sample, update = agent.replay.sample, agent.replay.update_priorities
  agent.replay.sample = lambda *a, **k: sampled.append(sample(*a, **k)) or sampled[-1]
  agent.replay.update_priorities = lambda i, p: updated.append((i, p)) or update(i, p)

  logs = agent.learn(StoreSource(store))
  assert len(agent.replay) == ready and int(store.queue.size()) == 0  # everything ready went in
  assert logs["replay/bytes"] == agent.replay.nbytes > 0
  assert logs["replay/size"] == ready and logs["replay/ratio"] == pytest.approx(B / ready)
  assert np.isfinite(float(logs["loss/total"])) and int(logs["updates"]) == 1
  batch, indices, weights = sampled[0]
  assert batch.steps.observation.shape == (B, L + 1, 3) and weights.shape == (B,)
  ((got_indices, priorities),) = updated
  np.testing.assert_array_equal(got_indices, indices)
  assert priorities.shape == (B,) and np.all(priorities >= 0) and not np.allclose(priorities, 1.0)
  # The sum tree now holds p^alpha for the sampled sequences; the others keep the initial max priority (1).
  tree = agent.replay._tree  # pylint: disable=protected-access
  np.testing.assert_allclose(tree.get(indices), priorities**0.9, rtol=1e-6)
  others = np.setdiff1d(np.arange(ready), indices)
  np.testing.assert_allclose(tree.get(others), 1.0)


class ListSource:
  """Serves a fixed batch of unrolls, `available` of them so far; dequeue never blocks (it fails)."""

  def __init__(self, unroll):
    self.unroll, self.available, self.taken = unroll, 0, 0

  def size(self):
    return tf.constant(self.available - self.taken)

  def dequeue(self, n):
    assert self.taken + n <= self.available, "would block"
    out = tf.nest.map_structure(lambda x: x[self.taken : self.taken + n], self.unroll)
    self.taken += n
    return out


def test_learn_follows_the_feeders_replay_ratio_and_leaves_unneeded_sequences_queued():
  """learn() goes through ReplayFeeder: no training below min_replay_size, at most samples_per_insert
  sampled per inserted sequence, and sequences training does not need yet stay in the queue."""
  agent = make_agent(num_envs=2, min_replay_size=6, samples_per_insert=2.0)
  store = fill_store(agent, 2, 60)
  source = ListSource(store.dequeue(24))
  feeder_state = lambda: (agent._feeder.inserted, agent._feeder.sampled)  # pylint: disable=protected-access
  source.available = 8
  agent.learn(source)  # below min_replay_size it takes all there is
  assert feeder_state() == (8, B)
  source.available = 16
  agent.learn(source)  # out of credit: takes what is there
  source.available = 24  # the actors now run ahead of training
  for _ in range(3):
    agent.learn(source)
  inserted, sampled = feeder_state()
  assert int(agent.updates) == 5 and sampled == 5 * B and len(agent.replay) == inserted
  assert sampled <= 2.0 * inserted
  assert int(source.size()) > 0, "sequences training does not need yet stay queued (so actors wait)"


def test_sequences_from_the_store_carry_the_actors_state():
  """Replaying a stored sequence from its initial state reproduces the Q-values the actor acted on."""
  agent = make_agent(num_envs=1, epsilon_base=1e-9)  # greedy actors
  store = fill_store(agent, 1, 30, episode_length=7)
  u = store.dequeue(int(store.queue.size()))
  steps = tf.nest.map_structure(time_major, u.steps)
  q, _ = agent.online.unroll(steps.observation, steps.first, u.initial_state)
  np.testing.assert_array_equal(tf.argmax(q, -1, output_type=tf.int32).numpy(), steps.agent_output["action"].numpy())


def test_checkpoint_restores_networks_optimizer_and_counters(tmp_path):
  agent = make_agent(target_update_period=2)
  for _ in range(3):
    agent.train(random_batch(6), np.ones(B, np.float32))
  path = tf.train.Checkpoint(agent=agent).save(str(tmp_path / "ckpt"))
  other = make_agent(target_update_period=2)
  tf.train.Checkpoint(agent=other).restore(path).assert_existing_objects_matched()
  for a, b in zip(agent.variables, other.variables):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  assert int(other.updates) == 3 and int(other.target_updates) == 2
  assert int(other.optimizer.iterations) == 3


def test_bad_sequence_settings_are_rejected():
  with pytest.raises(ValueError, match="burn_in"):
    make_agent(burn_in=L)
  with pytest.raises(ValueError, match="sequence_overlap"):
    make_agent(sequence_overlap=BURN_IN)  # transition BURN_IN of the next sequence would never be trained


def test_policy_is_greedy_with_recurrent_state():
  agent = make_agent()
  policy = agent.policy()
  obs = tf.constant(np.random.default_rng(0).normal(size=(5, 3)), tf.float32)
  out = policy.serving_default(obs, tf.zeros([5, 8]), tf.zeros([5, 8]))
  q, state = agent.online(obs, tf.zeros([5], tf.bool), agent.initial_state(5))
  # The exported graph and the eager call may round differently (float32): 1e-7 absolute near zero.
  np.testing.assert_allclose(out["q"].numpy(), q.numpy(), rtol=1e-6, atol=1e-7)
  greedy = np.argmax(q.numpy(), -1)
  np.testing.assert_array_equal(out["action"].numpy(), greedy)
  np.testing.assert_array_equal(out["greedy_action"].numpy(), greedy)
  np.testing.assert_array_equal(np.argmax(out["logits"].numpy(), -1), greedy)
  np.testing.assert_allclose(np.exp(out["logits"].numpy()).sum(-1), 1.0, rtol=1e-5)
  np.testing.assert_allclose(out["state_0"].numpy(), state[0].numpy(), rtol=1e-6, atol=1e-7)


# ------------------------------------------------------- frame compression ---


def _stacked_episode_frames(rng, b, t, k, first):
  """Observations [b, t, 2, 2, k] built like FrameStackObservation(padding_type="reset")."""
  obs = np.zeros((b, t, 2, 2, k), np.uint8)
  for i in range(b):
    stack = collections.deque([rng.integers(0, 255, (2, 2), dtype=np.uint8)] * k, maxlen=k)  # mid-episode
    for s in range(t):
      frame = rng.integers(0, 255, (2, 2), dtype=np.uint8)
      if first[i, s]:
        stack.extend([frame] * k)
      else:
        stack.append(frame)
      obs[i, s] = np.stack(stack, -1)
  return obs


def test_frame_stack_compression_round_trips_and_saves_memory():
  rng = np.random.default_rng(0)
  first = rng.random((3, 12)) < 0.2
  obs = _stacked_episode_frames(rng, 3, 12, 4, first)
  fs = r2d2_agent.FrameStackCompressor(obs.shape[2:], 4)
  frames = fs.compress(obs, first)
  assert frames.shape == (3, 12 + 3, 2, 2, 1)
  np.testing.assert_array_equal(fs.decompress(frames, first), obs)
  zero_padded = obs.copy()
  zero_padded[first] = 0  # not how the env stacks frames: refused, not silently corrupted
  with pytest.raises(ValueError, match="frame_stack"):
    fs.compress(zero_padded, first)


# -------------------------------------------------------------- end to end ---


@pytest.mark.learning
def test_atari_r2d2_smoke(tmp_path, runs):  # noqa: F811
  """Pong, 2 actors, conv torso + LSTM with tiny sizes, frame-stack compression, a few thousand frames."""
  run = runs(
    tmp_path / "run",
    "--config.total_environment_frames=3000",
    "--config.env_batch_size=2",
    "--config.inference_batch_size=4",
    "--config.batch_size=2",
    "--config.unroll_length=10",
    "--config.unroll_queue_capacity=8",
    "--config.agent.burn_in=2",
    "--config.agent.lstm_size=16",
    "--config.agent.cnn_hidden=32",
    "--config.agent.head_hidden=16",
    "--config.agent.min_replay_size=4",
    "--config.agent.replay_capacity=64",
    "--config.agent.samples_per_insert=2.0",
    "--config.agent.target_update_period=5",
    config=ATARI_R2D2,
  )
  assert run.wait(240) == 0, run.output()
  assert "learner stopped at" in run.output()
  assert os.listdir(os.path.join(run.logdir, "export"))
  metrics = [m for m in run.metrics() if "replay/bytes" in m]
  assert metrics and metrics[-1]["replay/bytes"] > 0
  _no_process_left(run)
