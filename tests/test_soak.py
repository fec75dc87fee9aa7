"""The soak under faults (scripts/tools/soak.py): a 1-minute run in the suite, the 10-minute one by hand."""

import importlib.util
import os
import re
import signal
import subprocess
import sys

import pytest
from helpers import REPO

_spec = importlib.util.spec_from_file_location("soak", os.path.join(REPO, "scripts", "tools", "soak.py"))
soak = importlib.util.module_from_spec(_spec)
sys.modules["soak"] = soak  # its dataclass looks its module up
_spec.loader.exec_module(soak)


@pytest.mark.soak
def test_one_minute_soak_kills_actors_restarts_the_learner_and_passes():
  out = subprocess.run(
    [
      sys.executable,
      "scripts/tools/soak.py",
      "--minutes=1",
      "--kill_every=15",
      "--sample_every=1",
      "--warmup=5",
      "--log_interval=1",
    ],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=300,
  )
  text = out.stdout + out.stderr[-3000:]
  assert out.returncode == 0, text
  assert out.stdout.strip().splitlines()[-1].startswith("VERDICT: PASS"), text
  assert len(re.findall(r"SIGKILL actor \d \(pid \d+\), restarted", out.stdout)) >= 3, text
  assert re.search(r"SIGTERM learner \(pid \d+\): exited 0; restarted; checkpoint at [\d,]+ frames", out.stdout), text
  resumed = float(re.search(r"training resumed ([\d.]+) s after the learner's restart", out.stdout).group(1))
  assert resumed <= 60, text
  # The restarted learner lived long enough for an RSS verdict, and got one.
  assert re.search(r"learner +pid +\d+ \([^)]*exited 0 after SIGTERM\): +[\d.]+ -> +[\d.]+ MiB", out.stdout), text
  assert "no process left" in out.stdout, text


def test_growth_counts_samples_from_warm_on():
  samples = [(0.0, 100), (5.0, 400), (10.0, 1000), (15.0, 1010), (20.0, 1030)]
  first, last, grew = soak.growth(samples, warm=10.0)
  assert (first, last) == (1000, 1030)
  assert abs(grew - 0.03) < 1e-12
  assert soak.growth(samples, warm=15.0) is None  # two samples are no verdict


def test_group_alive_sees_a_process_group_until_it_is_empty():
  proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
  try:
    assert soak.group_alive(proc.pid)
  finally:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
  assert not soak.group_alive(proc.pid)
