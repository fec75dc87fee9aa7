"""When a run started: its top-level Python process's start, which the launcher hands to its children.

Not the process's /proc start time: scripts/run.sh runs its setup in a shell and then exec's Python in
the same process, so that time is the shell's and would count the setup.
"""

import os
import subprocess
import sys
import time

from helpers import REPO

from seed.runtime import processes

_SHELL_WORK = 3.0  # seconds a shell spends before exec'ing Python

# The launcher with its children replaced by a Python one-liner that prints seconds_since_run_start().
_LAUNCHER = """
import sys
import ml_collections
from seed.runtime import launcher
child = "from seed.runtime import processes; print('child', processes.seconds_since_run_start())"
class Child(launcher._Child):
  def __init__(self, name, argv, env=None):
    super().__init__(name, [sys.executable, "-c", child], env)
launcher._Child = Child
sys.exit(launcher.run(ml_collections.ConfigDict({"num_actors": 0, "max_actor_restarts_per_minute": 5}), [], "x"))
"""


def _after_shell_work(code: str, **env: str) -> str:
  """Runs `python -c code` exec'd by a shell that first spent _SHELL_WORK seconds; returns its stdout."""
  environ = {k: v for k, v in os.environ.items() if k != processes.RUN_START_ENV}
  r = subprocess.run(
    ["bash", "-c", f'sleep {_SHELL_WORK}; exec "$0" -c "$1"', sys.executable, code],
    cwd=REPO,
    env={**environ, "PYTHONPATH": REPO, **env},
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert r.returncode == 0, r.stderr[-3000:]
  return r.stdout


def test_seconds_count_from_the_python_process_start_not_the_shell_that_exec_d_it():
  code = (
    "import time; from seed.runtime import processes; "
    "print(processes.seconds_since_run_start(), time.time() - processes.process_start_time())"
  )
  since_python, since_fork = map(float, _after_shell_work(code).split())
  assert since_fork >= _SHELL_WORK - 0.1  # /proc counts the shell's work...
  assert 0 < since_python < _SHELL_WORK - 1  # ...the run's time does not


def test_launcher_children_count_from_the_launcher_python_start():
  [line] = [l for l in _after_shell_work(_LAUNCHER).splitlines() if l.startswith("child ")]
  assert 0 < float(line.split()[1]) < _SHELL_WORK - 1


def test_a_start_handed_down_by_a_launcher_wins(monkeypatch):
  monkeypatch.setenv(processes.RUN_START_ENV, repr(time.time() - 100))
  assert 100 <= processes.seconds_since_run_start() < 110
  monkeypatch.delenv(processes.RUN_START_ENV)
  assert processes.seconds_since_run_start() < time.time() - processes.process_start_time() + 0.1
