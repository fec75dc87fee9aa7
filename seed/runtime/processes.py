"""Child processes that never outlive their parent and always get stopped.

Used by the local launcher and by the scripts and tests that start servers.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import time

from absl import logging

import seed

_PR_SET_PDEATHSIG = 1
# Wall-clock time (time.time()) the run's first Python process started; a launcher sets it for its children.
RUN_START_ENV = "SEED_RUN_START"


def die_with_parent() -> None:
  """A `preexec_fn`: the child gets SIGTERM when the process that started it dies."""
  # Runs in the child between fork and exec.
  ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def stop(proc: subprocess.Popen, timeout: float, name: str | None = None) -> int | None:
  """SIGTERM, up to `timeout` seconds to exit, then SIGKILL; returns the exit status."""
  if proc.poll() is None:
    proc.terminate()
    try:
      proc.wait(timeout)
    except subprocess.TimeoutExpired:
      logging.warning("%s did not stop within %.0fs; killing pid %d", name or proc.args, timeout, proc.pid)
      proc.kill()
      proc.wait()
  return proc.returncode


def process_start_time() -> float:
  """Wall-clock time this process was forked (Linux /proc).

  Not when Python started in it: a shell that exec's Python (scripts/run.sh, after its setup)
  hands over its own process, so this is the shell's start. See python_start_time.
  """
  with open("/proc/self/stat") as f:
    start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22, starttime
  with open("/proc/uptime") as f:
    uptime = float(f.read().split()[0])
  return time.time() - uptime + start_ticks / os.sysconf("SC_CLK_TCK")


def python_start_time() -> float:
  """Wall-clock time this Python process started, imports included: when it first imported `seed`.

  `python -m seed.train` (and every other entry point) imports the `seed` package before anything
  else, TensorFlow included, so this is the exec of Python plus the interpreter's own start-up
  (~0.05 s), whether or not a shell ran in the same process first (process_start_time would count
  the shell's work: run.sh's setup).
  """
  return seed.IMPORT_TIME


def seconds_since_run_start() -> float:
  """Seconds since the run's first Python process started: the launcher's, when it set RUN_START_ENV, else this one."""
  start = os.environ.get(RUN_START_ENV)
  return time.time() - (float(start) if start else python_start_time())
