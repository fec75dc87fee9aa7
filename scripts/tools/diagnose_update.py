"""What N updates do to a config's network on recorded play, before any long run.

  .venv/bin/python scripts/tools/diagnose_update.py --config configs/atari_vtrace_fast.py --updates 25
  .venv/bin/python scripts/tools/diagnose_update.py --config configs/atari_vtrace_fast.py --config.agent.warmup_steps=0

Records the config's envs played by the fresh agent (a near-uniform policy: random play)
after --skip steps, then runs --updates learning steps on that fixed batch (--sample: a
random draw each step from --pool unrolls) and prints, per step: dead units per torso
layer, the spread of V and of the logits across states, the gradient norm and mean rho.
For agents with a `loss` (V-trace) it first prints the gradient norm of each loss term
(policy, baseline x baseline_cost, entropy x entropy_cost) at each layer, on the fresh network.
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

import envs  # noqa: E402
from agents import registry  # noqa: E402
from seed import diagnostics  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a config file in configs/.")
_UPDATES = flags.DEFINE_integer("updates", 25, "Learning steps to run.")
_SKIP = flags.DEFINE_integer("skip", 100, "Env steps played before recording (not kept).")
_POOL = flags.DEFINE_integer("pool", 0, "Unrolls to record (0: config.batch_size).")
_SAMPLE = flags.DEFINE_bool("sample", False, "Draw each batch at random from the pool instead of a fixed batch.")


def _layer_of(variable: tf.Variable) -> str:
  parts = variable.name.split("/")
  return "/".join(parts[-3:-1]) if len(parts) > 2 else parts[0]


def term_gradients(agent, unroll) -> None:
  """Per-layer gradient norms of each weighted loss term (agents with `loss(unroll)` only)."""
  c = agent.config
  variables = agent.trainable_variables
  with tf.GradientTape(persistent=True) as tape:
    _, logs = agent.loss(unroll)
    terms = {
      "policy": logs["loss/policy"],
      "baseline": c.baseline_cost * logs["loss/baseline"],
      "entropy": -c.entropy_cost * logs["entropy"],
    }
  grads = {name: tape.gradient(term, variables) for name, term in terms.items()}
  print(f"{'layer (kernel)':34s}" + "".join(f"{n:>12s}" for n in terms))
  for i, v in enumerate(variables):
    if "kernel" not in v.name:
      continue
    norms = [0.0 if grads[n][i] is None else float(tf.norm(grads[n][i])) for n in terms]
    print(f"{_layer_of(v):34s}" + "".join(f"{x:12.3g}" for x in norms))


def main(_):
  config = _CONFIG.value
  tf.random.set_seed(config.seed)
  spaces = envs.env_spaces(config.env, seed=config.seed)
  agent = registry.make_agent(config, *spaces)
  pool = _POOL.value or config.batch_size
  start = time.monotonic()
  unrolls = diagnostics.record_unrolls(
    agent, config, pool, config.unroll_length, seed=config.seed, warmup_steps=_SKIP.value
  )
  print(f"recorded {pool} unrolls of {config.unroll_length + 1} steps in {time.monotonic() - start:.1f} s")
  source = diagnostics.RecordedSource(unrolls, sample=_SAMPLE.value, seed=config.seed)
  if hasattr(agent, "loss"):
    term_gradients(agent, source.dequeue(config.batch_size))
  start = time.monotonic()
  rows = diagnostics.probe(agent, source, _UPDATES.value)
  keys = [k for k in rows[0] if k.startswith(("dead/", "spread/"))]
  keys += [k for k in ("grad_norm", "mean_rho", "entropy", "learning_rate") if k in rows[0]]
  print(f"{'update':>6s}" + "".join(f"{k.split('/')[-1] if '/' in k else k:>14s}" for k in keys))
  for i, row in enumerate(rows):
    print(f"{i:6d}" + "".join(f"{row.get(k, np.nan):14.4g}" for k in keys))
  print(f"{_UPDATES.value} updates in {time.monotonic() - start:.1f} s")


if __name__ == "__main__":
  flags.mark_flag_as_required("config")
  app.run(main)
