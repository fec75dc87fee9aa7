"""PPO agent: normaliser, PopArt, GAE masking at episode boundaries, policy-lag filtering, learning."""

import os
import re

import gymnasium
import numpy as np
import pytest
import tensorflow as tf
import test_train
from test_train import runs  # noqa: F401  (fixture)

from agents.ppo import config as ppo_config
from agents.ppo import networks
from agents.ppo.agent import PPOAgent
from seed.runtime.env_store import Step, Unroll

T = 4


class FakeSource:
  """A Source over a fixed list of batch-major unrolls."""

  def __init__(self, unroll):
    self.unroll = unroll

  def size(self):
    return tf.constant(1)

  def dequeue(self, n):
    return self.unroll


def make_unroll(agent, b, version=0, first=None, terminated=None, reward=1.0, seed=0):
  rng = np.random.default_rng(seed)
  obs = rng.normal(size=(b, T + 1, 4)).astype(np.float32)
  first = np.zeros((b, T + 1), bool) if first is None else first
  out, _ = agent.step(
    tf.constant(obs.reshape(-1, 4)), tf.zeros([b * (T + 1)], tf.bool), (), tf.zeros([b * (T + 1)], tf.int32)
  )
  out = {k: tf.reshape(v, [b, T + 1, *v.shape[1:]]) for k, v in out.items()}
  out["policy_version"] = tf.fill([b, T + 1], tf.constant(version, tf.int64))
  steps = Step(
    tf.constant(obs),
    tf.fill([b, T + 1], reward),
    tf.constant(np.zeros((b, T + 1), bool) if terminated is None else terminated),
    tf.zeros([b, T + 1], tf.bool),
    tf.constant(first),
    out,
  )
  return Unroll((), steps)


def make_agent(action_space=gymnasium.spaces.Discrete(2), **overrides):
  c = ppo_config.get_config()
  c.minibatch_size = 2
  c.update(overrides)
  return PPOAgent(c, gymnasium.spaces.Box(-np.inf, np.inf, (4,), np.float32), action_space, batch_size=4)


def test_running_normalizer_matches_numpy():
  norm = networks.RunningNormalizer([3])
  rng = np.random.default_rng(1)
  chunks = [rng.normal(2.0, 3.0, size=(n, 3)).astype(np.float32) for n in (5, 50, 7)]
  for chunk in chunks:
    norm.update(tf.constant(chunk))
  data = np.concatenate(chunks)
  np.testing.assert_allclose(norm.mean.numpy(), data.mean(0), rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(norm.var.numpy(), data.var(0), rtol=1e-3)
  x = np.array([[2.0, 2.0, 1e6]], np.float32)
  np.testing.assert_allclose(norm(x).numpy()[0, 2], 10.0)  # clipped


def test_popart_update_preserves_outputs_and_tracks_targets():
  value = networks.Value([8], popart=True, popart_step=0.5)
  x = tf.random.normal([16, 4], seed=3)
  before = value(x).numpy()
  targets = tf.constant(np.full([3, 5], 100.0, np.float32))
  value.update_stats(targets, tf.ones([3, 5]))
  np.testing.assert_allclose(value(x).numpy(), before, rtol=1e-4, atol=1e-3)
  assert value.mu.numpy() == pytest.approx(50.0)


def test_gae_does_not_leak_across_an_episode_boundary():
  agent = make_agent(normalize_advantages=False)
  first = np.zeros((4, T + 1), bool)
  first[:, 2] = True  # step 2 starts a new episode: transition 1 -> 2 is not real
  unroll = make_unroll(agent, 4, first=first)
  adv, returns, values, mask = agent._prepare_fn(unroll.steps, tf.ones([4], tf.bool))
  np.testing.assert_array_equal(mask.numpy()[:, 1], 0.0)
  np.testing.assert_allclose(adv.numpy()[:, 1], 0.0, atol=1e-6)  # delta 0 at the fake transition
  # step 0 bootstraps from V(x_1) (a truncation-like end), not from the next episode
  v = agent.value_net(agent._normalize(unroll.steps.observation)).numpy()
  c = agent.config
  delta0 = 1.0 + c.discount * v[:, 1] - v[:, 0]
  np.testing.assert_allclose(adv.numpy()[:, 0], delta0, rtol=1e-4, atol=1e-4)


def test_stale_unrolls_are_not_trained_on_and_the_lag_is_reported():
  agent = make_agent(max_policy_lag=1)
  agent.updates.assign(5)
  logs = agent.learn(FakeSource(make_unroll(agent, 4, version=2)))
  assert logs["stale_fraction"] == 1.0 and logs["policy_lag/max"] == 3
  assert int(agent.updates.numpy()) == 5  # nothing trained
  logs = agent.learn(FakeSource(make_unroll(agent, 4, version=5)))
  assert logs["stale_fraction"] == 0.0 and "loss/policy" in logs
  assert int(agent.updates.numpy()) == 6


def test_learning_rate_and_clip_range_decay_linearly_to_zero_over_the_run():
  c = ppo_config.get_config()
  c.update(minibatch_size=2, num_epochs=1, lr_decay=True, clip_decay=True, learning_rate=1e-3, clip_epsilon=0.2)
  space = gymnasium.spaces.Box(-np.inf, np.inf, (4,), np.float32)
  agent = PPOAgent(c, space, gymnasium.spaces.Discrete(2), batch_size=4, total_updates=4)  # 2 per learn
  clips, rates = [], []
  for _ in range(3):
    unroll = make_unroll(agent, 4, version=int(agent.updates.numpy()))
    clips.append(agent.learn(FakeSource(unroll))["clip_epsilon"])  # the batch's last minibatch update
    rates.append(float(agent.optimizer.learning_rate))  # the rate of that update
  np.testing.assert_allclose(clips, [0.2 * 3 / 4, 0.2 * 1 / 4, 0.0], atol=1e-7)
  np.testing.assert_allclose(rates, [1e-3 * 3 / 4, 1e-3 * 1 / 4, 0.0], atol=1e-9)
  constant = make_agent()  # off by default: both stay as configured
  assert constant.learn(FakeSource(make_unroll(constant, 4)))["clip_epsilon"] == pytest.approx(0.2)


def test_learning_raises_the_probability_of_rewarded_actions():
  tf.random.set_seed(0)  # fixed init and sampled actions: the check is deterministic
  # discount 0: each action is credited with exactly its own reward
  agent = make_agent(normalize_observations=False, learning_rate=1e-2, discount=0.0)
  unroll = make_unroll(agent, 4)
  # reward 1 only after action 1
  actions = unroll.steps.agent_output["action"]
  rewards = tf.concat([tf.zeros([4, 1]), tf.cast(actions[:, :-1], tf.float32)], axis=1)
  steps = unroll.steps._replace(reward=rewards)
  obs = tf.reshape(steps.observation, [-1, 4])
  p_before = tf.reduce_mean(agent.policy_net.distribution(obs).probs_parameter()[:, 1]).numpy()
  for _ in range(5):
    agent.learn(FakeSource(Unroll((), steps)))
    steps = steps._replace(agent_output={**steps.agent_output, "policy_version": tf.fill([4, T + 1], agent.updates)})
  p_after = tf.reduce_mean(agent.policy_net.distribution(obs).probs_parameter()[:, 1]).numpy()
  assert p_after > p_before + 0.05


def test_continuous_actions_respect_the_bounds():
  space = gymnasium.spaces.Box(np.array([-2.0, 0.0], np.float32), np.array([2.0, 10.0], np.float32))
  agent = make_agent(action_space=space, initial_log_std=1.0)
  out, _ = agent.step(tf.random.normal([256, 4]), tf.zeros([256], tf.bool), (), tf.zeros([256], tf.int32))
  a = out["action"].numpy()
  assert a.shape == (256, 2)
  assert (a[:, 0] >= -2).all() and (a[:, 0] <= 2).all() and (a[:, 1] >= 0).all() and (a[:, 1] <= 10).all()
  assert np.isfinite(out["log_prob"].numpy()).all()
  logs = agent.learn(FakeSource(make_unroll(agent, 4)))
  assert np.isfinite(logs["loss/total"])


def test_ppo_config_errors_come_before_anything_starts(tmp_path):
  import subprocess
  import sys

  r = subprocess.run(
    [
      sys.executable,
      "-m",
      "seed.train",
      f"--config={test_train.REPO}/configs/cartpole_ppo.py",
      "--config.agent.minibatch_size=5",
      f"--logdir={tmp_path}/run",
    ],
    cwd=test_train.REPO,
    capture_output=True,
    text=True,
    timeout=120,
    env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=test_train.REPO),
  )
  assert r.returncode != 0 and "must be a multiple of config.agent.minibatch_size" in r.stderr
  assert not os.path.exists(tmp_path / "run")


