"""Soak under faults: a learner and actors for N minutes while actors are killed and the learner restarted.

    .venv/bin/python scripts/tools/soak.py [--minutes 10] [--actors 4] [--kill_every 30] [--sample_every 10]

Runs `python -m seed.train --mode=learner` and --actors `--mode=actor` processes (Pong, V-trace
with the linear policy) over a unix socket in a private directory, each in a process group of its
own. Every --kill_every seconds a random actor gets SIGKILL and is started again (as the local
launcher would); halfway the learner gets SIGTERM (it checkpoints) and is started again on the same
logdir. Every --sample_every seconds it reads each process's RSS from /proc. On a loaded machine
the restarted learner can come up so late that --minutes end before its warm-up does; the soak
then runs on (up to --overtime seconds, noted as an event) until that learner can be judged.

Prints frames/s per minute (from the learner's metrics.jsonl), each process's RSS after warm-up and
at its end, and a last line with the verdict. Exits 1 when a target is missed:
  - each learner process's RSS grows <= --rss_growth (5 %) from its first sample --warmup seconds
    after it was up (its first metrics.jsonl row with more frames than it started from) to its last;
  - each actor's RSS, the same, up from its "connected to the learner" log line;
  - (processes too short-lived for three samples after warm-up get no verdict; at least one
    learner and one actor must get one);
  - the frames counter in metrics.jsonl never goes back, across the restart too;
  - training resumes (frames above the checkpoint's) within --resume_within (60 s) of the restart;
  - no process is left at the end in any process group it started.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, REPO)

from seed import run_files  # noqa: E402  (after the path: the script runs from anywhere)
from seed.runtime import processes  # noqa: E402

_CONFIG_FLAGS = [
  "--config=configs/atari_vtrace.py",
  "--config.agent.torso=linear",
  "--config.total_environment_frames=10_000_000_000",  # never reached: the soak decides when to stop
]


@dataclasses.dataclass
class Proc:
  """A process the soak started, and its RSS samples."""

  role: str  # "learner" or "actor <task>"
  popen: subprocess.Popen
  log: str  # its output
  started: float  # seconds into the soak
  up: float = float("inf")  # seconds into the soak when it was seen working
  rss: list[tuple[float, int]] = dataclasses.field(default_factory=list)  # (seconds into the soak, bytes)
  ended: float | None = None
  how: str = ""  # how it ended: "killed", or its exit status (after SIGTERM or by itself)


def rss_bytes(pid: int) -> int | None:
  """Resident set size of pid from /proc, None once it is gone."""
  try:
    with open(f"/proc/{pid}/statm") as f:
      return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
  except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
    return None


def group_alive(pgid: int) -> bool:
  """Whether any process is left in process group pgid."""
  try:
    os.killpg(pgid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


def growth(samples: list[tuple[float, int]], warm: float) -> tuple[int, int, float] | None:
  """(RSS when warm, RSS at the end, growth) over the samples from time `warm` on; None if fewer than 3."""
  after = [rss for t, rss in samples if t >= warm]
  if len(after) < 3:
    return None
  return after[0], after[-1], after[-1] / after[0] - 1.0


class Soak:
  def __init__(self, args: argparse.Namespace, workdir: str):
    self.args = args
    self.logdir = os.path.join(workdir, "run")
    address = f"unix:{os.path.join(workdir, 'learner.sock')}"
    self.base = [
      sys.executable,
      "-m",
      "seed.train",
      *_CONFIG_FLAGS,
      f"--config.num_actors={args.actors}",
      f"--config.log_interval={args.log_interval}",
      f"--logdir={self.logdir}",
      f"--server_address={address}",
    ]
    self.env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
    self.start = time.monotonic()
    self.procs: list[Proc] = []
    self.learner: Proc | None = None
    self.actors: dict[int, Proc] = {}
    self.logs = os.path.join(workdir, "logs")
    os.makedirs(self.logs)

  def now(self) -> float:
    return time.monotonic() - self.start

  def spawn(self, role: str, extra: list[str]) -> Proc:
    log = os.path.join(self.logs, f"{len(self.procs):03d}-{role.replace(' ', '')}.log")
    with open(log, "w") as out:
      popen = subprocess.Popen(
        [*self.base, *extra],
        cwd=REPO,
        env=self.env,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # a group of its own: checked empty at the end
        preexec_fn=processes.die_with_parent,
      )
    proc = Proc(role, popen, log, self.now())
    self.procs.append(proc)
    return proc

  def start_learner(self) -> None:
    self.learner = self.spawn("learner", ["--mode=learner"])

  def start_actor(self, task: int) -> None:
    self.actors[task] = self.spawn(f"actor {task}", ["--mode=actor", f"--task={task}"])

  def end(self, proc: Proc, how: str) -> None:
    proc.ended, proc.how = self.now(), how

  def metrics(self) -> list[dict]:
    return run_files.read_metrics(self.logdir)

  def check_up(self, proc: Proc) -> None:
    """Notes when proc is up: a learner training (frames above its first row's), an actor connected."""
    if proc.up < float("inf"):
      return
    if proc.role == "learner":
      wall_start = time.time() - (self.now() - proc.started)
      own = [r["frames"] for r in self.metrics() if r["time"] >= wall_start]
      working = len(own) > 1 and own[-1] > own[0]
    else:
      with open(proc.log, errors="replace") as f:
        working = "connected to the learner" in f.read()
    if working:
      proc.up = self.now()

  def sample(self) -> None:
    for proc in self.procs:
      if proc.ended is None:
        self.check_up(proc)
        rss = rss_bytes(proc.popen.pid)
        if rss is not None:
          proc.rss.append((self.now(), rss))

  def kill_random_actor(self, rng: random.Random) -> str:
    task = rng.choice(sorted(self.actors))
    victim = self.actors[task]
    if victim.popen.poll() is None:
      victim.popen.send_signal(signal.SIGKILL)
      victim.popen.wait(30)
    self.end(victim, "killed")
    self.start_actor(task)
    return f"SIGKILL actor {task} (pid {victim.popen.pid}), restarted"

  def restart_exited_actors(self) -> list[str]:
    """Like the launcher: an actor that exited by itself is started again."""
    notes = []
    for task, actor in list(self.actors.items()):
      status = actor.popen.poll()
      if status is not None:
        self.end(actor, f"exited {status}")
        self.start_actor(task)
        notes.append(f"actor {task} exited with status {status}; restarted")
    return notes

  def restart_learner(self) -> tuple[str, float]:
    """SIGTERM, wait for its checkpoint and exit, start a new one; returns a note and the restart time."""
    old = self.learner
    status = processes.stop(old.popen, timeout=120.0, name="learner")
    self.end(old, f"exited {status} after SIGTERM")
    self.start_learner()
    return f"SIGTERM learner (pid {old.popen.pid}): exited {status}; restarted", self.now()

  def stop_all(self) -> None:
    if self.learner is not None and self.learner.ended is None:
      status = processes.stop(self.learner.popen, timeout=120.0, name="learner")
      self.end(self.learner, f"exited {status} after SIGTERM")
    for actor in self.actors.values():
      if actor.ended is None:
        status = processes.stop(actor.popen, timeout=30.0, name=actor.role)
        self.end(actor, f"exited {status} after SIGTERM")


def run(args: argparse.Namespace, workdir: str) -> int:
  soak = Soak(args, workdir)
  rng = random.Random(args.seed)
  duration = args.minutes * 60.0
  events: list[tuple[float, str]] = []
  restart_at = resume_frames = resumed_at = None
  broken = None  # a learner that exited by itself ends the soak early
  try:
    soak.start_learner()
    for task in range(args.actors):
      soak.start_actor(task)
    next_sample, next_kill = 0.0, args.kill_every
    overtime = False
    while True:
      time.sleep(0.5)
      t = soak.now()
      if t >= duration:
        judged = growth(soak.learner.rss, soak.learner.up + args.warmup) is not None
        if restart_at is None or judged or t >= duration + args.overtime:
          break
        if not overtime:
          overtime = True
          events.append((t, "the restarted learner is not warm yet: running on until it can be judged"))
      for note in soak.restart_exited_actors():
        events.append((t, note))
      if soak.learner.popen.poll() is not None:
        broken = f"the learner exited by itself with status {soak.learner.popen.returncode} at {t:.0f} s"
        soak.end(soak.learner, f"exited {soak.learner.popen.returncode}")
        break
      if t >= next_sample:
        soak.sample()
        next_sample += args.sample_every
      if t >= next_kill:
        events.append((t, soak.kill_random_actor(rng)))
        next_kill += args.kill_every
      if restart_at is None and t >= duration / 2:
        note, restart_at = soak.restart_learner()
        rows = soak.metrics()  # with the stopped learner's last row
        resume_frames = rows[-1]["frames"] if rows else 0
        events.append((restart_at, f"{note}; checkpoint at {resume_frames:,} frames"))
      if restart_at is not None and resumed_at is None:
        rows = soak.metrics()
        if rows and rows[-1]["frames"] > resume_frames:
          resumed_at = soak.now()
          events.append((resumed_at, f"training resumed: {rows[-1]['frames']:,} frames"))
  finally:
    soak.stop_all()
    left = [p for p in soak.procs if group_alive(p.popen.pid)]
    for proc in left:  # never leave them behind, even when the verdict is that they were there
      try:
        os.killpg(proc.popen.pid, signal.SIGKILL)
      except ProcessLookupError:
        pass
  return report(args, soak, events, restart_at, resumed_at, left, broken)


def report(args, soak: Soak, events, restart_at, resumed_at, left: list[Proc], broken: str | None) -> int:
  rows = soak.metrics()
  failures = [broken] if broken else []
  print("events:")
  for t, note in events:
    print(f"  {t:6.1f} s  {note}")

  print("frames/s per minute (metrics.jsonl):")
  if rows:
    t0 = rows[0]["time"]
    minutes = int((rows[-1]["time"] - t0) // 60) + 1
    for m in range(minutes):
      inside = [r for r in rows if m * 60 <= r["time"] - t0 < (m + 1) * 60]
      before = [r for r in rows if r["time"] - t0 < m * 60]
      first = before[-1] if before else rows[0]
      if inside:
        rate = (inside[-1]["frames"] - first["frames"]) / max(inside[-1]["time"] - first["time"], 1e-9)
        print(f"  minute {m + 1:2d}: {rate:8,.0f} f/s   frames {inside[-1]['frames']:,}")
  else:
    failures.append("no metrics.jsonl rows")
  back = [(a["frames"], b["frames"]) for a, b in zip(rows, rows[1:]) if b["frames"] < a["frames"]]
  if back:
    failures.append(f"frames went back {len(back)} times, first {back[0][0]:,} -> {back[0][1]:,}")

  if restart_at is None:
    failures.append("the learner was never restarted (run too short)")
  elif resumed_at is None:
    failures.append("training did not resume after the learner's restart")
  else:
    took = resumed_at - restart_at
    print(f"training resumed {took:.1f} s after the learner's restart (target <= {args.resume_within:g} s)")
    if took > args.resume_within:
      failures.append(f"training resumed only {took:.0f} s after the restart")

  print(f"RSS {args.warmup:g} s after up -> at the end (target growth <= {args.rss_growth:.0%}):")
  judged = set()
  for proc in soak.procs:
    g = growth(proc.rss, proc.up + args.warmup)
    life = f"{proc.started:6.1f}-{proc.ended or 0:6.1f} s, {proc.how}"
    if g is None:
      print(f"  {proc.role:8s} pid {proc.popen.pid:7d} ({life}): too short-lived for a verdict")
      continue
    first, last, grew = g
    judged.add(proc.role.split()[0])
    flag = "" if grew <= args.rss_growth else "  <-- above target"
    print(
      f"  {proc.role:8s} pid {proc.popen.pid:7d} ({life}): {first / 2**20:7.1f} -> {last / 2**20:7.1f} MiB "
      f"({grew:+.1%}){flag}"
    )
    if flag:
      failures.append(f"{proc.role} pid {proc.popen.pid} RSS grew {grew:+.1%}")

  for role in {"learner", "actor"} - judged:
    failures.append(f"no {role} process lived long enough after warm-up for an RSS verdict")
  if left:
    failures.append(f"processes left in the groups of {[p.role for p in left]}")
  else:
    print(f"no process left: all {len(soak.procs)} process groups started are empty")
  if failures:
    print("VERDICT: FAIL - " + "; ".join(failures))
    return 1
  kills = sum(p.how == "killed" for p in soak.procs)
  print(f"VERDICT: PASS - {args.minutes:g} min, {kills} actor kills, 1 learner restart")
  return 0


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
  parser.add_argument("--minutes", type=float, default=10.0)
  parser.add_argument("--actors", type=int, default=4)
  parser.add_argument("--kill_every", type=float, default=30.0, help="seconds between actor SIGKILLs")
  parser.add_argument("--sample_every", type=float, default=10.0, help="seconds between RSS samples")
  parser.add_argument("--warmup", type=float, default=60.0, help="seconds after a process is up before RSS counts")
  parser.add_argument("--rss_growth", type=float, default=0.05, help="allowed RSS growth after warm-up")
  parser.add_argument("--resume_within", type=float, default=60.0, help="seconds for training to resume")
  parser.add_argument(
    "--overtime", type=float, default=120.0, help="at most this many seconds past --minutes for the restarted learner"
  )
  parser.add_argument("--log_interval", type=float, default=5.0, help="the learner's metrics interval")
  parser.add_argument("--seed", type=int, default=0, help="which actors get killed")
  parser.add_argument("--keep", action="store_true", help="keep the run directory and the processes' logs")
  args = parser.parse_args(argv)
  workdir = tempfile.mkdtemp(prefix="seed-soak-")  # 0700: the socket is ours alone
  try:
    return run(args, workdir)
  finally:
    if args.keep:
      print(f"kept {workdir}")
    else:
      shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
  sys.exit(main())
