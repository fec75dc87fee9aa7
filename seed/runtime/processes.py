"""Child processes that never outlive their parent and always get stopped.

Used by the local launcher and by the scripts and tests that start servers.
"""

from __future__ import annotations

import ctypes
import signal
import subprocess

from absl import logging

_PR_SET_PDEATHSIG = 1


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
