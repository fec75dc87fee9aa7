"""Tests for envs/catch.py: bsuite's Catch as pixels, registered as seed/Catch-v0.

The policies here read the ball and paddle from the pixels (not the env's fields), so a
scripted catch also checks that the frame shows where things are.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys
import warnings

import gymnasium
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env

import envs
from envs.catch import LEFT, RIGHT, STAY, Catch

ROWS, COLUMNS, CELL = 10, 5, (4, 8)


def cells(obs: np.ndarray, cell: tuple[int, int] = CELL) -> np.ndarray:
  """The board (rows, columns) of booleans a frame draws; asserts each cell is all-on or all-off."""
  h, w = cell
  blocks = obs[..., 0].reshape(obs.shape[0] // h, h, obs.shape[1] // w, w).transpose(0, 2, 1, 3)
  lit = blocks.reshape(*blocks.shape[:2], -1)
  assert np.all((lit == 0).all(-1) | (lit == 255).all(-1)), "a cell is partly lit"
  return lit[..., 0] == 255


def ball_and_paddle(obs: np.ndarray) -> tuple[int, int, int]:
  """(ball row, ball column, paddle column) from a frame before the ball lands (the paddle is on the bottom row)."""
  board = cells(obs)
  (paddle,) = np.flatnonzero(board[-1])
  ((ball_row, ball_col),) = np.argwhere(board[:-1])
  return int(ball_row), int(ball_col), int(paddle)


def chase(obs: np.ndarray) -> int:
  _, ball, paddle = ball_and_paddle(obs)
  return STAY + int(np.sign(ball - paddle))


def flee(obs: np.ndarray) -> int:
  _, ball, paddle = ball_and_paddle(obs)
  return LEFT if ball >= paddle else RIGHT


def play(env: gymnasium.Env, policy, seed: int | None = None) -> tuple[list[float], list[bool]]:
  obs, _ = env.reset(seed=seed)
  rewards, ends = [], []
  while not (ends and ends[-1]):
    obs, reward, terminated, truncated, _ = env.step(policy(obs))
    assert not truncated
    rewards.append(reward)
    ends.append(terminated)
  return rewards, ends


# --- dynamics --------------------------------------------------------------


@pytest.mark.parametrize("policy", [chase, flee, lambda obs: STAY])
def test_episode_is_rows_minus_one_steps_with_reward_only_at_the_end(policy):
  env = Catch()
  for seed in range(10):
    rewards, ends = play(env, policy, seed)
    assert len(rewards) == ROWS - 1
    assert ends == [False] * (ROWS - 2) + [True]
    assert rewards[:-1] == [0.0] * (ROWS - 2) and rewards[-1] in (1.0, -1.0)


def test_other_board_sizes_change_the_episode_length_and_frame():
  env = Catch(rows=6, columns=3, cell=(2, 3))
  assert env.observation_space.shape == (12, 9, 1)
  obs, _ = env.reset(seed=0)
  assert obs.shape == (12, 9, 1)
  steps = 0
  terminated = False
  while not terminated:
    obs, _, terminated, _, _ = env.step(STAY)
    steps += 1
  assert steps == 5


def test_scripted_catcher_always_wins_and_fleeing_always_loses():
  env = Catch()
  starts = set()
  for seed in range(50):
    obs, _ = env.reset(seed=seed)
    starts.add(ball_and_paddle(obs)[1])
    assert play(env, chase, seed)[0][-1] == 1.0
    assert play(env, flee, seed)[0][-1] == -1.0
  assert starts == set(range(COLUMNS))  # every start column was tried


def test_paddle_is_clipped_at_the_edges():
  env = Catch()
  obs, _ = env.reset(seed=0)
  for _ in range(4):
    obs, *_ = env.step(LEFT)
  assert ball_and_paddle(obs)[2] == 0
  for _ in range(4):
    obs, *_ = env.step(RIGHT)
  assert ball_and_paddle(obs)[2] == COLUMNS - 1


def test_random_policy_catches_one_in_columns_and_the_script_always():
  env = Catch()
  rng = np.random.default_rng(0)
  n = 2000
  env.reset(seed=0)  # later unseeded resets continue this stream
  random_returns = [sum(play(env, lambda obs: int(rng.integers(3)))[0]) for _ in range(n)]
  # Expected 1/5 * 1 + 4/5 * -1 = -0.6 (the ball's column is uniform and independent of the
  # paddle's walk); the standard error over 2,000 episodes is 0.018, so +-0.1 is > 5 sigma.
  assert abs(np.mean(random_returns) + 0.6) < 0.1
  assert all(sum(play(env, chase)[0]) == 1.0 for _ in range(200))


def test_step_before_reset_after_the_end_or_with_a_bad_action_raises():
  env = Catch()
  with pytest.raises(RuntimeError):
    env.step(STAY)
  env.reset(seed=0)
  with pytest.raises(ValueError):
    env.step(3)
  play(env, chase, 0)
  with pytest.raises(RuntimeError):
    env.step(STAY)


@pytest.mark.parametrize("kwargs", [{"rows": 1}, {"columns": 0}, {"cell": (0, 8)}, {"render_mode": "human"}])
def test_bad_constructor_arguments_raise(kwargs):
  with pytest.raises(ValueError):
    Catch(**kwargs)


# --- seeding -------------------------------------------------------------------


def start_columns(seed: int, episodes: int = 30) -> list[int]:
  env = Catch()
  cols = [ball_and_paddle(env.reset(seed=seed)[0])[1]]
  cols += [ball_and_paddle(env.reset()[0])[1] for _ in range(episodes - 1)]
  return cols


def test_same_seed_same_episodes_different_seeds_differ():
  assert start_columns(7) == start_columns(7)
  assert start_columns(7) != start_columns(8)
  env_a, env_b = Catch(), Catch()
  for seed in range(5):
    a, b = env_a.reset(seed=seed)[0], env_b.reset(seed=seed)[0]
    np.testing.assert_array_equal(a, b)
    for _ in range(ROWS - 1):
      a, b = env_a.step(RIGHT)[0], env_b.step(RIGHT)[0]
      np.testing.assert_array_equal(a, b)


# --- observation --------------------------------------------------------------


def test_observation_is_two_lit_cells_at_the_right_pixels():
  env = Catch()
  assert env.observation_space == spaces.Box(0, 255, (40, 40, 1), np.uint8)
  assert env.action_space == spaces.Discrete(3)
  obs, _ = env.reset(seed=3)
  h, w = CELL
  for t in range(ROWS - 1):
    assert obs.dtype == np.uint8 and obs.shape == (40, 40, 1)
    assert env.observation_space.contains(obs)
    assert set(np.unique(obs)) == {0, 255}
    ball_row, ball_col, paddle = ball_and_paddle(obs)
    assert ball_row == t
    expected = np.zeros_like(obs)
    expected[ball_row * h : (ball_row + 1) * h, ball_col * w : (ball_col + 1) * w] = 255
    expected[(ROWS - 1) * h :, paddle * w : (paddle + 1) * w] = 255
    np.testing.assert_array_equal(obs, expected)
    if t == 0:
      assert paddle == COLUMNS // 2  # the paddle starts in the middle
    # Two separate 4x8 blocks before the ball lands: 2 * 32 pixels lit.
    assert np.count_nonzero(obs) == 2 * h * w
    obs, *_ = env.step(chase(obs))
  # Caught: the ball is drawn on the paddle, one block left.
  assert np.count_nonzero(obs) == h * w and cells(obs)[-1].sum() == 1


def test_render_rgb_array_repeats_the_frame():
  env = Catch(render_mode="rgb_array")
  assert env.render() is None  # nothing to draw before the first reset
  obs, _ = env.reset(seed=0)
  frame = env.render()
  assert frame.shape == (40, 40, 3) and frame.dtype == np.uint8
  np.testing.assert_array_equal(frame, np.repeat(obs, 3, axis=-1))
  plain = Catch()
  plain.reset(seed=0)
  assert plain.render() is None  # no render_mode: nothing to render


def test_gymnasium_env_checker_passes():
  with warnings.catch_warnings():
    warnings.simplefilter("error")  # the checker reports most problems as warnings
    check_env(gymnasium.make(envs.CATCH_ID, render_mode="rgb_array").unwrapped, skip_render_check=False)
    check_env(Catch(rows=4, columns=2, cell=(1, 1)), skip_render_check=True)


# --- registration and the envs factory ----------------------------------------------


def test_registration_is_idempotent():
  import importlib

  import envs.catch

  with warnings.catch_warnings():
    warnings.simplefilter("error")  # gymnasium only warns when an id is registered twice
    envs.catch.register()
    importlib.reload(envs)  # re-runs the package's registration with the id already there
  assert gymnasium.spec(envs.CATCH_ID).entry_point == "envs.catch:Catch"


def test_importing_envs_when_gymnasium_already_has_the_id_does_not_raise():
  # A fresh interpreter: this one imported envs already. Warnings as errors, so a
  # re-registration (which gymnasium only warns about) would fail too.
  code = (
    "import gymnasium; gymnasium.register('seed/Catch-v0', entry_point='envs.catch:Catch'); "
    "import envs; gymnasium.make('seed/Catch-v0').reset(seed=0)"
  )
  root = pathlib.Path(__file__).resolve().parents[1]
  subprocess.run([sys.executable, "-W", "error", "-c", code], cwd=root, check=True, timeout=120)


def test_config_vector_spaces_and_frame_skip():
  config = envs.env_config(envs.CATCH_ID)
  assert not envs.is_atari(config) and envs.frame_skip(config) == 1
  obs_space, act_space = envs.env_spaces(config, seed=0)
  assert obs_space == spaces.Box(0, 255, (40, 40, 1), np.uint8) and act_space == spaces.Discrete(3)

  config.kwargs = {"columns": 4}
  assert envs.env_spaces(config)[0].shape == (40, 32, 1)
  config.kwargs = {}

  vec = envs.make_vector(config, num_envs=3, seed=0)
  assert isinstance(vec, gymnasium.vector.SyncVectorEnv)
  obs, _ = vec.reset(seed=0)
  assert obs.shape == (3, 40, 40, 1) and obs.dtype == np.uint8
  for t in range(ROWS - 1):
    obs, reward, terminated, truncated, _ = vec.step(np.array([chase(o) for o in obs]))
    assert not truncated.any()
    assert terminated.all() == (t == ROWS - 2)
  np.testing.assert_array_equal(reward, [1.0, 1.0, 1.0])
  # Next-step autoreset: the following step returns new episodes' first frames, reward 0.
  obs, reward, terminated, _, _ = vec.step(np.ones(3, np.int64))
  assert not terminated.any() and (reward == 0).all()
  assert [ball_and_paddle(o)[0] for o in obs] == [0, 0, 0]


def test_frames_fit_the_nature_cnn():
  import tensorflow as tf

  from agents import torsos

  vec = envs.make_vector(envs.env_config(envs.CATCH_ID), num_envs=2, seed=0)
  obs, _ = vec.reset(seed=0)
  cnn = torsos.NatureCNN(hidden=16)
  features = cnn(tf.constant(obs))
  assert features.shape == (2, 16) and features.dtype == tf.float32
  # Valid padding: 40 -> 9 -> 3 -> 1, so the last conv sees the whole frame.
  x = tf.cast(obs, tf.float32)
  sides = []
  for conv in cnn.convs:
    x = conv(x)
    sides.append(tuple(x.shape[1:3]))
  assert sides == [(9, 9), (3, 3), (1, 1)]
