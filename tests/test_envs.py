"""Tests for envs: config, CartPole limits, Atari preprocessing, vector autoreset.

Atari checks read the emulator directly (frame counter, screen, cloned states),
so they test what the wrappers do, not only how they were configured.
"""

from __future__ import annotations

import cv2
import gymnasium
import ml_collections
import numpy as np
import pytest
from gymnasium import spaces

import envs

PONG = "ALE/Pong-v5"


class TinyEnv(gymnasium.Env):
  """Counts steps; terminates when the counter reaches `size`."""

  def __init__(self, size: int = 10):
    self.size = size
    self.observation_space = spaces.Box(0, size, (1,), np.float32)
    self.action_space = spaces.Discrete(2)
    self._t = 0

  def reset(self, *, seed=None, options=None):
    super().reset(seed=seed)
    self._t = 0
    return np.zeros(1, np.float32), {}

  def step(self, action):
    self._t += 1
    obs = np.array([self._t], np.float32)
    return obs, 1.0, self._t >= self.size, False, {}


# Registered when this module is imported, which is what gymnasium's
# "module:EnvName-v0" syntax does for a user's module.
gymnasium.register("SeedTinyEnv-v0", entry_point=f"{__name__}:TinyEnv")


def atari(**overrides) -> ml_collections.ConfigDict:
  config = envs.env_config(PONG)
  for k, v in overrides.items():
    if k == "max_episode_steps":
      config.max_episode_steps = v
    else:
      setattr(config.atari, k, v)
  return config


def frame_number(env: gymnasium.Env) -> int:
  return env.unwrapped.ale.getEpisodeFrameNumber()


# --- config ---------------------------------------------------------------


def test_env_config_defaults_and_overrides():
  config = envs.env_config("CartPole-v1")
  assert config.id == "CartPole-v1"
  assert config.max_episode_steps is None
  assert config.kwargs.to_dict() == {}
  config.max_episode_steps = 7  # the placeholder is typed int: overrides work
  assert config.max_episode_steps == 7
  with pytest.raises(TypeError):
    config.max_episode_steps = "seven"
  a = config.atari
  assert (a.repeat_action_probability, a.full_action_space, a.max_episode_frames) == (0.0, False, 108_000)
  assert (a.noop_max, a.frame_skip, a.screen_size, a.grayscale) == (30, 4, 84, True)
  assert (a.terminal_on_life_loss, a.frame_stack) == (False, 4)
  assert not envs.is_atari(config)
  assert envs.is_atari(envs.env_config(PONG))


# --- CartPole -------------------------------------------------------------


def test_cartpole_spaces():
  env = envs.make(envs.env_config("CartPole-v1"), seed=0)
  obs, _ = env.reset(seed=0)
  assert obs.shape == (4,) and obs.dtype == np.float32
  assert env.observation_space.contains(obs)
  assert env.action_space == spaces.Discrete(2)


def test_cartpole_step_limit_truncates():
  config = envs.env_config("CartPole-v1")
  config.max_episode_steps = 5
  env = envs.make(config)
  env.reset(seed=0)
  for t in range(5):
    # Alternating pushes keep the pole up for far longer than 5 steps.
    _, _, terminated, truncated, _ = env.step(t % 2)
    if t < 4:
      assert not (terminated or truncated)
  assert truncated and not terminated


def test_cartpole_fall_terminates():
  env = envs.make(envs.env_config("CartPole-v1"))
  env.reset(seed=0)
  for _ in range(100):  # always pushing left drops the pole in ~10 steps
    _, _, terminated, truncated, _ = env.step(0)
    if terminated or truncated:
      break
  assert terminated and not truncated


def test_make_seed_makes_unseeded_resets_reproducible():
  config = envs.env_config("CartPole-v1")
  a, b = envs.make(config, seed=3), envs.make(config, seed=3)
  np.testing.assert_array_equal(a.reset()[0], b.reset()[0])
  assert a.action_space.sample() == b.action_space.sample()


# --- ids ------------------------------------------------------------------


def test_unknown_id_error_names_it():
  with pytest.raises(gymnasium.error.Error, match="NoSuchEnvXyz"):
    envs.make(envs.env_config("NoSuchEnvXyz-v0"))


