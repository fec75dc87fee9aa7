"""What scripts/bench/bench_e2e.py measures with: CPU accounting, a supervised `seed.train`
run and its metrics, the runtime and env-only windows, and CartPole's time to its goal."""

from __future__ import annotations

import csv
import importlib
import multiprocessing as mp
import os
import pathlib
import resource
import signal
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = pathlib.Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
  sys.path.insert(0, str(REPO))

from seed import run_files  # noqa: E402  (after the path: the script runs from anywhere)

CARTPOLE_GOAL = 475.0
RECENT = 50  # episodes in the rolling mean (as the learner's stop_mean_return)
STOP_TIMEOUT = 120.0  # seconds the launcher gets after SIGTERM (learner checkpoints and exports)


def log(msg: str) -> None:
  print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


_TICK = os.sysconf("SC_CLK_TCK")


def _machine_busy() -> float:
  """CPU seconds all cores spent busy since boot (everything but idle and iowait)."""
  with open("/proc/stat", encoding="ascii") as f:
    fields = [int(x) for x in f.readline().split()[1:]]
  return (sum(fields[:8]) - fields[3] - fields[4]) / _TICK


def _cpu_of(pids=None, pgid=None) -> float:
  """CPU seconds (user + system) of the live processes with these pids or in this process group."""
  total = 0
  for entry in os.listdir("/proc"):
    if not entry.isdigit():
      continue
    try:
      with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
      continue
    if (pids is not None and int(entry) in pids) or (pgid is not None and int(fields[2]) == pgid):
      total += int(fields[11]) + int(fields[12])
  return total / _TICK


class CpuWindow:
  """Cores used, over a window, by the measured processes ("ours") and by everything else."""

  def __init__(self, **who):
    self.who = who
    self.t, self.ours, self.busy = time.monotonic(), _cpu_of(**who), _machine_busy()

  def end(self) -> tuple[float, float]:
    dt = time.monotonic() - self.t
    ours = (_cpu_of(**self.who) - self.ours) / dt
    busy = (_machine_busy() - self.busy) / dt
    return ours, max(0.0, busy - ours)


# ----------------------------------------------------------------------------- full runtime


class TrainRun:
  """One `python -m seed.train` process tree, in its own session (pgid = launcher pid)."""

  def __init__(self, name: str, config_args: list[str], workdir: pathlib.Path, env: dict | None = None):
    self.name = name
    self.dir = workdir / name
    self.logdir = self.dir / "logdir"
    tmp = self.dir / "tmp"  # the launcher's socket dir lands here (cleaned up with workdir)
    tmp.mkdir(parents=True)
    self.argv = [sys.executable, "-m", "seed.train", *config_args, f"--logdir={self.logdir}"]
    self.log_path = self.dir / "run.log"
    self._log_file = open(self.log_path, "wb")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ["TF_CPP_MIN_LOG_LEVEL"], TMPDIR=str(tmp), **(env or {}))
    self.start_time = time.time()
    self.proc = subprocess.Popen(
      self.argv,
      cwd=REPO,
      env=env,
      stdout=self._log_file,
      stderr=subprocess.STDOUT,
      stdin=subprocess.DEVNULL,
      start_new_session=True,
    )
    self.pgid = self.proc.pid
    self.stopped = False

  def metrics(self) -> list[dict]:
    return run_files.read_metrics(self.logdir)

  def tail(self, n: int = 25) -> str:
    try:
      lines = self.log_path.read_text(errors="replace").splitlines()
    except OSError:
      return ""
    return "\n".join(lines[-n:])

  def _group_alive(self) -> bool:
    try:
      os.killpg(self.pgid, 0)
      return True
    except ProcessLookupError:
      return False
    except PermissionError:
      return True

  def _kill_group(self, why: str) -> None:
    log(f"{self.name}: {why}")
    try:
      os.killpg(self.pgid, signal.SIGKILL)
    except ProcessLookupError:
      pass

  def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
    """SIGTERM to the launcher, wait; then SIGKILL whatever is left of its process group."""
    if self.stopped:
      return self.proc.returncode
    if self.proc.poll() is None:
      try:
        os.kill(self.proc.pid, signal.SIGTERM)
      except ProcessLookupError:
        pass
      try:
        self.proc.wait(timeout)
      except subprocess.TimeoutExpired:
        self._kill_group(f"launcher pid {self.pgid} still running after {timeout:.0f}s; killing its group")
        self.proc.wait()
    # The launcher stops its children itself; anything it left in the group goes too.
    deadline = time.monotonic() + 15.0
    while self._group_alive() and time.monotonic() < deadline:
      time.sleep(0.2)
    if self._group_alive():
      self._kill_group(f"processes left in group {self.pgid}; killing them")
    self._log_file.close()
    self.stopped = True
    return self.proc.returncode


