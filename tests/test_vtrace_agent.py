"""The V-trace agent's optimizer choice (agent.optimizer): Adam by default, RMSProp as IMPALA used on Atari."""

import numpy as np
import pytest
import tf_keras as keras
from test_agent_contract import PoolSource, _run_config

import envs
from agents import registry


def test_rmsprop_is_built_with_the_configured_decay_and_epsilon_and_trains():
  config = _run_config("vtrace", "CartPole-v1")
  config.agent.optimizer = "rmsprop"
  config.agent.rmsprop_decay, config.agent.rmsprop_epsilon = 0.95, 0.02
  agent = registry.make_agent(config, *envs.env_spaces(config.env, seed=0))
  assert isinstance(agent.optimizer, keras.optimizers.RMSprop)
  assert agent.optimizer.rho == 0.95 and agent.optimizer.epsilon == 0.02
  before = [v.numpy().copy() for v in agent.trainable_variables]
  logs = agent.learn(PoolSource(agent, config, config.unroll_length))
  assert all(np.isfinite(np.asarray(v)) for v in logs.values())
  assert any(not np.array_equal(b, v.numpy()) for b, v in zip(before, agent.trainable_variables))


def test_default_is_adam_and_an_unknown_optimizer_is_refused_before_anything_starts():
  config = _run_config("vtrace", "CartPole-v1")
  assert config.agent.optimizer == "adam"
  config.agent.optimizer = "sgd"
  with pytest.raises(ValueError, match="config.agent.optimizer must be 'adam' or 'rmsprop', got 'sgd'"):
    registry.check_config(config)