def test_user_env_via_module_syntax():
  config = envs.env_config(f"{__name__}:SeedTinyEnv-v0")
  config.kwargs = {"size": 3}
  env = envs.make(config, seed=0)
  assert isinstance(env.unwrapped, TinyEnv) and env.unwrapped.size == 3
  env.reset()
  dones = [env.step(0)[2] for _ in range(3)]
  assert dones == [False, False, True]

  config.kwargs = {"size": 100}
  config.max_episode_steps = 2  # gymnasium's TimeLimit applies to user envs too
  env = envs.make(config)
  env.reset(seed=0)
  env.step(0)
  _, _, terminated, truncated, _ = env.step(0)
  assert truncated and not terminated


# --- Atari ----------------------------------------------------------------


def test_atari_observation_channels_last():
  env = envs.make(atari(), seed=0)
  obs, _ = env.reset(seed=0)
  assert obs.shape == (84, 84, 4) and obs.dtype == np.uint8
  assert env.observation_space == spaces.Box(0, 255, (84, 84, 4), np.uint8)
  assert env.observation_space.contains(obs)
  assert env.action_space == spaces.Discrete(6)
  # The frame is wider than tall: a transposed (W, H) frame would not match
  # a resize of the emulator screen in (H, W) order.
  screen = env.unwrapped.ale.getScreenGrayscale()
  expected = cv2.resize(screen, (84, 84), interpolation=cv2.INTER_AREA)
  np.testing.assert_array_equal(obs[..., -1], expected)


def test_atari_step_is_four_emulator_frames():
  env = envs.make(atari(), seed=0)
  env.reset(seed=0)
  for action in (0, 2, 3):
    before = frame_number(env)
    env.step(action)
    assert frame_number(env) - before == 4


