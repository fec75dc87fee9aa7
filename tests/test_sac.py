"""SAC agent (agents.sac.agent): inference step, replay path, gradient step, export; end-to-end runs.

The unit tests feed the agent from a small in-memory Source of numpy-built
unrolls; the end-to-end tests run `python -m seed.train` like a user does
(Pendulum learns; a HalfCheetah smoke run exits cleanly with an export).
"""

import os
import re
import time

import gymnasium
import numpy as np
import pytest
import tensorflow as tf
from helpers import REPO
from test_train import Run, _episodes, _no_process_left, runs  # noqa: F401  (runs is a fixture)

from agents.sac import agent as sac_agent
from agents.sac import config as sac_config
from seed.runtime import config as seed_config
from seed.runtime.agent import Source
from seed.runtime.env_store import Step, Unroll

PENDULUM = os.path.join(REPO, "configs", "pendulum_sac.py")
MUJOCO = os.path.join(REPO, "configs", "mujoco_sac.py")

OBS_DIM = 3
LOW = np.array([-2.0, 0.0], np.float32)  # asymmetric bounds: scaling must be exact
HIGH = np.array([2.0, 1.0], np.float32)
T = 4  # unroll_length; unrolls hold T + 1 steps


def make_config(**agent):
  c = seed_config.runtime_config()
  c.agent_name = "sac"
  c.agent = sac_config.get_config()
  c.agent.actor_sizes = (32, 32)
  c.agent.critic_sizes = (32, 32)
  c.agent.batch_size = 16
  c.agent.min_replay_size = 16
  c.agent.samples_per_insert = 16.0
  c.agent.replay_capacity = 1000
  c.agent.random_steps = 0
  c.agent.update(agent)
  return c


def make_agent(**agent):
  obs_space = gymnasium.spaces.Box(-10.0, 10.0, (OBS_DIM,), np.float32)
  act_space = gymnasium.spaces.Box(LOW, HIGH, dtype=np.float32)
  return sac_agent.make_agent(make_config(**agent), obs_space, act_space)


class FakeSource(Source):
  """Completed unrolls built in numpy; dequeue fails instead of blocking when empty."""

  def __init__(self, rng, count):
    self.unrolls = [self._unroll(rng) for _ in range(count)]
    self.dequeued = 0

  @staticmethod
  def _unroll(rng):
    first = np.zeros(T + 1, bool)
    first[0] = True
    first[3] = rng.uniform() < 0.5  # sometimes an episode boundary inside: one non-transition
    terminated = np.zeros(T + 1, bool)
    terminated[2] = first[3] and rng.uniform() < 0.5
    steps = Step(
      observation=rng.normal(size=(T + 1, OBS_DIM)).astype(np.float32),
      reward=rng.normal(size=T + 1).astype(np.float32),
      terminated=terminated,
      truncated=np.zeros(T + 1, bool),
      first=first,
      agent_output={"action": rng.uniform(LOW, HIGH, size=(T + 1, 2)).astype(np.float32)},
    )
    return Unroll((), steps)

  def size(self):
    return tf.constant(len(self.unrolls) - self.dequeued, tf.int32)

  def dequeue(self, n):
    assert self.dequeued + n <= len(self.unrolls), "the test source ran dry (a real one would block)"
    batch = self.unrolls[self.dequeued : self.dequeued + n]
    self.dequeued += n
    return tf.nest.map_structure(lambda *xs: tf.constant(np.stack(xs)), *batch)

  def transitions(self, upto):
    """Real transitions in the first `upto` unrolls (steps into a `first` observation don't count)."""
    return sum(int(np.sum(~u.steps.first[1:])) for u in self.unrolls[:upto])


def fixed_batch(agent, rng):
  b = agent.config.batch_size
  return {
    "observation": rng.normal(size=(b, OBS_DIM)).astype(np.float32),
    "action": rng.uniform(-1, 1, size=(b, 2)).astype(np.float32),
    "reward": rng.normal(size=b).astype(np.float32),
    "discount": np.full(b, 0.99, np.float32),
    "next_observation": rng.normal(size=(b, OBS_DIM)).astype(np.float32),
  }


@pytest.fixture(autouse=True)
def _seed():
  tf.random.set_seed(0)


# ------------------------------------------------------------- interface ---


