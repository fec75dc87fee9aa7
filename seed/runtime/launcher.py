"""Local mode: one learner and N actor processes on this machine, supervised.

The learner listens on a unix socket in a private temporary directory. The
supervisor restarts an actor that dies (a crash loop aborts the run); an actor
that exits 0 was told the run is complete and is not restarted. When the
learner finishes, the actors get a few seconds to exit by themselves before
they are stopped. On Ctrl-C/SIGTERM it asks the learner to stop first (it
checkpoints) and then the actors. Children get SIGTERM if the
supervisor itself dies, so no process is orphaned.
"""

from __future__ import annotations

import collections
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import ml_collections
from absl import logging

from seed.runtime import processes

_STOP_GRACE = 60.0  # seconds the learner gets to checkpoint and export after SIGTERM
_ACTORS_DONE_GRACE = 10.0  # seconds actors get to exit on their own after the learner completed


class _Child:
  def __init__(self, name: str, argv: list[str], env: dict[str, str] | None = None):
    self.name = name
    self.argv = argv
    self.env = env
    self.proc = subprocess.Popen(argv, preexec_fn=processes.die_with_parent, env=env)

  def stop(self, timeout: float) -> int | None:
    return processes.stop(self.proc, timeout, self.name)


class _Actors:
  """Actor processes kept running: one that fails is restarted, too many restarts in a minute
  (a crash loop) is an abort, and one that exits 0 was told the run is complete."""

  def __init__(self, argvs: dict[int, list[str]], max_restarts_per_minute: int, env: dict[str, str] | None = None):
    self._argvs = argvs
    self._env = env
    self._max_restarts = max_restarts_per_minute
    self._restarts: collections.deque[float] = collections.deque()
    self.children = {task: _Child(f"actor {task}", argv, env) for task, argv in argvs.items()}

  def poll(self) -> bool:
    """Restarts failed actors; False on a crash loop."""
    for task, actor in self.children.items():
      status = actor.proc.poll()
      if status is None or status == 0:  # 0: told the run is complete
        continue
      now = time.monotonic()
      while self._restarts and now - self._restarts[0] > 60:
        self._restarts.popleft()
      if len(self._restarts) >= self._max_restarts:
        logging.error("actor %d exited with status %d; too many restarts in a minute, aborting", task, status)
        return False
      self._restarts.append(now)
      logging.warning("actor %d exited with status %d; restarting it", task, status)
      self.children[task] = _Child(f"actor {task}", self._argvs[task], self._env)
    return True

  def done(self) -> bool:
    """Every actor exited 0 (heard that the run is complete)."""
    return all(a.proc.poll() == 0 for a in self.children.values())

  def wait_done(self, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for actor in self.children.values():
      try:
        actor.proc.wait(max(0.0, deadline - time.monotonic()))
      except subprocess.TimeoutExpired:
        logging.warning("%s did not exit after the run completed; stopping it", actor.name)

  def stop(self, timeout: float) -> None:
    for actor in self.children.values():
      actor.stop(timeout)


def _stop_requests() -> tuple[list[bool], dict]:
  """A flag set by SIGINT/SIGTERM, and the handlers it replaced (restore them with signal.signal)."""
  stopping = [False]

  def request_stop(*_):
    stopping[0] = True

  return stopping, {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}


def run(config: ml_collections.ConfigDict, child_argv: list[str], logdir: str) -> int:
  """Runs the learner and actors as `python -m seed.train <child_argv> --mode=...`; returns an exit code."""
  sock_dir = tempfile.mkdtemp(prefix="seed-")  # mode 0700: only we can reach the socket
  address = f"unix:{os.path.join(sock_dir, 'learner.sock')}"
  base = [sys.executable, "-m", "seed.train", *child_argv, f"--logdir={logdir}", f"--server_address={address}"]
  # Children report times from the start of this Python process (what a user waited), not their own.
  env = {processes.RUN_START_ENV: repr(processes.python_start_time()), **os.environ}
  stopping, previous = _stop_requests()
  learner = _Child("learner", [*base, "--mode=learner"], env)
  actors = _Actors(
    {i: [*base, "--mode=actor", f"--task={i}"] for i in range(config.num_actors)},
    config.max_actor_restarts_per_minute,
    env,
  )
  code = 0
  try:
    while not stopping[0]:
      time.sleep(0.2)
      status = learner.proc.poll()
      if status is not None:
        code = status
        if status != 0:
          logging.error("learner exited with status %d", status)
        break
      if not actors.poll():
        code = 1
        stopping[0] = True
  finally:
    # Learner first: it checkpoints; actors blocked on it then fail fast.
    learner_status = learner.stop(_STOP_GRACE)
    if stopping[0] and learner_status not in (0, None, -signal.SIGTERM):
      code = code or learner_status
    if not stopping[0] and code == 0:
      actors.wait_done(_ACTORS_DONE_GRACE)
    actors.stop(10.0)
    for s, h in previous.items():
      signal.signal(s, h)
    shutil.rmtree(sock_dir, ignore_errors=True)
  return code


def run_actors(argvs: dict[int, list[str]], max_restarts_per_minute: int = 5) -> int:
  """An actor host: runs `python -m seed.train --mode=actor` command lines (by task id), supervised.

  Returns 0 once every actor heard that the run is complete, 1 on a crash loop,
  128 + 15 when stopped by SIGTERM/SIGINT (so a job engine replaces the host).
  """
  stopping, previous = _stop_requests()
  actors = _Actors(argvs, max_restarts_per_minute)
  code = 128 + signal.SIGTERM
  try:
    while not stopping[0]:
      time.sleep(0.2)
      if not actors.poll():
        code = 1
        break
      if actors.done():
        code = 0
        break
  finally:
    actors.stop(10.0)
    for s, h in previous.items():
      signal.signal(s, h)
  return code