def test_atari_max_pools_last_two_frames():
  """Reimplements one step on a cloned emulator state and compares."""
  env = envs.make(atari(noop_max=0), seed=0)
  env.reset(seed=0)
  ale = env.unwrapped.ale
  action_set = env.unwrapped._action_set  # pylint: disable=protected-access
  rng = np.random.default_rng(0)
  pooling_mattered = 0
  for _ in range(60):
    action = int(rng.integers(env.action_space.n))
    state = ale.cloneState()
    frames = []
    for _ in range(4):
      ale.act(action_set[action])
      frames.append(ale.getScreenGrayscale())
    ale.restoreState(state)
    obs, _, terminated, truncated, _ = env.step(action)
    assert not (terminated or truncated)
    resize = lambda f: cv2.resize(f, (84, 84), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(obs[..., -1], resize(np.maximum(frames[2], frames[3])))
    if not np.array_equal(obs[..., -1], resize(frames[3])):
      pooling_mattered += 1
  # The ball and paddles move every frame, so the last frame alone differs.
  assert pooling_mattered > 10


def test_atari_frame_stack_shifts():
  env = envs.make(atari(), seed=0)
  obs, _ = env.reset(seed=0)
  # "reset" padding: the first stack is four copies of the reset frame.
  for k in range(3):
    np.testing.assert_array_equal(obs[..., k], obs[..., 3])
  changed = False
  for t in range(40):
    new, *_ = env.step(t % env.action_space.n)
    np.testing.assert_array_equal(new[..., :3], obs[..., 1:])
    changed |= not np.array_equal(new[..., 3], obs[..., 3])
    obs = new
  assert changed  # the newest channel really carries new frames


def test_atari_frame_limit_truncates():
  env = envs.make(atari(max_episode_frames=40, noop_max=0), seed=0)
  env.reset(seed=0)
  for step in range(1, 11):  # noqa: B007  (read after the loop)
    _, _, terminated, truncated, _ = env.step(0)
    if terminated or truncated:
      break
  assert (step, truncated, terminated) == (10, True, False)
  assert frame_number(env) == 40


def test_atari_max_episode_steps_counts_agent_steps():
  env = envs.make(atari(max_episode_steps=3, noop_max=0), seed=0)
  env.reset(seed=0)
  results = [env.step(0)[2:4] for _ in range(3)]
  assert results == [(False, False), (False, False), (False, True)]
  assert frame_number(env) == 12


def test_atari_noop_reset_varies_start():
  env = envs.make(atari(noop_max=30), seed=0)
  starts = set()
  for seed in range(8):
    env.reset(seed=seed)
    starts.add(frame_number(env))
  assert len(starts) > 1 and all(1 <= s <= 30 for s in starts)

  env = envs.make(atari(noop_max=0), seed=0)
  for seed in range(3):
    env.reset(seed=seed)
    assert frame_number(env) == 0


def test_atari_action_space_and_sticky_options():
  default = envs.make(atari())
  assert default.action_space.n == 6
  assert default.unwrapped.ale.getFloat("repeat_action_probability") == 0.0
  full = envs.make(atari(full_action_space=True, repeat_action_probability=0.25))
  assert full.action_space.n == 18
  assert full.unwrapped.ale.getFloat("repeat_action_probability") == pytest.approx(0.25)


def test_atari_sticky_actions_change_dynamics():
  """Same seed and actions: identical games without sticky actions, not with."""

  def run(p: float) -> np.ndarray:
    env = envs.make(atari(noop_max=0, repeat_action_probability=p))
    env.reset(seed=0)
    # RIGHT/LEFT alternating every step: a repeated stale action shows up as a
    # paddle offset (longer runs would pin the paddle at a wall and hide it).
    return np.stack([env.step(2 + t % 2)[0] for t in range(20)])

  np.testing.assert_array_equal(run(0.0), run(0.0))
  assert not np.array_equal(run(0.0), run(0.5))


def test_atari_kwargs_cannot_bypass_atari_config():
  config = atari()
  config.kwargs = {"frameskip": 4}
  with pytest.raises(ValueError, match="config.atari"):
    envs.make(config)


# --- vector ---------------------------------------------------------------


def test_vector_next_step_autoreset():
  config = envs.env_config("CartPole-v1")
  config.max_episode_steps = 3
  vec = envs.make_vector(config, 3, seed=7)
  assert vec.autoreset_mode == gymnasium.vector.AutoresetMode.NEXT_STEP
  obs, _ = vec.reset(seed=7)
  assert obs.shape == (3, 4)
  actions = np.array([0, 1, 1])
  for t in range(3):
    obs, rewards, terminated, truncated, _ = vec.step(actions)
    assert not terminated.any()
    assert truncated.all() == (t == 2)
  # The step after the end: reset obs, reward 0, no flags; the action is ignored.
  obs, rewards, terminated, truncated, _ = vec.step(np.array([1, 0, 1]))
  assert obs.shape == (3, 4)
  np.testing.assert_array_equal(rewards, 0.0)
  assert not terminated.any() and not truncated.any()
  # Same as a single env reset (unseeded) after the same episode.
  for i in range(3):
    env = envs.make(config)
    env.reset(seed=7 + i)
    for _ in range(3):
      env.step(int(actions[i]))
    np.testing.assert_array_equal(obs[i], env.reset()[0])
  # Then ordinary stepping resumes.
  _, rewards, *_ = vec.step(actions)
  np.testing.assert_array_equal(rewards, 1.0)


def test_vector_seeding_reproducible():
  config = envs.env_config("CartPole-v1")

  def rollout(seed: int) -> np.ndarray:
    vec = envs.make_vector(config, 3, seed=seed)
    obs = [vec.reset(seed=seed)[0]]
    for t in range(5):
      obs.append(vec.step(np.full(3, t % 2))[0])
    return np.stack(obs)

  a = rollout(11)
  np.testing.assert_array_equal(a, rollout(11))
  assert not np.array_equal(a, rollout(12))
  assert not np.array_equal(a[0, 0], a[0, 1])  # sub-envs get distinct seeds


def test_vector_atari_batch_of_three():
  config = atari(native_vector=False)
  vec = envs.make_vector(config, 3, seed=5)
  assert vec.single_observation_space == spaces.Box(0, 255, (84, 84, 4), np.uint8)
  assert vec.action_space == spaces.MultiDiscrete([6, 6, 6])
  obs, _ = vec.reset(seed=5)
  assert obs.shape == (3, 84, 84, 4) and obs.dtype == np.uint8
  starts = [frame_number(e) for e in vec.envs]
  assert len(set(starts)) > 1  # per-env seeds give different no-op starts

  again = envs.make_vector(config, 3, seed=5)
  obs2, _ = again.reset(seed=5)
  np.testing.assert_array_equal(obs, obs2)
  assert [frame_number(e) for e in again.envs] == starts


def test_vector_atari_frame_limit_then_autoreset():
  # No no-ops, so all three hit the 40-frame limit on the same (10th) step.
  vec = envs.make_vector(atari(max_episode_frames=40, noop_max=0, native_vector=False), 3, seed=5)
  first, _ = vec.reset(seed=5)
  noop = np.zeros(3, int)
  for step in range(1, 11):
    obs, _, terminated, truncated, _ = vec.step(noop)
    assert not terminated.any()
    assert truncated.all() == (step == 10) and truncated.any() == (step == 10)
  obs, rewards, terminated, truncated, _ = vec.step(np.array([1, 2, 3]))
  np.testing.assert_array_equal(rewards, 0.0)
  assert not (terminated | truncated).any()
  assert [frame_number(e) for e in vec.envs] == [0, 0, 0]
  np.testing.assert_array_equal(obs, first)  # Pong's start screen, unseeded too


# --- ale_py's native vector env --------------------------------------------


def test_native_vector_steps_exactly_like_the_gymnasium_wrappers():
  """Same observations (stack order, reset padding), rewards and episode ends, across episode ends."""
  python = envs.make_vector(atari(noop_max=0, native_vector=False), 2, seed=3)
  native = envs.make_vector(atari(noop_max=0), 2, seed=3)
  assert isinstance(python, gymnasium.vector.SyncVectorEnv) and not isinstance(native, gymnasium.vector.SyncVectorEnv)
  assert native.single_observation_space == python.single_observation_space
  assert native.single_action_space == python.single_action_space
  a, _ = python.reset(seed=3)
  b, _ = native.reset(seed=3)
  np.testing.assert_array_equal(a, b)
  rng = np.random.default_rng(0)
  ends = 0
  for _ in range(2_200):  # a random Pong player loses a game in ~900 steps
    actions = rng.integers(0, 6, size=2)
    a, ra, ta, ua, _ = python.step(actions)
    b, rb, tb, ub, _ = native.step(actions)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ra, rb)
    np.testing.assert_array_equal(ta, tb)
    np.testing.assert_array_equal(ua, ub)
    ends += int(ta.sum())
  assert ends >= 2


