"""Learning curves as a picture: `python -m seed.plot RUN_DIR [RUN_DIR ...] [--x frames|minutes] --out curves.png`.

`--milestones -10 0 10 18` also prints, per run, the frames and minutes at which the
last-50 mean first reached each return.

Reads each run directory's own files (episodes.csv, config.json; through
tf.io.gfile for gs:// paths) and draws the mean episode return over the last 50 episodes
against environment frames or wall-clock minutes since the run's first episode,
several runs overlaid, env and agent in the title and legend. A run still being
written works (its episodes so far); a missing or empty run directory, or one
with no finished episode yet, is a one-line error. Headless (matplotlib Agg).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys

import numpy as np

from seed import run_files

WINDOW = 50  # the learner's "mean return" window


class PlotError(Exception):
  """A run directory that cannot be plotted; the message says why in one line."""


def load_run(run_dir: str) -> dict:
  """{'label', 'env', 'agent', 'frames', 'minutes', 'returns'} of a run directory's finished episodes."""
  isdir, exists, read = run_files.accessors(run_dir)
  if not isdir(run_dir):
    raise PlotError(f"{run_dir}: no such run directory")
  episodes = os.path.join(run_dir, "episodes.csv")
  if not exists(episodes):
    raise PlotError(f"{run_dir}: no episodes.csv (not a run directory, or the learner has not started)")
  rows = [r for r in csv.DictReader(io.StringIO(read(episodes))) if r.get("return") not in (None, "")]
  if not rows:
    raise PlotError(f"{run_dir}: no finished episode yet")
  env, agent = "?", "?"
  config_path = os.path.join(run_dir, "config.json")
  if exists(config_path):
    config = json.loads(read(config_path))
    env, agent = config.get("env", {}).get("id", "?"), config.get("agent_name", "?")
  times = np.array([float(r["time"]) for r in rows])
  returns = np.array([float(r["return"]) for r in rows])
  kernel = np.ones(min(WINDOW, len(returns)))
  mean = np.convolve(returns, kernel, "full")[: len(returns)] / np.minimum(np.arange(1, len(returns) + 1), len(kernel))
  return {
    "label": f"{os.path.basename(os.path.normpath(run_dir))} ({agent})",
    "env": env,
    "agent": agent,
    "frames": np.array([float(r["frames"]) for r in rows]),
    "minutes": (times - times[0]) / 60.0,
    "returns": mean,
  }


def milestones(run: dict, thresholds: list[float]) -> list[tuple[float, float | None, float | None]]:
  """(threshold, frames, minutes) where the last-50 mean first reaches each threshold (None, None: not yet).

  Only full windows count: a mean over fewer than 50 episodes is not "the last 50"."""
  full = np.arange(len(run["returns"])) >= WINDOW - 1
  out = []
  for t in thresholds:
    hit = np.nonzero(full & (run["returns"] >= t))[0]
    out.append((t, float(run["frames"][hit[0]]), float(run["minutes"][hit[0]])) if len(hit) else (t, None, None))
  return out


def format_milestones(run: dict, thresholds: list[float]) -> str:
  lines = [f"{run['label']}: first last-{WINDOW} mean >= threshold (minutes since the first episode)"]
  for t, frames, minutes in milestones(run, thresholds):
    where = f"{frames:,.0f} frames, {minutes:.1f} min" if frames is not None else "not reached"
    lines.append(f"  {t:+g}: {where}")
  return "\n".join(lines)


def plot(runs: list[dict], x: str, out: str) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
  for run in runs:
    ax.plot(run[x], run["returns"], label=run["label"], linewidth=1.5)
  envs_ = sorted({r["env"] for r in runs})
  agents = sorted({r["agent"] for r in runs})
  ax.set_title(f"{', '.join(envs_)}: {', '.join(agents)}")
  ax.set_xlabel("environment frames" if x == "frames" else "minutes since the first episode")
  ax.set_ylabel(f"mean return (last {WINDOW} episodes)")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(out)
  plt.close(fig)


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(prog="python -m seed.plot", description=__doc__.splitlines()[0])
  p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
  p.add_argument("--x", choices=("frames", "minutes"), default="frames")
  p.add_argument("--out", default="curves.png")
  p.add_argument(
    "--milestones", type=float, nargs="+", metavar="R", help="also print the frames and minutes to each mean return R"
  )
  a = p.parse_args(argv)
  try:
    runs = [load_run(d) for d in a.run_dirs]
  except PlotError as e:
    print(f"seed.plot: {e}", file=sys.stderr)
    return 2
  plot(runs, a.x, a.out)
  print(f"wrote {a.out} ({len(runs)} run(s))")
  for run in runs if a.milestones else ():
    print(format_milestones(run, a.milestones))
  return 0


if __name__ == "__main__":
  sys.exit(main())
