"""The multi-device learner on a CPU split into logical devices.

tests/multidevice/ needs its own process (the split must come before TensorFlow
starts); it runs here as a pytest of its own. The learning test runs
`python -m seed.train` with 4 logical CPUs, 2 training and 2 inference devices.
"""

import os
import subprocess
import sys
import time

import pytest
from helpers import REPO
from test_train import _best_recent_mean, _episodes, _no_process_left, runs  # noqa: F401  (runs is a fixture)

pytestmark = pytest.mark.learning  # left out by ./scripts/test.sh --quick


@pytest.mark.timeout(900)  # ~95 s alone; 264 s beside a Pong run and two trainings
def test_multidevice_suite_in_its_own_process():
  r = subprocess.run(
    [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", os.path.join(REPO, "tests", "multidevice")],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=840,
    env=dict(os.environ, SEED_MULTIDEVICE="1", TF_CPP_MIN_LOG_LEVEL="2"),
  )
  summary = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
  assert r.returncode == 0, r.stdout[-8000:] + r.stderr[-3000:]
  assert " passed" in summary and "skipped" not in summary and "deselected" not in summary, summary
  print(summary)


# PPO on CartPole misses the bar now and then. On 2026-12-07, 22 runs of this command solved at 34-61k
# frames (seeds 0-8; 9 of them with a 16-unroll queue) and one at 83k, but a CI run of seed 0 peaked at
# a last-50 mean of 440 within the 100k-frame cap. A broken learner misses on every seed; a miss by
# chance is retried once.
SEEDS = (0, 1)


@pytest.mark.timeout(540)
def test_cartpole_ppo_learns_on_2_training_and_2_inference_devices(tmp_path, runs):
  """The main job's bar (last-50 mean >= 475), with MirroredStrategy and round-robin inference.

  PPO, not V-trace: the same learner path (the strategy and the inference round robin know no agent)
  at a third of the minutes; V-trace's own learning bar is tests/test_train.py's.
  """
  missed = []
  for seed in SEEDS:
    start = time.monotonic()
    run = runs(
      tmp_path / f"run{seed}",
      f"--config.seed={seed}",
      "--config.logical_cpu_devices=4",
      "--config.training_devices=2",
      "--config.inference_devices=2",
      config=os.path.join(REPO, "configs", "cartpole_ppo.py"),
    )
    assert run.wait(240) == 0, run.output()
    log = run.output(tail=None)
    devices = "training on /device:CPU:0, /device:CPU:1 (MirroredStrategy), inference on /device:CPU:2, /device:CPU:3"
    assert devices in log
    spread = [m for m in run.metrics() if "inference_batches/CPU:2" in m]
    assert spread, "the learner logs each inference device's batches"
    both = sum(m["inference_batches/CPU:2"] for m in spread), sum(m["inference_batches/CPU:3"] for m in spread)
    assert min(both) > 0.4 * sum(both), both
    _no_process_left(run)
    returns = _episodes(run.logdir)
    assert len(returns) >= 50
    best = _best_recent_mean(returns)
    if best >= 475:
      print(
        f"CartPole on 2+2 logical devices, seed {seed}: {len(returns)} episodes, {run.frames()} frames, "
        f"{time.monotonic() - start:.0f}s; missed before: {missed}"
      )
      return
    missed.append(f"seed {seed}: best last-50 mean {best:.1f} at {run.frames()} frames; {run.metrics()[-1]}")
  raise AssertionError("no seed met the bar:\n" + "\n".join(missed))
