#!/usr/bin/env python3
"""What an actor process costs: RSS after warm-up and time from process start to the first answered call.

    .venv/bin/python scripts/bench/bench_actor.py                 # CartPole and Pong, 3 runs of each kind
    .venv/bin/python scripts/bench/bench_actor.py --repeats 1 --warmup_steps 100

Not a test. For CartPole (configs/cartpole_vtrace.py) and Pong (configs/atari_vtrace.py), it starts
`python -m seed.train --mode=actor` processes one at a time against a stand-in learner in this
process (a seed.grpc.Server binding the learner's inference signature and answering random legal
actions at once, so the figures are the actor's own), in two kinds, alternating:

  lean: the actor as it is: numpy, gymnasium and the TF-free client library (seed.rpc.client);
  with TF: the same actor in a process that first imports TensorFlow and loads the op library,
        which every actor did before issue 28 (`import tensorflow` in seed.runtime.actor,
        seed.grpc's client on the op library).

One more row per env, "env alone", is the floor under both: a process that only imports the env
factory, builds the same vector env and resets it (no client, no server), timed the same way.

"first call" is the time from spawning the process to the server receiving its first inference
call (its answer follows within microseconds). RSS is the actor's VmRSS after --warmup_steps steps
(the envs built and stepped, the client warm). Each figure is the median over --repeats runs.
Targets (issue 28): Pong actor RSS <= 150 MiB, first call <= 1.5 s.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # as seed.train sets it for every process it starts
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, REPO)

import tensorflow as tf  # noqa: E402

from seed import grpc  # noqa: E402
from seed.runtime import processes, request  # noqa: E402

# Imports TensorFlow and loads the op library (the old actor's start), then runs seed.train's main.
_WITH_TF = (
  "import runpy, sys\n"
  "import tensorflow\n"
  "from seed import grpc\n"
  "grpc.op_library()\n"
  "sys.argv[0] = 'seed.train'\n"
  "runpy.run_module('seed.train', run_name='__main__', alter_sys=True)\n"
)
# Builds and resets the actor's vector env, nothing else; prints when done (CLOCK_MONOTONIC is system-wide).
_ENV_ALONE = (
  "import sys, time\n"
  "import envs\n"
  "from configs import {config}\n"
  "vec = envs.make_vector({config}.get_config().env, {n})\n"
  "vec.reset(seed=0)\n"
  "print(time.monotonic())\n"
)
ENVS = {  # name: (config, observation spec, number of actions)
  "CartPole": ("cartpole_vtrace", tf.TensorSpec([4], tf.float32), 2),
  "Pong": ("atari_vtrace", tf.TensorSpec([84, 84, 4], tf.uint8), 6),
}


class StandIn:
  """A learner's inference endpoint: random legal actions; notes when calls arrive."""

  def __init__(self, address: str, batch: int, obs_spec: tf.TensorSpec, actions: int):
    self.server = grpc.Server([address])
    self.lock = threading.Lock()
    self.first_call: float | None = None
    self.calls = 0
    signature = [*request.specs(obs_spec, batch), tf.TensorSpec([batch], tf.bool, name="mask")]

    def note():
      with self.lock:
        self.calls += 1
        if self.first_call is None:
          self.first_call = time.monotonic()

    @tf.function(input_signature=signature)
    def inference(env_id, run_id, reward, terminated, truncated, first, observation, mask):
      del run_id, reward, terminated, truncated, first, observation
      tf.py_function(note, [], [])
      return tf.where(mask, tf.random.uniform(tf.shape(env_id), 0, actions, tf.int32), 0)

    self.server.bind(inference, pad_mask=True, flush_timeout=0.002)
    self.server.start()

  def reset(self) -> None:
    with self.lock:
      self.first_call, self.calls = None, 0


def rss_mib(pid: int) -> float:
  with open(f"/proc/{pid}/status", encoding="ascii") as f:
    for line in f:
      if line.startswith("VmRSS:"):
        return int(line.split()[1]) / 1024
  raise RuntimeError(f"no VmRSS for {pid}")


def one_actor(
  kind: str, config: str, address: str, stand_in: StandIn, warmup_steps: int, n: int
) -> tuple[float, float]:
  """(seconds to the first call, RSS MiB after warm-up) of one actor process, stopped afterwards."""
  flags = [
    f"--config={REPO}/configs/{config}.py",
    "--mode=actor",
    "--task=0",
    f"--server_address={address}",
    "--config.num_actors=1",
    f"--config.env_batch_size={n}",
    f"--config.inference_batch_size={n}",
  ]
  head = [sys.executable, "-m", "seed.train"] if kind == "lean" else [sys.executable, "-c", _WITH_TF]
  stand_in.reset()
  with tempfile.TemporaryFile() as log:
    t0 = time.monotonic()
    proc = subprocess.Popen([*head, *flags], cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
      deadline = t0 + 300
      while stand_in.calls < warmup_steps:
        if proc.poll() is not None or time.monotonic() > deadline:
          log.seek(0)
          raise RuntimeError(f"{kind} actor ({config}) failed:\n{log.read().decode()[-3000:]}")
        time.sleep(0.02)
      return stand_in.first_call - t0, rss_mib(proc.pid)
    finally:
      processes.stop(proc, 10)


def env_alone(config: str, n: int) -> float:
  """Seconds from spawning a process to its vector env built and reset."""
  t0 = time.monotonic()
  out = subprocess.run(
    [sys.executable, "-c", _ENV_ALONE.format(config=config, n=n)], cwd=REPO, capture_output=True, text=True, timeout=300
  )
  if out.returncode:
    raise RuntimeError(f"env alone ({config}) failed:\n{out.stderr[-3000:]}")
  return float(out.stdout.split()[-1]) - t0


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--warmup_steps", type=int, default=200, help="steps before RSS is read")
  parser.add_argument("--env_batch_size", type=int, default=8, help="envs per actor (the configs' default: 8)")
  args = parser.parse_args()
  cpu = platform.processor() or platform.machine()
  print(f"{cpu}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}, {args.env_batch_size} envs/actor")
  print("| env | actor | first call s | RSS MiB | with TF / lean (RSS) |")
  print("|---|---|---|---|---|")
  with tempfile.TemporaryDirectory(prefix="bench-actor-") as tmp:
    results = {}
    for env, (config, spec, actions) in ENVS.items():
      address = f"unix:{tmp}/{env}.sock"
      stand_in = StandIn(address, args.env_batch_size, spec, actions)
      try:
        runs = {"with TF": [], "lean": []}
        alone = []
        for _ in range(args.repeats):
          for kind in runs:
            runs[kind].append(one_actor(kind, config, address, stand_in, args.warmup_steps, args.env_batch_size))
          alone.append(env_alone(config, args.env_batch_size))
      finally:
        stand_in.server.shutdown()
      med = {k: (statistics.median(r[0] for r in v), statistics.median(r[1] for r in v)) for k, v in runs.items()}
      results[env] = med
      for kind in ("with TF", "lean"):
        first, rss = med[kind]
        ratio = med["with TF"][1] / rss
        print(f"| {env} | {kind} | {first:.2f} | {rss:.0f} | **{ratio:.1f}x** |")
      print(f"| {env} | env alone (build + reset) | {statistics.median(alone):.2f} | | |")
  pong = results["Pong"]["lean"]
  ok = pong[1] <= 150 and pong[0] <= 1.5
  print(f"\ntargets (Pong lean actor: RSS <= 150 MiB, first call <= 1.5 s): {'met' if ok else 'MISSED'}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
