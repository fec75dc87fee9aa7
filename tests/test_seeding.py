"""Reproducible runs: an agent's initial parameters are a function of config.seed alone.

Each agent is built in fresh processes: twice with the same seed (one of them after
scrambling Python's, numpy's and TensorFlow's global random state) must give identical
variables; another seed must give different ones. The conv torsos are covered on Catch.
"""

import json
import os
import subprocess
import sys

import pytest
from helpers import run_parallel

from agents import registry

_BUILD = r"""
import hashlib, json, random, sys
import numpy as np
import tensorflow as tf
import envs
from agents import registry
from seed.runtime import config as seed_config

seed, scramble = int(sys.argv[1]), sys.argv[2] == "1"
if scramble:  # whatever the caller did before: none of it may reach the weights
  random.seed(123); np.random.seed(7); tf.random.set_seed(99); tf.random.normal([5]); np.random.rand(3)
  import tf_keras; tf_keras.utils.set_random_seed(5); tf_keras.initializers.GlorotUniform()([3, 3])
cases = [(name, None, None) for name in registry.names()]
cases += [(name, "seed/Catch-v0", "nature_cnn") for name in ("vtrace", "ppo", "r2d2")]
out = {}
for name, env_id, torso in cases:
  c = seed_config.runtime_config()
  c.agent_name = name
  c.env = envs.env_config(env_id or ("Pendulum-v1" if name == "sac" else "CartPole-v1"))
  c.agent = registry.default_config(name)
  if torso:
    c.agent.torso = torso
    if name == "ppo":
      c.agent.normalize_observations = False
  c.num_actors, c.env_batch_size, c.inference_batch_size, c.batch_size = 1, 8, 8, 8
  c.seed = seed
  agent = registry.make_agent(c, *envs.env_spaces(c.env, seed=0))
  h = hashlib.sha256()
  for v in sorted(agent.variables, key=lambda v: v.name):
    h.update(v.name.encode()); h.update(np.ascontiguousarray(v.numpy()).tobytes())
  out[f"{name}/{torso or 'default'}"] = h.hexdigest()
print("HASHES " + json.dumps(out))
"""


def _hashes(seed: int, scramble: bool) -> dict[str, str]:
  result = subprocess.run(
    [sys.executable, "-c", _BUILD, str(seed), "1" if scramble else "0"],
    capture_output=True,
    text=True,
    timeout=600,
    env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_USE_LEGACY_KERAS": "1"},
  )
  assert result.returncode == 0, result.stderr[-3000:]
  line = next(x for x in result.stdout.splitlines() if x.startswith("HASHES "))
  return json.loads(line[len("HASHES ") :])


@pytest.fixture(scope="module")
def builds():
  builds = run_parallel(_hashes, [(0, False), (0, True), (1, False)], timeout=600)  # three fresh processes at once
  for b in builds:
    if isinstance(b, BaseException):
      raise b
  return tuple(builds)


def test_same_seed_same_initial_parameters_in_fresh_processes(builds):
  first, scrambled, _ = builds
  assert {k.split("/")[0] for k in first} == set(registry.names())
  assert first == scrambled


def test_another_seed_gives_other_initial_parameters(builds):
  first, _, other = builds
  for key in first:
    assert first[key] != other[key], key
