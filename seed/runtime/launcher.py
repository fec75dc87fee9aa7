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
  def __init__(self, name: str, argv: list[str]):
    self.name = name
    self.argv = argv
    self.proc = subprocess.Popen(argv, preexec_fn=processes.die_with_parent)

  def stop(self, timeout: float) -> int | None:
    return processes.stop(self.proc, timeout, self.name)


def run(config: ml_collections.ConfigDict, child_argv: list[str], logdir: str) -> int:
  """Runs the learner and actors as `python -m seed.train <child_argv> --mode=...`; returns an exit code."""
  sock_dir = tempfile.mkdtemp(prefix="seed-")  # mode 0700: only we can reach the socket
  address = f"unix:{os.path.join(sock_dir, 'learner.sock')}"
  base = [sys.executable, "-m", "seed.train", *child_argv, f"--logdir={logdir}", f"--server_address={address}"]
  actor_argv = lambda i: [*base, "--mode=actor", f"--task={i}"]
  stopping = False

  def request_stop(*_):
    nonlocal stopping
    stopping = True

  previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
  learner = _Child("learner", [*base, "--mode=learner"])
  actors = [_Child(f"actor {i}", actor_argv(i)) for i in range(config.num_actors)]
  restarts: collections.deque[float] = collections.deque()
  code = 0
  try:
    while not stopping:
      time.sleep(0.2)
      status = learner.proc.poll()
      if status is not None:
        code = status
        if status != 0:
          logging.error("learner exited with status %d", status)
        break
      for i, actor in enumerate(actors):
        status = actor.proc.poll()
        if status is None or status == 0:  # 0: told the run is complete
          continue
        now = time.monotonic()
        while restarts and now - restarts[0] > 60:
          restarts.popleft()
        if len(restarts) >= config.max_actor_restarts_per_minute:
          logging.error("actor %d exited with status %d; too many restarts in a minute, aborting", i, status)
          code = 1
          stopping = True
          break
        restarts.append(now)
        logging.warning("actor %d exited with status %d; restarting it", i, status)
        actors[i] = _Child(f"actor {i}", actor_argv(i))
  finally:
    # Learner first: it checkpoints; actors blocked on it then fail fast.
    learner_status = learner.stop(_STOP_GRACE)
    if stopping and learner_status not in (0, None, -signal.SIGTERM):
      code = code or learner_status
    if not stopping and code == 0:
      deadline = time.monotonic() + _ACTORS_DONE_GRACE
      for actor in actors:
        try:
          actor.proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
          logging.warning("%s did not exit after the run completed; stopping it", actor.name)
    for actor in actors:
      actor.stop(10.0)
    for s, h in previous.items():
      signal.signal(s, h)
    shutil.rmtree(sock_dir, ignore_errors=True)
  return code