@pytest.mark.learning
@pytest.mark.timeout(720)
def test_main_job_solves_cartpole_within_its_frame_cap_and_says_how_long_it_took(tmp_path, runs):  # noqa: F811
  """scripts/run.sh's job, configs/cartpole_ppo.py as shipped, on seeds 0-2: at least two of them stop at a
  last-50 mean >= 475 within the 100k-frame budget and print the frames and seconds that took.

  Two of three, not all: PPO misses now and then. 25 of 26 seeds solved on 2026-12-07 (32-58k frames);
  seed 25 collapsed from a mean of 255 to 90 and was back at 326 when its decayed learning rate reached 0.
  A broken learner misses on every seed.
  """
  solved, missed = [], []
  for seed in (0, 1, 2):
    run = runs(
      tmp_path / f"run{seed}",
      f"--config.seed={seed}",
      config=os.path.join(test_train.REPO, "configs", "cartpole_ppo.py"),
    )
    assert run.wait(240) == 0, run.output()
    test_train._no_process_left(run)
    returns = test_train._episodes(run.logdir)
    goal = re.search(
      r"goal reached: mean return of the last 50 episodes ([\d.]+) >= 475.0 at ([\d,]+) frames, ([\d.]+) s "
      r"after the Python process started",
      run.output(),
    )
    if goal is None:
      assert run.frames() >= 100_000, run.output()  # a miss used its whole budget
      missed.append(f"seed {seed}: best last-50 mean {test_train._best_recent_mean(returns):.1f}")
      continue
    frames = int(goal[2].replace(",", ""))
    assert float(goal[1]) >= 475 and frames <= 100_000 and 0 < float(goal[3]) < 240
    assert test_train._best_recent_mean(returns) >= 475
    solved.append(f"seed {seed}: {frames} frames, {float(goal[3]):.1f} s")
  print("solved:", solved, "missed:", missed)
  assert len(solved) >= 2, f"solved {solved}, missed {missed}"


@pytest.mark.learning
def test_mujoco_ppo_smoke(tmp_path, runs):  # noqa: F811
  run = runs(
    tmp_path / "run",
    "--config.total_environment_frames=8192",
    "--config.batch_size=8",
    "--config.unroll_queue_capacity=8",
    config=os.path.join(test_train.REPO, "configs", "mujoco_ppo.py"),
  )
  assert run.wait(240) == 0, run.output()
  assert "learner stopped at 8192 frames" in run.output()
  assert os.listdir(os.path.join(run.logdir, "export"))
  test_train._no_process_left(run)
