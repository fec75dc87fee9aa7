"""Learner throughput on 1, 2 and 4 devices against the plain one-device path, side by side.

    .venv/bin/python scripts/bench/bench_learner.py [--seconds 15] [--repeats 2] [--variants plain,1,2,4]
        [--config configs/atari_vtrace.py] [--accelerators]

Each variant is a learner built from the config (Atari V-trace by default) in a
process of its own, timed on the same fake unrolls and requests:
  plain  no tf.distribute strategy at all (what the learner was before it had devices);
  N      N training devices (OneDeviceStrategy for 1, MirroredStrategy over N) and the
         same N devices for round-robin inference. On a CPU host the CPU is split
         into N logical devices (config.logical_cpu_devices); with --accelerators the
         devices are the host's GPUs (or TPU cores) and N may not exceed them.
Rows: training steps/s (agent.learn on a batch_size batch already on the host)
and inference batches/s (the bound inference functions called round robin, one
full batch each, the store drained as it fills). Variants run interleaved,
`--repeats` times; the report gives the median of each and its ratio to plain.
On a 2-core CPU host more devices cannot be faster: this measures the overhead
of the distributed path. On a multi-GPU host it measures the speed-up.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def _load_config(path: str):
  spec = importlib.util.spec_from_file_location("bench_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def _timed(fn, seconds: float, warmup: float) -> float:
  """Calls fn() for `warmup` seconds (tracing, caches), then returns calls/s over `seconds` (and 3 calls)."""
  end = time.monotonic() + warmup
  while time.monotonic() < end:
    fn()
  n, start = 0, time.monotonic()
  while time.monotonic() - start < seconds or n < 3:
    fn()
    n += 1
  return n / (time.monotonic() - start)


def child(variant: str, config_path: str, seconds: float, accelerators: bool) -> dict:
  config = _load_config(config_path)
  if variant != "plain":
    n = int(variant)
    config.training_devices = config.inference_devices = n
    config.logical_cpu_devices = 0 if accelerators else n
  sys.path.insert(0, REPO)
  from agents import registry  # pylint: disable=g-import-not-at-top
  from seed.runtime import devices  # pylint: disable=g-import-not-at-top

  devices.configure_logical_cpus(config)
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  from seed.runtime import learner as learner_lib  # pylint: disable=g-import-not-at-top
  from seed.runtime import request  # pylint: disable=g-import-not-at-top

  factory = (lambda plan: tf.distribute.get_strategy()) if variant == "plain" else devices.make_strategy
  learner = learner_lib.Learner(
    config, tempfile.mkdtemp(prefix="bench-learner-"), registry.package(config.agent_name), strategy_factory=factory
  )
  rng = np.random.default_rng(0)

  def fake(spec, rows):
    shape = [rows, *spec.shape]
    if spec.dtype == tf.bool:
      return tf.constant(rng.random(shape) < 0.01)
    if spec.dtype.is_integer:
      return tf.constant(rng.integers(0, 2, shape), spec.dtype)  # frames and actions alike
    return tf.constant(rng.normal(size=shape), spec.dtype)

  with tf.device(devices.HOST):
    batch = tf.nest.map_structure(lambda s: fake(s, config.batch_size), learner.store.unroll_spec)

  class HostBatch:
    """The store's dequeue stand-in: one copy of a fixed batch on the host per call."""

    spec = learner.store.unroll_spec

    def size(self):
      return tf.constant(config.batch_size)

    def dequeue(self, n):
      with tf.device(devices.HOST):
        return tf.nest.map_structure(tf.identity, batch)

  source = HostBatch()
  train_rate = _timed(lambda: learner.agent.learn(source), seconds, warmup=max(3.0, seconds / 5))

  n = config.inference_batch_size
  obs_spec = tf.TensorSpec(batch.steps.observation.shape[2:], batch.steps.observation.dtype)
  req = request.InferenceRequest(
    env_id=tf.range(n, dtype=tf.int32) % learner.num_envs,
    run_id=tf.zeros([n], tf.int64),
    reward=tf.zeros([n]),
    terminated=tf.zeros([n], tf.bool),
    truncated=tf.zeros([n], tf.bool),
    first=tf.zeros([n], tf.bool),
    observation=fake(obs_spec, n),
  )
  args = [*req, tf.ones([n], tf.bool)]  # every row real (the server's pad mask)
  calls = [0]
  drain = config.num_actors * config.env_batch_size

  def infer():
    learner.inference[calls[0] % len(learner.inference)](*args)
    calls[0] += 1
    if int(learner.store.queue.size()) >= drain:
      learner.store.dequeue(drain)

  infer_rate = _timed(infer, seconds, warmup=max(2.0, seconds / 5))
  learner.store.close()
  return {
    "variant": variant,
    "strategy": type(learner.strategy).__name__,
    "train_steps_per_s": train_rate,
    "inference_batches_per_s": infer_rate,
  }


def main() -> int:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--config", default=os.path.join(REPO, "configs", "atari_vtrace.py"))
  p.add_argument("--variants", default="plain,1,2,4")
  p.add_argument("--seconds", type=float, default=15.0, help="measured seconds per row and variant")
  p.add_argument("--repeats", type=int, default=2)
  p.add_argument("--accelerators", action="store_true", help="devices are the host's GPUs/TPU cores, not CPUs")
  p.add_argument("--child", help=argparse.SUPPRESS)
  a = p.parse_args()
  if a.child:
    print(json.dumps(child(a.child, a.config, a.seconds, a.accelerators)))
    return 0
  variants = a.variants.split(",")
  results: dict[str, list[dict]] = {v: [] for v in variants}
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)
  for r in range(a.repeats):
    for v in variants:
      cmd = [sys.executable, __file__, f"--child={v}", f"--config={a.config}", f"--seconds={a.seconds}"]
      out = subprocess.run(
        cmd + (["--accelerators"] if a.accelerators else []),
        capture_output=True,
        text=True,
        env=env,
        timeout=600 + 4 * a.seconds,
      )
      if out.returncode != 0:
        print(out.stderr[-3000:], file=sys.stderr)
        return 1
      row = json.loads(out.stdout.strip().splitlines()[-1])
      results[v].append(row)
      print(
        f"repeat {r + 1} {v:>5} ({row['strategy']}): {row['train_steps_per_s']:.3f} train steps/s, "
        f"{row['inference_batches_per_s']:.1f} inference batches/s",
        flush=True,
      )
  median = {
    v: {k: statistics.median(x[k] for x in rows) for k in rows[0] if k.endswith("_s")} for v, rows in results.items()
  }
  base = median.get("plain") or median[variants[0]]
  print(f"\n{os.path.basename(a.config)}, medians of {a.repeats} runs of {a.seconds:.0f} s each:")
  print(f"{'variant':>8} {'train steps/s':>14} {'ratio':>6} {'inference batches/s':>20} {'ratio':>6}")
  for v in variants:
    m = median[v]
    print(
      f"{v:>8} {m['train_steps_per_s']:>14.3f} {m['train_steps_per_s'] / base['train_steps_per_s']:>6.3f}"
      f" {m['inference_batches_per_s']:>20.1f} {m['inference_batches_per_s'] / base['inference_batches_per_s']:>6.3f}"
    )
  return 0


if __name__ == "__main__":
  sys.exit(main())
