"""seed.plot's milestones: the frames and minutes at which the last-50 mean first reaches a return."""

import json

import numpy as np

from seed import plot


def _run_dir(tmp_path, returns, start=1000.0, seconds_per_episode=6.0, frames_per_episode=4000):
  rows = ["time,frames,return,length"]
  for i, r in enumerate(returns):
    rows.append(f"{start + i * seconds_per_episode:.3f},{(i + 1) * frames_per_episode},{r},100")
  (tmp_path / "episodes.csv").write_text("\n".join(rows) + "\n")
  (tmp_path / "config.json").write_text(json.dumps({"env": {"id": "ALE/Pong-v5"}, "agent_name": "ppo"}))
  return str(tmp_path)


def test_milestones_are_the_first_full_window_whose_mean_reaches_each_return(tmp_path):
  # 60 episodes at -21, then 100 at +21: the last-50 mean climbs by 0.84 per episode from index 60.
  returns = [-21.0] * 60 + [21.0] * 100
  run = plot.load_run(_run_dir(tmp_path, returns))
  got = {t: (f, m) for t, f, m in plot.milestones(run, [-21, -10, 0, 18, 21, 22])}
  # A plain-numpy reference: first index i >= 49 with mean(returns[i-49 : i+1]) >= t.
  r = np.array(returns)
  for t in (-21, -10, 0, 18, 21):
    i = next(i for i in range(49, len(r)) if r[i - 49 : i + 1].mean() >= t)
    assert got[t] == ((i + 1) * 4000.0, pytest_approx(i * 6.0 / 60.0)), (t, got[t], i)
  assert got[22] == (None, None)
  # -21 is met by the first full window (index 49), not by the shorter windows before it.
  assert got[-21][0] == 50 * 4000.0
  text = plot.format_milestones(run, [0, 22])
  assert "+0: 340,000 frames" in text and "+22: not reached" in text


def pytest_approx(x):
  import pytest  # pylint: disable=g-import-not-at-top

  return pytest.approx(x)


def test_milestones_on_the_command_line(tmp_path, capsys):
  d = _run_dir(tmp_path, [-21.0] * 60 + [21.0] * 100)
  assert plot.main([d, "--out", str(tmp_path / "c.png"), "--milestones", "0", "30"]) == 0
  out = capsys.readouterr().out
  assert "+0: 340,000 frames, 8.4 min" in out and "+30: not reached" in out
