#!/usr/bin/env python3
"""Frames/s of a multi-host run over TLS against the same run in local mode, side by side.

Not a test. Runs the same config twice per round, in turn:
  local:    `python -m seed.train` in local mode (learner + actors over the
            private unix socket);
  multihost: the learner and the actors in their own network namespaces
            (tests/netns.py: veth pairs through a bridge), the actors spread
            over two actor hosts, TCP with TLS and a bearer token
            (certificates from scripts/tools/make_certs.sh).
Each run trains for --warmup + --seconds, then gets SIGTERM; frames/s is read
from its metrics.jsonl over the window after the warm-up. Needs root and
iproute2 (network namespaces). Every process and namespace it makes is gone
when it returns.

    .venv/bin/python scripts/bench/bench_multihost.py                    # as root; CartPole, ~5 min
    .venv/bin/python scripts/bench/bench_multihost.py --config configs/atari_vtrace.py [--config.field=value ...]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import pathlib
import signal
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))  # the namespace hosts and the cluster live with the tests

import cluster  # noqa: E402
import netns  # noqa: E402

ACTOR_HOSTS = ("actors-a", "actors-b")


def _rate(metrics: list[dict], warmup: float) -> tuple[float, float, float]:
  """Frames/s between the first metrics line after the warm-up and the last one; mean batch fill and queue."""
  nan = float("nan")
  if not metrics:
    return nan, nan, nan
  t0 = metrics[0]["time"] + warmup
  window = [m for m in metrics if m["time"] >= t0]
  if len(window) < 2:
    return nan, nan, nan
  fps = (window[-1]["frames"] - window[0]["frames"]) / (window[-1]["time"] - window[0]["time"])
  fills = [m["inference_batch_fill"] for m in window if m["inference_batch_fill"] == m["inference_batch_fill"]]
  return fps, statistics.fmean(fills) if fills else nan, statistics.fmean(m["queue_size"] for m in window)


def _stop(procs: list[subprocess.Popen]) -> None:
  for p in procs:
    if p.poll() is None:
      p.send_signal(signal.SIGTERM)
  deadline = time.monotonic() + 60
  for p in procs:
    try:
      p.wait(max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
      p.kill()
      p.wait()


def _train_args(args) -> list[str]:
  return ["--config.log_interval=1", "--config.total_environment_frames=1000000000", *args.overrides]


def run_local(args, workdir: pathlib.Path) -> tuple[float, float, float]:
  logdir = workdir / "run"
  with open(workdir / "local.log", "wb") as log:
    proc = subprocess.Popen(
      [sys.executable, "-m", "seed.train", f"--config={args.config}", f"--logdir={logdir}", *_train_args(args)],
      cwd=REPO,
      env=dict(os.environ, PYTHONPATH=str(REPO)),
      stdout=log,
      stderr=subprocess.STDOUT,
    )
  try:
    _wait_for_training(lambda: cluster.read_metrics(logdir), [proc], workdir)
    time.sleep(args.warmup + args.seconds)
  finally:
    _stop([proc])
  return _rate(cluster.read_metrics(logdir), args.warmup)


def run_multihost(args, workdir: pathlib.Path, num_actors: int) -> tuple[float, float, float]:
  pki = cluster.make_certs(workdir / "pki", "learner")
  with netns.Hosts(("learner", *ACTOR_HOSTS), stop_timeout=10.0) as hosts:
    c = cluster.Cluster(hosts, workdir, pki, args.config)
    procs = [c.learner("learner", *_train_args(args))]
    for task in range(num_actors):
      procs.append(c.actor(ACTOR_HOSTS[task % len(ACTOR_HOSTS)], f"actor{task}", task, *args.overrides))
    try:
      _wait_for_training(c.metrics, procs, workdir)
      time.sleep(args.warmup + args.seconds)
    finally:
      _stop(procs)
    return _rate(c.metrics(), args.warmup)


def _wait_for_training(metrics, procs, workdir: pathlib.Path, timeout: float = 300.0) -> None:
  deadline = time.monotonic() + timeout
  while not any(m["frames"] > 0 for m in metrics()):
    if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
      logs = "".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}" for p in workdir.glob("*.log"))
      raise RuntimeError(f"the run did not start training:\n{logs}")
    time.sleep(0.5)


def _num_actors(config_path: str, overrides: list[str]) -> int:
  for o in overrides:
    if o.startswith("--config.num_actors="):
      return int(o.split("=", 1)[1])
  spec = importlib.util.spec_from_file_location("bench_config", config_path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config().num_actors


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--config", default=str(REPO / "configs" / "cartpole_vtrace.py"))
  parser.add_argument("--seconds", type=float, default=30.0, help="measurement window per run")
  parser.add_argument("--warmup", type=float, default=10.0, help="seconds of training before the window")
  parser.add_argument("--repeat", type=int, default=3, help="rounds (local, then multihost); medians shown")
  args, overrides = parser.parse_known_args()  # the rest: --config.field=value for both runs
  bad = [o for o in overrides if not o.startswith("--config.")]
  if bad:
    parser.error(f"unrecognized arguments: {' '.join(bad)}")
  args.overrides = overrides
  reason = netns.available()
  if reason:
    sys.exit(f"bench_multihost needs network namespaces (root and iproute2): {reason}")
  num_actors = _num_actors(args.config, args.overrides)
  signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))  # unwind: finally blocks clean up
  rates: dict[str, list[tuple[float, float, float]]] = {"local": [], "multihost": []}
  with tempfile.TemporaryDirectory(prefix="seed-bench-mh-") as tmp:
    for i in range(args.repeat):
      for kind, fn in (("local", run_local), ("multihost", lambda a, w: run_multihost(a, w, num_actors))):
        workdir = pathlib.Path(tmp) / f"{kind}{i}"
        workdir.mkdir()
        rates[kind].append(fn(args, workdir))
        fps, fill, queue = rates[kind][-1]
        print(f"round {i + 1}: {kind:9s} {fps:,.0f} frames/s  batch fill {fill:.2f}  queue {queue:.1f}", flush=True)
  local, multi = (statistics.median(r[0] for r in rates[k]) for k in ("local", "multihost"))
  name = pathlib.Path(args.config).name
  print(f"\n{name}, {num_actors} actors, {args.seconds:g} s windows, median of {args.repeat}:")
  print(f"  local (unix socket)              {local:10,.0f} frames/s")
  print(f"  multihost (netns, TLS + token)   {multi:10,.0f} frames/s")
  print(f"  multihost / local                {multi / local:10.2f}")


if __name__ == "__main__":
  main()
