"""Time to solve CartPole-v1 (last-50 mean return >= 475), SEED against Stable-Baselines3 PPO, side by side.

    .venv/bin/python scripts/bench/bench_cartpole.py [--seeds 0 1 2] [--config configs/cartpole_ppo.py]
        [--sb3_venv .venv-sb3] [--timeout 300]

For each seed, in turn: `python -m seed.train --config <config>` (stop_mean_return=475), then
SB3's PPO with the RL Zoo's CartPole hyperparameters (scripts/bench/sb3_cartpole.py: 8 envs,
n_steps 32, batch 256, GAE 0.8, gamma 0.98, 20 epochs, lr 1e-3 and clip 0.2 decayed
linearly). Each is timed from its process launch (imports, process start-up and tracing
count) to the line that says the goal was reached. SB3 runs in a virtualenv of its own
(torch==2.13.0 as on these machines, stable-baselines3), created on first use. Prints each
run, both medians and the ratio SEED / SB3 (below 1: SEED solves it sooner).

    .venv/bin/python scripts/bench/bench_cartpole.py --actors 1 2 [--seeds 0 1 2 3 4 5]

instead compares our runs with 1 and with 2 actor processes (the same 16 envs in all: 16 per actor, or
8 each), alternating per seed; no SB3. Prints each run, the medians and the ratio 2 actors / 1.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SB3_REQUIREMENTS = ["torch==2.13.0", "stable-baselines3==2.9.2", "gymnasium==1.4.0"]


def ensure_sb3_venv(path: str) -> str | None:
  """The venv's python, creating it when needed; None (with the reason printed) when it cannot be made."""
  python = os.path.join(path, "bin", "python")
  check = [python, "-c", "import stable_baselines3, torch"]
  if os.path.exists(python) and subprocess.run(check, capture_output=True).returncode == 0:
    return python
  print(f"creating the SB3 virtualenv {path} ({' '.join(SB3_REQUIREMENTS)}) ...", flush=True)
  steps = [[sys.executable, "-m", "venv", path], [python, "-m", "pip", "install", "-q", *SB3_REQUIREMENTS], check]
  for step in steps:
    result = subprocess.run(step, capture_output=True, text=True)
    if result.returncode:
      tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
      print(f"cannot set up Stable-Baselines3 in {path}: `{' '.join(step)}` failed:\n  " + "\n  ".join(tail))
      return None
  return python


def timed_run(argv: list[str], goal_line: str, timeout: float) -> tuple[float | None, int | None, str]:
  """Runs argv; (seconds from launch to the goal line, frames or steps it names, last output line)."""
  start = time.monotonic()
  proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  seconds = count = None
  last = ""
  try:
    for line in proc.stdout:
      if line.strip():
        last = line.strip()
      match = re.search(goal_line, line)
      if match and seconds is None:
        seconds, count = time.monotonic() - start, int(match.group(1).replace(",", ""))
      if time.monotonic() - start > timeout:
        last = f"timed out after {timeout:.0f}s"
        break
  finally:
    if proc.poll() is None:
      proc.terminate()
    try:
      proc.wait(30)
    except subprocess.TimeoutExpired:
      proc.kill()
      proc.wait()
  return seconds, count, last


def seed_run(config: str, seed: int, logdir: str, extra: list[str], timeout: float):
  """Our run of `config` to 475: (seconds from launch, frames, last output line)."""
  argv = [
    os.path.join(REPO, ".venv", "bin", "python"),
    "-m",
    "seed.train",
    f"--config={config}",
    f"--config.seed={seed}",
    "--config.stop_mean_return=475",
    f"--logdir={logdir}",
    *extra,
  ]
  return timed_run(argv, r"goal reached: .* at ([\d,]+) frames", timeout)


def compare_actors(args: argparse.Namespace) -> int:
  """Seconds to 475 with each actor count in args.actors, the same envs in all."""
  times: dict[int, list[float]] = {n: [] for n in args.actors}
  print("| seed | " + " | ".join(f"{n} actor(s): s, frames" for n in args.actors) + " |")
  print("|---" * (len(args.actors) + 1) + "|")
  with tempfile.TemporaryDirectory(prefix="bench-cartpole-") as tmp:
    for seed in args.seeds:
      cells = []
      for n in args.actors:
        extra = [f"--config.num_actors={n}", f"--config.env_batch_size={args.total_envs // n}"]
        s, frames, last = seed_run(args.config, seed, os.path.join(tmp, f"a{n}-s{seed}"), extra, args.timeout)
        cells.append(f"{s:.1f}, {frames:,}" if s is not None else f"- ({last})")
        if s is not None:
          times[n].append(s)
      print(f"| {seed} | " + " | ".join(cells) + " |", flush=True)
  for n, t in times.items():
    if t:
      print(f"{n} actor(s): median {statistics.median(t):.1f} s over {len(t)} seeds")
  base = times[args.actors[0]]
  for n in args.actors[1:]:
    if times[n] and base:
      print(f"ratio {n} actors / {args.actors[0]}: {statistics.median(times[n]) / statistics.median(base):.2f}")
  return 0 if all(len(t) == len(args.seeds) for t in times.values()) else 1


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
  parser.add_argument("--config", default="configs/cartpole_ppo.py")
  parser.add_argument("--sb3_venv", default=os.path.join(REPO, ".venv-sb3"))
  parser.add_argument("--timeout", type=float, default=300.0)
  parser.add_argument("--actors", type=int, nargs="+", help="compare these actor counts instead of SB3")
  parser.add_argument("--total_envs", type=int, default=16, help="with --actors: envs over all actors")
  args = parser.parse_args()
  if args.actors:
    return compare_actors(args)
  sb3 = ensure_sb3_venv(args.sb3_venv)
  ours, theirs = [], []
  print(f"{'seed':>4} | {'SEED s':>7} {'frames':>9} | {'SB3 s':>7} {'steps':>9}")
  with tempfile.TemporaryDirectory(prefix="bench-cartpole-") as tmp:
    for seed in args.seeds:
      s, frames, last = seed_run(args.config, seed, os.path.join(tmp, f"seed{seed}"), [], args.timeout)
      if s is None:
        print(f"seed {seed}: SEED did not reach 475 ({last})")
      else:
        ours.append(s)
      t = steps = None
      if sb3:
        sb3_argv = [sb3, os.path.join(REPO, "scripts", "bench", "sb3_cartpole.py"), f"--seed={seed}"]
        t, steps, last = timed_run(sb3_argv, r"goal reached at (\d+) steps", args.timeout)
        if t is None:
          print(f"seed {seed}: SB3 did not reach 475 ({last})")
        else:
          theirs.append(t)
      fmt = lambda x, spec: format(x, spec) if x is not None else "-"
      print(f"{seed:>4} | {fmt(s, '7.1f')} {fmt(frames, '9,')} | {fmt(t, '7.1f')} {fmt(steps, '9,')}", flush=True)
  if ours:
    print(f"SEED ({args.config}) median: {statistics.median(ours):.1f} s over {len(ours)} seeds")
  if theirs:
    print(f"SB3 PPO (RL Zoo) median: {statistics.median(theirs):.1f} s over {len(theirs)} seeds")
  if ours and theirs:
    print(f"ratio SEED / SB3: {statistics.median(ours) / statistics.median(theirs):.2f}")
  return 0 if ours and theirs and len(ours) == len(theirs) == len(args.seeds) else 1


if __name__ == "__main__":
  sys.exit(main())