def test_only_box_action_spaces():
  obs = gymnasium.spaces.Box(-1.0, 1.0, (3,), np.float32)
  with pytest.raises(ValueError, match="Box"):
    sac_agent.make_agent(make_config(), obs, gymnasium.spaces.Discrete(3))
  with pytest.raises(ValueError, match="finite action bounds"):
    sac_agent.make_agent(make_config(), obs, gymnasium.spaces.Box(-np.inf, np.inf, (2,), np.float32))


@pytest.mark.parametrize("random_steps", [0, 10_000])
def test_step_actions_are_within_bounds(random_steps):
  agent = make_agent(random_steps=random_steps)
  assert agent.state_spec == () and agent.initial_state(3) == ()
  assert agent.output_spec == {"action": tf.TensorSpec([2], tf.float32)}
  obs = tf.constant(np.random.default_rng(0).normal(scale=100.0, size=(512, OBS_DIM)), tf.float32)
  out, state = agent.step(obs, tf.zeros([512], tf.bool), (), tf.range(512))
  action = out["action"].numpy()
  assert action.shape == (512, 2) and action.dtype == np.float32 and state == ()
  assert np.all(action >= LOW) and np.all(action <= HIGH)
  if random_steps:  # uniform over the whole box
    assert np.all(np.abs(action.mean(0) - (LOW + HIGH) / 2) < 0.1 * (HIGH - LOW)), action.mean(0)
    assert np.all(action.min(0) < LOW + 0.05 * (HIGH - LOW)) and np.all(action.max(0) > HIGH - 0.05 * (HIGH - LOW))
  assert int(agent.acted_steps.numpy()) == 512


def test_random_actions_only_for_the_first_random_steps():
  agent = make_agent(random_steps=600, log_std_max=-4.0, log_std_min=-5.0)  # near-deterministic policy
  obs = tf.zeros([512, OBS_DIM])
  spread = lambda: float(np.std(agent.step(obs, tf.zeros([512], tf.bool), (), tf.range(512))[0]["action"][:, 0]))
  assert spread() > 0.5  # 512 random actions in [-2, 2]
  assert spread() > 0.1  # 88 random, 424 from the policy
  assert spread() < 0.05  # the policy only
  assert int(agent.acted_steps.numpy()) == 3 * 512


# ---------------------------------------------------------------- replay ---


def test_learn_fills_the_replay_from_the_source_and_trains():
  rng = np.random.default_rng(1)
  agent = make_agent()
  source = FakeSource(rng, count=64)
  logs = agent.learn(source)
  # 4 unrolls of <= 4 transitions are needed to reach 16; pull() takes what is ready.
  assert source.dequeued == 64
  assert logs["replay/size"] == source.transitions(64) == len(agent.replay)
  assert logs["replay/bytes"] == agent.replay.nbytes > 0
  for key in ("loss/critic", "loss/policy", "loss/temperature", "alpha", "q_mean", "entropy"):
    assert np.isfinite(float(logs[key])), key
  assert logs["replay/ratio"] == pytest.approx(16 / logs["replay/inserted"])
  # Stored items: single-step transitions, actions normalised to [-1, 1].
  items = agent.replay.sample(200, np.random.default_rng(0))
  assert items["observation"].shape == items["next_observation"].shape == (200, OBS_DIM)
  assert items["action"].shape == (200, 2) and np.all(np.abs(items["action"]) <= 1.0)
  assert items["reward"].shape == items["discount"].shape == (200,)
  assert set(np.unique(items["discount"])) <= {0.0, np.float32(0.99)}
  assert int(agent.gradient_steps.numpy()) == 1


def test_unrolls_become_single_step_transitions():
  agent = make_agent()
  # One unroll: x0 -> x1 (terminal) | x2 starts an episode (x1 -> x2 is not a transition) -> x3 -> x4.
  obs = np.arange(5 * OBS_DIM, dtype=np.float32).reshape(1, 5, OBS_DIM)
  actions = np.array([[[-2.0, 0.0], [2.0, 1.0], [0.0, 0.5], [1.0, 0.25], [0.0, 0.0]]], np.float32)
  steps = Step(
    observation=obs,
    reward=np.array([[9.0, 1.0, 9.0, 3.0, 4.0]], np.float32),
    terminated=np.array([[0, 1, 0, 0, 0]], bool),
    truncated=np.zeros((1, 5), bool),
    first=np.array([[1, 0, 1, 0, 0]], bool),
    agent_output={"action": actions},
  )
  items, count = agent._to_items(Unroll((), steps))
  assert count == 3
  np.testing.assert_array_equal(items["observation"], obs[0, [0, 2, 3]])
  np.testing.assert_array_equal(items["next_observation"], obs[0, [1, 3, 4]])
  np.testing.assert_allclose(items["action"], [[-1.0, -1.0], [0.0, 0.0], [0.5, -0.5]])  # back to [-1, 1]
  np.testing.assert_array_equal(items["reward"], [1.0, 3.0, 4.0])
  np.testing.assert_allclose(items["discount"], [0.0, 0.99, 0.99])


