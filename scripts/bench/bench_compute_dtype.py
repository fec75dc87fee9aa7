"""Training and inference speed of a conv torso in float32 against bfloat16, side by side.

    .venv/bin/python scripts/bench/bench_compute_dtype.py [--config configs/atari_vtrace_fast.py]
        [--rounds 5] [--steps 5]

Builds the config's agent twice (compute_dtype float32 and bfloat16), trains each on the
same synthetic frames, alternating rounds of `--steps` learning steps so both see the same
machine load, and times one batched inference step (`--inference_batch` frames) the same
way. Prints the medians and bfloat16's speed relative to float32, and what
compute_dtype="auto" picks on this host (agents.torsos.native_bfloat16).
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import envs  # noqa: E402
from agents import registry, torsos  # noqa: E402
from seed.diagnostics import RecordedSource  # noqa: E402
from seed.runtime.env_store import Step, Unroll  # noqa: E402


def _config(path: str, dtype: str):
  spec = importlib.util.spec_from_file_location("bench_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  c = module.get_config()
  c.agent.compute_dtype = dtype
  return c


def _unrolls(agent, config, rng) -> Unroll:
  """batch_size unrolls of random frames with the agent's own outputs (shapes are what count)."""
  b, t = config.batch_size, config.unroll_length + 1
  obs_space, _ = envs.env_spaces(config.env, seed=0)
  frames = rng.integers(0, 256, size=(b * t, *obs_space.shape), dtype=np.uint8)
  out, _ = agent.step(
    tf.constant(frames), tf.zeros([b * t], tf.bool), agent.initial_state(b * t), tf.zeros([b * t], tf.int32)
  )
  batch = lambda x: tf.reshape(x, [b, t, *x.shape[1:]])
  steps = Step(
    batch(tf.constant(frames)),
    tf.zeros([b, t]),
    tf.zeros([b, t], tf.bool),
    tf.zeros([b, t], tf.bool),
    tf.zeros([b, t], tf.bool),
    tf.nest.map_structure(batch, out),
  )
  return Unroll(agent.initial_state(b), steps)


def _cpu_model() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
  except (OSError, StopIteration):
    return platform.processor() or "unknown"


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--config", default="configs/atari_vtrace_fast.py")
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument("--steps", type=int, default=5)
  parser.add_argument("--inference_batch", type=int, default=32)
  args = parser.parse_args()
  rng = np.random.default_rng(0)
  runs = {}
  for dtype in ("float32", "bfloat16"):
    config = _config(args.config, dtype)
    agent = registry.make_agent(config, *envs.env_spaces(config.env, seed=0))
    source = RecordedSource(_unrolls(agent, config, rng))
    obs_space, _ = envs.env_spaces(config.env, seed=0)
    n = args.inference_batch
    frames = tf.constant(rng.integers(0, 256, size=(n, *obs_space.shape), dtype=np.uint8))
    step = tf.function(agent.step)
    feeds = (frames, tf.zeros([n], tf.bool), agent.initial_state(n), tf.zeros([n], tf.int32))
    agent.learn(source), step(*feeds)  # trace both outside the timing
    runs[dtype] = (agent, source, step, feeds, config)
  train = {d: [] for d in runs}
  infer = {d: [] for d in runs}
  for _ in range(args.rounds):
    for dtype, (agent, source, step, feeds, _) in runs.items():
      start = time.perf_counter()
      for _ in range(args.steps):
        agent.learn(source)
      train[dtype].append((time.perf_counter() - start) / args.steps)
      start = time.perf_counter()
      for _ in range(10):
        step(*feeds)[0]["action"].numpy()
      infer[dtype].append((time.perf_counter() - start) / 10)
  config = runs["float32"][4]
  transitions = config.batch_size * config.unroll_length
  print(f"CPU: {_cpu_model()}; compute_dtype='auto' picks {torsos.resolve_compute_dtype('auto')} here")
  print(f"config {args.config}: torso {config.agent.torso}, {transitions} transitions per training step")
  for name, times in (("training step", train), (f"inference of {args.inference_batch} frames", infer)):
    f32, bf16 = statistics.median(times["float32"]), statistics.median(times["bfloat16"])
    print(f"{name:28s} float32 {1e3 * f32:8.1f} ms  bfloat16 {1e3 * bf16:8.1f} ms  bfloat16 speed x{f32 / bf16:.2f}")


if __name__ == "__main__":
  main()