def measure_runtime(run: TrainRun, seconds: float, startup_timeout: float, warmup_frames: int = 0) -> dict:
  """frames/s over a steady-state window of metrics.jsonl (see the module docstring)."""
  deadline = time.monotonic() + startup_timeout
  cpu = None
  while True:
    if run.proc.poll() is not None:
      raise RuntimeError(
        f"{run.name} exited with status {run.proc.returncode} before the window ended; log tail:\n{run.tail()}"
      )
    lines = run.metrics()
    # Flowing: past warmup_frames, and frames grew over the last interval too (actors still
    # building their envs deliver a first batch, then nothing for seconds).
    k = next(
      (
        i
        for i, m in enumerate(lines)
        if i > 0 and m["frames"] >= max(warmup_frames, 1) and m["frames"] > lines[i - 1]["frames"] > 0
      ),
      None,
    )
    if k is not None and len(lines) > k + 1:
      b = k + 1
      if cpu is None:
        cpu = CpuWindow(pgid=run.pgid)
        deadline = time.monotonic() + 3 * seconds + 60  # the window itself may not stall either
        log(f"{run.name}: warm-up done at {lines[b]['frames']:,} frames; measuring {seconds:.0f}s")
      base = lines[b]
      e = next((i for i in range(b + 1, len(lines)) if lines[i]["time"] - base["time"] >= seconds), None)
      if e is not None:
        end = lines[e]
        window = lines[b + 1 : e + 1]
        mean = lambda key: sum(m.get(key, float("nan")) for m in window) / len(window)
        dt = end["time"] - base["time"]
        ours, others = cpu.end()
        return {
          "fps": (end["frames"] - base["frames"]) / dt,
          "seconds": dt,
          "cpu": ours,
          "cpu_others": others,
          "frames": end["frames"] - base["frames"],
          "batch_fill": mean("inference_batch_fill"),
          "queue": mean("queue_size"),
        }
    if time.monotonic() > deadline:
      raise RuntimeError(f"{run.name}: no steady-state window within the time limit; log tail:\n{run.tail()}")
    time.sleep(0.5)


# ----------------------------------------------------------------------------- env-only ceiling


def _env_worker(config_module: str, env_batch_size: int, seed: int, counters, index: int, stop) -> None:
  """Steps a vector of envs with random actions; counters[index] = vector steps taken (-1 until built)."""
  import envs  # pylint: disable=g-import-not-at-top

  config = importlib.import_module(config_module).get_config()
  vec = envs.make_vector(config.env, env_batch_size, seed=seed)
  try:
    vec.reset(seed=seed)
    vec.action_space.seed(seed)
    counters[index] = 0
    steps = 0
    while not stop.is_set():
      vec.step(vec.action_space.sample())
      steps += 1
      counters[index] = steps
  finally:
    vec.close()