def test_learn_holds_the_replay_ratio():
  rng = np.random.default_rng(2)
  spi, batch, min_size = 8.0, 16, 16  # 2 new transitions per batch of 16, once min_size is there
  agent = make_agent(samples_per_insert=spi)
  source = FakeSource(rng, count=5)  # 5 ready at the start
  more = FakeSource(rng, count=40).unrolls
  pending = []
  for _ in range(40):
    source.unrolls.append(more.pop())  # actors deliver one unroll per step
    feeder = agent.feeder
    inserted = feeder.inserted if feeder else 0
    needed = feeder is None or feeder.sampled + batch > spi * (feeder.inserted - min_size)
    agent.learn(source)
    feeder = agent.feeder
    # Pulls only when the next batch needs new data: the queue is left to fill
    # (backpressure on the actors) while training is within the ratio.
    assert feeder.inserted == inserted or needed
    # Never above the ratio; the first min_size transitions buy no samples.
    assert feeder.sampled <= spi * (feeder.inserted - min_size)
    pending.append(len(source.unrolls) - source.dequeued)
  assert feeder.sampled == batch * int(agent.gradient_steps.numpy()) == batch * 40
  assert max(pending) >= 5, pending


# ---------------------------------------------------------- gradient step ---


def test_critic_loss_decreases_on_a_fixed_batch():
  # A small, fixed alpha keeps the sampled entropy term from making the targets noisy.
  agent = make_agent(critic_learning_rate=3e-3, initial_alpha=0.01, alpha_learning_rate=0.0)
  batch = fixed_batch(agent, np.random.default_rng(3))
  batch["discount"][:] = 0.9  # bootstrapped targets (through the target critics)
  losses = [float(agent._train(batch)["loss/critic"]) for _ in range(100)]
  assert np.mean(losses[-10:]) < 0.3 * np.mean(losses[:5]), losses


def test_target_critics_move_by_tau_and_the_online_networks_train():
  tau = 0.05
  agent = make_agent(tau=tau)
  pairs = ((agent.critic1, agent.target_critic1), (agent.critic2, agent.target_critic2))
  for online, target in pairs:  # targets start as copies
    for s, t in zip(online.variables, target.variables):
      np.testing.assert_array_equal(s.numpy(), t.numpy())
  agent._train(fixed_batch(agent, np.random.default_rng(4)))
  agent._train(fixed_batch(agent, np.random.default_rng(5)))
  before = [[t.numpy() for t in target.variables] for _, target in pairs]
  online_before = [v.numpy() for v in (*agent.actor.variables, *agent.critic1.variables, *agent.critic2.variables)]
  agent._train(fixed_batch(agent, np.random.default_rng(6)))
  online_after = [v.numpy() for v in (*agent.actor.variables, *agent.critic1.variables, *agent.critic2.variables)]
  assert all(np.any(a != b) for a, b in zip(online_after, online_before))  # every layer got a step
  moved = 0.0
  for (online, target), old in zip(pairs, before):
    for s, t, t_old in zip(online.variables, target.variables, old):
      np.testing.assert_allclose(t.numpy(), (1 - tau) * t_old + tau * s.numpy(), rtol=1e-5, atol=1e-6)
      moved += float(np.abs(t.numpy() - t_old).sum())
  assert moved > 0


@pytest.mark.parametrize(
  "target_entropy,direction",
  [
    (5.0, +1),  # above what a policy on [-1, 1]^2 can have (2 log 2): alpha must grow
    (-20.0, -1),  # far below the policy's entropy: alpha must shrink
  ],
)
def test_alpha_moves_toward_the_target_entropy(target_entropy, direction):
  agent = make_agent(target_entropy=target_entropy, initial_alpha=0.5, alpha_learning_rate=1e-2)
  batch = fixed_batch(agent, np.random.default_rng(8))
  for _ in range(5):
    logs = agent._train(batch)
  assert np.sign(float(logs["alpha"]) - 0.5) == direction
  assert float(agent.log_alpha.numpy()) == pytest.approx(np.log(float(logs["alpha"])), abs=1e-6)