def test_native_vector_truncates_at_the_frame_limit_and_autoresets():
  vec = envs.make_vector(atari(max_episode_frames=40, noop_max=0), 3, seed=5)
  first, _ = vec.reset(seed=5)
  assert first.shape == (3, 84, 84, 4) and first.dtype == np.uint8
  for step in range(1, 11):
    _, _, terminated, truncated, _ = vec.step(np.zeros(3, int))
    assert not terminated.any() and truncated.all() == (step == 10) and truncated.any() == (step == 10)
  obs, rewards, terminated, truncated, _ = vec.step(np.array([1, 2, 3]))
  np.testing.assert_array_equal(rewards, 0)
  assert not (terminated | truncated).any()
  np.testing.assert_array_equal(obs, first)  # the reset frame repeated through the stack, as `make` does
  np.testing.assert_array_equal(obs[..., 0], obs[..., 3])


def test_native_vector_seeding_reproducible():
  def rollout(seed):
    vec = envs.make_vector(atari(), 3, seed=seed)
    obs = [vec.reset(seed=seed)[0]]
    for _ in range(30):
      obs.append(vec.step(np.full(3, 2))[0])
    return np.stack(obs)

  a = rollout(11)
  np.testing.assert_array_equal(a, rollout(11))
  assert not np.array_equal(a, rollout(12))


@pytest.mark.parametrize(
  "override",
  [dict(native_vector=False), dict(grayscale=False), dict(max_episode_steps=100)],
)
def test_native_vector_only_where_it_reproduces_make(override):
  vec = envs.make_vector(atari(**override), 1, seed=0)
  assert isinstance(vec, gymnasium.vector.SyncVectorEnv)
  config = atari()
  config.kwargs = {"mode": 0}
  assert isinstance(envs.make_vector(config, 1, seed=0), gymnasium.vector.SyncVectorEnv)