def measure_env_only(
  num_procs: int,
  env_batch_size: int,
  frame_skip: int,
  base_seed: int,
  warmup: float,
  seconds: float,
  startup_timeout: float,
) -> dict:
  ctx = mp.get_context("spawn")
  counters = ctx.RawArray("q", num_procs)
  for i in range(num_procs):
    counters[i] = -1
  stop = ctx.Event()
  # Seeds as the actors pick them (seed.runtime.actor): config.seed * 100_003 + task * env_batch_size.
  procs = [
    ctx.Process(
      target=_env_worker,
      name=f"env-only-{i}",
      daemon=True,
      args=("configs.atari_vtrace", env_batch_size, base_seed * 100_003 + i * env_batch_size, counters, i, stop),
    )
    for i in range(num_procs)
  ]
  try:
    for p in procs:
      p.start()
    deadline = time.monotonic() + startup_timeout
    while min(counters[:]) < 0:
      dead = [p for p in procs if not p.is_alive()]
      if dead:
        raise RuntimeError(f"env-only worker {dead[0].name} exited with {dead[0].exitcode}")
      if time.monotonic() > deadline:
        raise RuntimeError("env-only workers did not build their envs in time")
      time.sleep(0.1)
    time.sleep(warmup)
    cpu = CpuWindow(pids={p.pid for p in procs})
    t0, c0 = time.monotonic(), sum(counters[:])
    time.sleep(seconds)
    t1, c1 = time.monotonic(), sum(counters[:])
    ours, others = cpu.end()
    if not all(p.is_alive() for p in procs):
      raise RuntimeError("an env-only worker died during the window")
    steps = (c1 - c0) * env_batch_size
    return {
      "fps": steps * frame_skip / (t1 - t0),
      "seconds": t1 - t0,
      "frames": steps * frame_skip,
      "cpu": ours,
      "cpu_others": others,
    }
  finally:
    stop.set()
    for p in procs:
      p.join(10.0)
    for p in procs:
      if p.is_alive():
        p.terminate()
        p.join(5.0)
      if p.is_alive():
        p.kill()
        p.join()


# ----------------------------------------------------------------------------- CartPole


def time_to_goal(run: TrainRun, timeout: float, goal: float = CARTPOLE_GOAL, recent: int = RECENT) -> dict:
  """Waits for the run to stop itself (goal or frame cap) or times out, then reads episodes.csv."""
  # The launcher reaps learner and actors, and we reap the launcher: their CPU time ends up in
  # RUSAGE_CHILDREN once the run is over (nothing else of ours finishes meanwhile).
  children_cpu = lambda: (lambda r: r.ru_utime + r.ru_stime)(resource.getrusage(resource.RUSAGE_CHILDREN))
  cpu0, busy0, t0 = children_cpu(), _machine_busy(), time.monotonic()
  try:
    run.proc.wait(timeout)
    timed_out = False
  except subprocess.TimeoutExpired:
    timed_out = True
  end_time = time.time()
  status = run.stop()
  dt = time.monotonic() - t0
  cpu = (children_cpu() - cpu0) / dt
  cpu_others = max(0.0, (_machine_busy() - busy0) / dt - cpu)
  if status not in (0, None) and not timed_out:
    raise RuntimeError(f"{run.name} exited with status {status}; log tail:\n{run.tail()}")
  rows = []
  try:
    with open(run.logdir / "episodes.csv", encoding="utf-8") as f:
      rows = [(float(r["time"]), int(r["frames"]), float(r["return"])) for r in csv.DictReader(f)]
  except FileNotFoundError:
    pass
  window_sum, hit = 0.0, None
  for i, (_, _, ret) in enumerate(rows):
    window_sum += ret
    if i >= recent:
      window_sum -= rows[i - recent][2]
    if i >= recent - 1 and window_sum / recent >= goal:
      hit = i
      break
  last = run.metrics()[-1:] or [{"frames": 0}]
  out = {
    "episodes": len(rows),
    "timed_out": timed_out,
    "final_frames": last[0]["frames"],
    "total_seconds": end_time - run.start_time,
    "cpu": cpu,
    "cpu_others": cpu_others,
  }
  if hit is not None:
    out.update(frames=rows[hit][1], seconds=rows[hit][0] - run.start_time, episode=hit + 1)
  return out
