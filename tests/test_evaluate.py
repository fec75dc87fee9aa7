"""Tests for seed.evaluate on run directories built here (no training).

Each run directory is what a learner leaves behind: config.json, checkpoints/
and export/<step>/ written by seed.runtime.learner.Learner.save(), for two versions
with different (random) weights, so "newest" is observable.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import envs
from seed import evaluate as ev
from tests.helpers import make_policy_run

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VERSIONS = (9, 10)  # numeric order differs from string order


def make_run(logdir: str, lstm_size: int = 0, env=None) -> str:
  """A run directory with checkpoints and exports at train steps VERSIONS."""
  return make_policy_run(logdir, VERSIONS, lstm_size=lstm_size, env=env, seed=lstm_size)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  return make_run(str(tmp_path_factory.mktemp("eval") / "cartpole"))


@pytest.fixture(scope="module")
def lstm_run(tmp_path_factory):
  return make_run(str(tmp_path_factory.mktemp("eval") / "cartpole_lstm"), lstm_size=8)


def run_cli(*args: str) -> subprocess.CompletedProcess:
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)
  return subprocess.run(
    [sys.executable, "-m", "seed.evaluate", *args], capture_output=True, text=True, timeout=120, env=env, cwd=REPO
  )


def check_cartpole(results, episodes):
  assert len(results) == episodes
  for ret, length in results:
    assert isinstance(ret, float) and isinstance(length, int)
    assert 1 <= ret <= 500
    assert ret == length  # CartPole pays 1 per step


def test_newest_export_and_checkpoint(run):
  assert ev.find_export(run) == os.path.join(run, "export", "10")
  assert ev.find_checkpoint(run) == os.path.join(run, "checkpoints", "ckpt-10")


def test_greedy_export_and_checkpoint_agree(run, capsys):
  exported = ev.evaluate(run, episodes=4, seed=3, greedy=True)
  out = capsys.readouterr().out
  assert "export" in out and "episode 4/4" in out and "return mean" in out
  check_cartpole(exported, 4)
  restored = ev.evaluate(run, episodes=4, seed=3, greedy=True, source="checkpoint")
  assert restored == exported
  # An explicit older version, from either source, is that version.
  old = ev.evaluate(run, 4, 3, True, path=os.path.join(run, "export", "9"), verbose=False)
  assert old == ev.evaluate(
    run, 4, 3, True, source="checkpoint", path=os.path.join(run, "checkpoints", "ckpt-9"), verbose=False
  )
  assert old != exported  # different weights, different episodes
  # Greedy play of a deterministic env depends only on the reset seeds.
  assert ev.evaluate(run, 2, 3, True, verbose=False) == exported[:2]


def test_sampled_repeats_with_seed(run):
  first = ev.evaluate(run, episodes=4, seed=1, greedy=False, verbose=False)
  check_cartpole(first, 4)
  assert ev.evaluate(run, episodes=4, seed=1, greedy=False, verbose=False) == first
  assert ev.evaluate(run, episodes=4, seed=1, greedy=False, source="checkpoint", verbose=False) == first
  assert ev.evaluate(run, episodes=4, seed=2, greedy=False, verbose=False) != first


def test_recurrent_policy_feeds_state_back(lstm_run):
  exported = ev.evaluate(lstm_run, episodes=3, seed=0, greedy=True, verbose=False)
  check_cartpole(exported, 3)
  assert ev.evaluate(lstm_run, episodes=3, seed=0, greedy=True, source="checkpoint", verbose=False) == exported

  # Reference: the serving signature stepped by hand, state passed back.
  fn = tf.saved_model.load(os.path.join(lstm_run, "export", "10")).signatures["serving_default"]
  assert {"state_0", "state_1"} <= set(fn.structured_input_signature[1])
  env = envs.make(ev.load_config(lstm_run).env, 0)
  for i, (ret, _) in enumerate(exported):
    obs, _ = env.reset(seed=i)
    state = {"state_0": tf.zeros([1, 8]), "state_1": tf.zeros([1, 8])}
    total, done, states_moved = 0.0, False, False
    while not done:
      out = fn(observation=obs[None], **state)
      states_moved |= bool(np.any(out["state_0"].numpy() != state["state_0"].numpy()))
      state = {k: out[k] for k in state}
      obs, reward, terminated, truncated, _ = env.step(int(out["greedy_action"][0]))
      total += reward
      done = terminated or truncated
    assert total == ret and states_moved


def test_cli_prints_episodes_and_summary(run):
  proc = run_cli(
    f"--logdir={run}", "--checkpoint", os.path.join(run, "checkpoints"), "--episodes=3", "--greedy", "--seed=3"
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = proc.stdout.splitlines()
  assert lines[0].startswith("evaluating checkpoint") and "ckpt-10" in lines[0]
  assert [l.split(":")[0] for l in lines[1:4]] == ["episode 1/3", "episode 2/3", "episode 3/3"]
  assert lines[4].startswith("3 episodes (greedy, seed 3): return mean")
  expected = ev.evaluate(run, 3, 3, True, verbose=False)
  assert [f"return {r:g}, length {n}" for r, n in expected] == [l.split(": ", 1)[1] for l in lines[1:4]]


def test_cli_missing_logdir_fails_clearly(tmp_path):
  missing = str(tmp_path / "no_such_run")
  proc = run_cli(f"--logdir={missing}", "--episodes=1")
  assert proc.returncode != 0
  assert f"error: no run directory at {missing}" in proc.stderr
  assert "Traceback" not in proc.stderr


def test_missing_pieces_name_the_path(run, tmp_path):
  with pytest.raises(ev.EvaluateError, match="no run directory at .*nowhere"):
    ev.evaluate(str(tmp_path / "nowhere"), 1)
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(ev.EvaluateError, match=f"no config.json in {empty}"):
    ev.evaluate(str(empty), 1)
  (empty / "config.json").write_text(open(os.path.join(run, "config.json"), encoding="utf-8").read())
  with pytest.raises(ev.EvaluateError, match=f"no export directory at {empty / 'export'}"):
    ev.evaluate(str(empty), 1)
  (empty / "export" / "3.tmp").mkdir(parents=True)  # a partial export is not a model
  with pytest.raises(ev.EvaluateError, match=f"no SavedModel in {empty / 'export'}"):
    ev.evaluate(str(empty), 1)
  with pytest.raises(ev.EvaluateError, match=f"no checkpoint in {empty / 'checkpoints'}"):
    ev.evaluate(str(empty), 1, source="checkpoint")
  with pytest.raises(ev.EvaluateError, match="no checkpoint at .*ckpt-99"):
    ev.evaluate(run, 1, source="checkpoint", path=os.path.join(run, "checkpoints", "ckpt-99"))


def test_checkpoint_from_another_config_is_refused(run, lstm_run):
  with pytest.raises(ev.EvaluateError, match="cannot restore"):
    ev.evaluate(run, 1, source="checkpoint", path=os.path.join(lstm_run, "checkpoints"), verbose=False)


# --- video ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def atari_run(tmp_path_factory):
  env = envs.env_config("ALE/Pong-v5")
  env.max_episode_steps = 12  # agent steps: a short episode
  return make_run(str(tmp_path_factory.mktemp("eval") / "pong"), env=env)


def test_video_gif_and_mp4(atari_run, tmp_path):
  gif, mp4 = str(tmp_path / "pong.gif"), str(tmp_path / "sub" / "pong.mp4")
  if not (importlib.util.find_spec("imageio") or importlib.util.find_spec("PIL")):
    with pytest.raises(ev.EvaluateError, match="pip install imageio"):
      ev.evaluate(atari_run, 1, video=gif, verbose=False)
    return
  plain = ev.evaluate(atari_run, episodes=3, seed=0, greedy=True, verbose=False)
  assert [n for _, n in plain] == [12, 12, 12]
  assert (
    ev.evaluate(atari_run, episodes=3, seed=0, greedy=True, video=gif, video_episodes=2, verbose=False) == plain
  )  # rendering does not change the episodes
  from PIL import Image  # pylint: disable=g-import-not-at-top

  with Image.open(gif) as image:
    assert image.size == (160, 210)
    durations = []  # Pillow merges repeated frames into one longer frame: count time, not frames
    for i in range(image.n_frames):
      image.seek(i)
      durations.append(image.info["duration"])
  frame_ms = 130  # Atari renders at 30 fps, one frame per agent step of 4: 133 ms in GIF's 10 ms units
  assert sum(durations) == 2 * 13 * frame_ms  # reset frame + one per step, first two episodes
  # .mp4: imageio (with ffmpeg) or OpenCV, a dependency of the Atari preprocessing.
  assert ev.evaluate(atari_run, episodes=1, seed=0, greedy=True, video=mp4, verbose=False) == plain[:1]
  import cv2  # pylint: disable=g-import-not-at-top

  capture = cv2.VideoCapture(mp4)
  assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 13
  capture.release()


def test_video_without_a_writer_names_the_package(run, tmp_path, monkeypatch):
  monkeypatch.setattr(ev, "_have", lambda module: False)
  for name in ("x.gif", "x.mp4"):
    with pytest.raises(ev.EvaluateError, match=r"pip install imageio"):
      ev.evaluate(run, 1, video=str(tmp_path / name), verbose=False)
    assert not os.path.exists(tmp_path / name)


def test_cartpole_video(run, tmp_path):
  gif = str(tmp_path / "cartpole.gif")  # classic-control rendering comes with the project's dependencies
  ev.evaluate(run, 1, video=gif, verbose=False)
  assert os.path.getsize(gif) > 0
