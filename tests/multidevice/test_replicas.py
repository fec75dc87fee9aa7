"""Every agent's training step on 2 replicas gives the parameters of the same step on one device.

Same initial weights, same global batch (recorded unrolls of real play in
a fixed order), one `learn` each: under
MirroredStrategy over 2 logical CPUs and under OneDeviceStrategy, the
parameters match the plain one-device step within float tolerance.
"""

import numpy as np
import pytest
import tensorflow as tf
from test_agent_contract import _NUM_ENVS, _run_config

import envs
from agents import registry
from seed.diagnostics import RecordedSource, record_unrolls
from seed.runtime import devices


def _config(name):
  env_id = "Pendulum-v1" if name == "sac" else "CartPole-v1"
  c = _run_config(name, env_id)
  if name == "sac":  # a small replay that one pull fills: the test is the step, not the warm-up
    c.agent.batch_size, c.agent.min_replay_size = 16, 32
  return c


def _build(config, strategy):
  tf.random.set_seed(0)
  with strategy.scope():
    return registry.make_agent(config, *envs.env_spaces(config.env, seed=0))


STRATEGIES = {"mirrored_2": ("/device:CPU:0", "/device:CPU:1"), "one_device": ("/device:CPU:1",)}


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
@pytest.mark.parametrize("name", registry.names())
def test_training_step_on_replicas_equals_one_device(name, strategy):
  config = _config(name)
  plain = _build(config, tf.distribute.get_strategy())
  distributed = _build(config, devices.make_strategy(devices.DevicePlan("CPU", STRATEGIES[strategy], ())))
  replicas = distributed.strategy.num_replicas_in_sync
  assert replicas == (2 if strategy == "mirrored_2" else 1)
  if replicas == 2:
    assert all(len(v.values) == 2 for v in distributed.trainable_variables), "variables mirrored on both devices"
  assert len(plain.variables) == len(distributed.variables)
  for a, b in zip(plain.variables, distributed.variables):
    b.assign(a)  # same start, whatever the strategy did to initializer seeds

  pool = record_unrolls(plain, config, _NUM_ENVS, config.unroll_length, seed=1)
  before = [v.numpy().copy() for v in plain.trainable_variables]
  logs_plain = plain.learn(RecordedSource(pool))  # unrolls in a fixed order: no random draws
  logs_distributed = distributed.learn(RecordedSource(pool))

  moved = [not np.allclose(b, v.numpy()) for b, v in zip(before, plain.trainable_variables)]
  assert sum(moved) >= len(moved) // 2, "the step must change the weights for the comparison to mean anything"
  for a, b in zip(plain.trainable_variables, distributed.trainable_variables):
    np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=2e-4, atol=2e-5, err_msg=a.name)
  for key in ("loss/total", "loss/critic", "loss/policy"):
    if key in logs_plain:
      np.testing.assert_allclose(float(logs_distributed[key]), float(logs_plain[key]), rtol=1e-4, err_msg=key)
