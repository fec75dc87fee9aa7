"""A conv torso that dies under its first updates fails here in a minute, not after an hour of flat reward.

Pong frames from random play (made here, fixed seed) train each shipped Atari config's
network with its own optimizer settings for a few dozen updates (seed.diagnostics). The
test fails if a torso layer's dead-unit fraction or V's collapse across states passes the
bounds below. Measured (README "Learning from pixels"): V-trace on the Nature CNN with the
settings Pong stayed flat with (Adam epsilon 1e-5, raw advantages, clip 40) took V's spread
from 0.017 to 0.004 in 40 updates and conv3 from 28% to 58% dead; the shipped settings at
their full learning rate kept V's spread and conv3 at 30-34% over 100 updates. The old
settings are checked to fail, so the bounds do separate them.
"""

import importlib

import numpy as np
import pytest
import tensorflow as tf

import envs
from agents import registry
from seed import diagnostics

pytestmark = pytest.mark.learning  # left out by ./scripts/test.sh --quick

MIN_VALUE_SPREAD_KEPT = 0.5  # V's spread across states after the updates / before
MAX_DEAD = {"conv1": 0.35, "conv2": 0.40, "conv3": 0.45, "dense": 0.65}  # fraction of units after the updates
POOL, SKIP = 16, 60  # recorded unrolls, random-play steps before recording (Pong's serve)


def _config(name: str):
  c = importlib.import_module(f"configs.{name}").get_config()
  c.agent.compute_dtype = "float32"  # the same numbers on every CPU
  c.agent.warmup_steps = 0  # the bounds must hold at the full learning rate, not only during warm-up
  c.seed = 0
  if c.agent_name == "ppo":  # a smaller batch: 16 minibatch updates per learn instead of 16 on 4x the data
    c.unroll_length, c.batch_size, c.agent.minibatch_size = 32, 8, 2
  return c


def _old_vtrace_settings(c):
  """atari_vtrace_fast.py as it was while Pong stayed at -20.3 for 3-5.6M frames."""
  c.agent.adam_epsilon = 1e-5
  c.agent.normalize_advantages = False
  c.agent.max_grad_norm = 40.0


def _probe(config, unrolls, updates):
  tf.random.set_seed(0)
  agent = registry.make_agent(config, *envs.env_spaces(config.env, seed=0))
  rows = diagnostics.probe(agent, diagnostics.RecordedSource(unrolls, sample=True, seed=0), updates)
  return diagnostics.health(rows[0]), diagnostics.health(rows[-1])


def _failures(before, after) -> list[str]:
  out = []
  kept = after["spread/value"] / before["spread/value"]
  if kept < MIN_VALUE_SPREAD_KEPT:
    out.append(
      f"V's spread fell to {kept:.2f} of its start ({before['spread/value']:.4f} -> {after['spread/value']:.4f})"
    )
  for layer, bound in MAX_DEAD.items():
    if after[f"dead/{layer}"] > bound:
      out.append(
        f"{layer}: {after[f'dead/{layer}']:.0%} dead (bound {bound:.0%}; {before[f'dead/{layer}']:.0%} at start)"
      )
  return out


def _record(config):
  agent = registry.make_agent(config, *envs.env_spaces(config.env, seed=0))
  return diagnostics.record_unrolls(agent, config, POOL, config.unroll_length, seed=0, warmup_steps=SKIP)


@pytest.fixture(scope="module")
def vtrace_play():
  """Random play recorded once: the shipped and the old settings build the same initial network."""
  return _record(_config("atari_vtrace_fast"))


def test_shipped_vtrace_settings_keep_the_nature_torso_alive(vtrace_play):
  before, after = _probe(_config("atari_vtrace_fast"), vtrace_play, 30)
  assert not _failures(before, after), (_failures(before, after), before, after)


def test_the_settings_pong_stayed_flat_with_fail_the_same_bounds(vtrace_play):
  config = _config("atari_vtrace_fast")
  _old_vtrace_settings(config)
  before, after = _probe(config, vtrace_play, 30)
  assert _failures(before, after), (before, after)


def test_shipped_ppo_settings_keep_the_nature_torso_alive():
  config = _config("atari_ppo")
  # 2 learns after the first = 48 minibatch updates; a third would find the recorded unrolls
  # older than max_policy_lag and train on nothing.
  before, after = _probe(config, _record(config), config.agent.max_policy_lag)
  assert np.isfinite(after["spread/value"])
  assert not _failures(before, after), (_failures(before, after), before, after)