def test_default_target_entropy_is_minus_action_dim():
  assert make_agent().target_entropy == -2.0


# --------------------------------------------------------- export, restore ---


def test_policy_and_checkpoint_roundtrip(tmp_path):
  # (The SavedModel export is exercised end to end in test_halfcheetah_sac_smoke.)
  agent = make_agent(random_steps=100)
  agent.step(tf.zeros([8, OBS_DIM]), tf.zeros([8], tf.bool), (), tf.range(8))
  agent._train(fixed_batch(agent, np.random.default_rng(9)))
  serve = agent.policy().serving_default
  assert [s.name for s in serve.input_signature] == ["observation"]
  obs = np.random.default_rng(0).normal(size=(64, OBS_DIM)).astype(np.float32)
  out = serve(tf.constant(obs))
  assert {"action", "greedy_action", "mean", "log_std"} <= set(out)
  for key in ("action", "greedy_action"):
    assert out[key].shape == (64, 2)
    assert np.all(out[key].numpy() >= LOW) and np.all(out[key].numpy() <= HIGH)
  expected = LOW + (np.tanh(out["mean"].numpy()) + 1) / 2 * (HIGH - LOW)
  np.testing.assert_allclose(out["greedy_action"].numpy(), expected, rtol=1e-5, atol=1e-5)

  path = tf.train.Checkpoint(agent=agent).save(str(tmp_path / "ckpt"))
  fresh = make_agent(random_steps=100)
  tf.train.Checkpoint(agent=fresh).restore(path).assert_existing_objects_matched()
  for a, b in zip(agent.variables, fresh.variables):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  assert int(fresh.acted_steps.numpy()) == 8 and int(fresh.gradient_steps.numpy()) == 1
  assert int(fresh.critic_optimizer.iterations.numpy()) == 1
  assert float(fresh.log_alpha.numpy()) == float(agent.log_alpha.numpy()) != 0.0


# ------------------------------------------------------------ end to end ---


@pytest.mark.learning
def test_pendulum_sac_learns(tmp_path, runs):
  """The learning bar: mean return >= -400 over the last 20 episodes, well within 5 minutes."""
  start = time.monotonic()
  run = runs(tmp_path / "run", config=PENDULUM)
  assert run.wait(200) == 0, run.output()
  returns = _episodes(run.logdir)
  assert len(returns) >= 20
  last = run.metrics()[-1]
  assert np.mean(returns[-20:]) >= -400, f"last 20 mean {np.mean(returns[-20:]):.1f}; {last}"
  assert last["replay/ratio"] == pytest.approx(128.0, rel=0.1)  # one gradient step per env step
  print(
    f"Pendulum: {len(returns)} episodes, {run.frames()} frames, last 20 mean "
    f"{np.mean(returns[-20:]):.1f}, {time.monotonic() - start:.0f}s"
  )
  exports = os.listdir(os.path.join(run.logdir, "export"))
  assert exports and all(e.isdigit() for e in exports), exports
  _no_process_left(run)


@pytest.mark.learning
def test_halfcheetah_sac_smoke(tmp_path, runs):
  """The whole path on MuJoCo: HalfCheetah-v5, 2 actors, 3000 frames (smaller batch to keep it
  quick), then the export plays a step."""
  run = runs(
    tmp_path / "run",
    "--config.total_environment_frames=3000",
    "--config.agent.min_replay_size=1000",
    "--config.agent.random_steps=1000",
    "--config.agent.replay_capacity=10000",
    config=MUJOCO,
  )
  assert run.wait(150) == 0, run.output()
  stopped = re.search(r"learner stopped at (\d+) frames", run.output())
  assert stopped and int(stopped.group(1)) >= 3000, run.output()
  exports = os.path.join(run.logdir, "export")
  steps = [int(e) for e in os.listdir(exports) if e.isdigit()]
  assert steps and max(steps) > 0, os.listdir(exports)  # trained: the export is named by its train step
  _no_process_left(run)
  env = gymnasium.make("HalfCheetah-v5")
  obs, _ = env.reset(seed=0)
  fn = tf.saved_model.load(os.path.join(exports, str(max(steps)))).signatures["serving_default"]
  out = fn(observation=tf.constant(obs[None]))
  assert out["action"].shape == (1, 6) and out["greedy_action"].shape == (1, 6)
  assert np.all(np.abs(out["action"].numpy()) <= 1.0)
  env.step(out["greedy_action"].numpy()[0])
  env.close()
