"""The contract every agent under agents/ keeps (a new agent folder must pass it unchanged).

For each registered agent: its folder has the common modules, its specs are
nests of TensorSpecs, `step` returns what the specs say, one `learn` on a
source of real unrolls moves the weights and logs finite scalars, the exported
`serving_default` has the documented signature, and a checkpoint restores
every variable into a freshly built agent.
"""

import importlib

import gymnasium
import numpy as np
import pytest
import tensorflow as tf

import envs
from agents import registry
from seed.diagnostics import RecordedSource, record_unrolls
from seed.runtime import config as seed_config
from seed.runtime.agent import Agent

# Tried in order: the first env whose action space the agent accepts.
_ENVS = ("CartPole-v1", "Pendulum-v1")
_NUM_ENVS = 8


def _run_config(name: str, env_id: str):
  c = seed_config.runtime_config()
  c.agent_name = name
  c.env = envs.env_config(env_id)
  c.agent = registry.default_config(name)
  c.num_actors, c.env_batch_size, c.inference_batch_size = 1, _NUM_ENVS, _NUM_ENVS
  c.unroll_length, c.batch_size, c.unroll_queue_capacity = 10, 8, 16
  c.seed = 0
  registry.check_config(c)
  return c


def _build(name: str, seed: int = 0):
  """(config, agent, spaces) for the first env the agent supports; `seed` is config.seed."""
  for env_id in _ENVS:
    config = _run_config(name, env_id)
    config.seed = seed
    spaces = envs.env_spaces(config.env, seed=0)
    try:
      return config, registry.make_agent(config, *spaces), spaces
    except ValueError as e:
      if "action space" not in str(e):
        raise
  raise AssertionError(f"agent {name!r} accepts none of {_ENVS}")


def PoolSource(agent: Agent, config, length: int) -> RecordedSource:
  """Unrolls drawn at random from a pool of real ones: the config's envs stepped with the agent's
  own `step`, laid out as the learner's store lays them out."""
  return RecordedSource(record_unrolls(agent, config, _NUM_ENVS, length, seed=1), sample=True)


def _specs_ok(nest) -> bool:
  return all(isinstance(s, tf.TensorSpec) for s in tf.nest.flatten(nest))


def _leading(nest, n: int, spec) -> None:
  tf.nest.assert_same_structure(nest, spec)
  for t, s in zip(tf.nest.flatten(nest), tf.nest.flatten(spec)):
    assert t.dtype == s.dtype, (t.dtype, s)
    assert t.shape.as_list() == [n, *s.shape.as_list()], (t.shape, s)


def _contains(space: gymnasium.Space, actions: np.ndarray) -> bool:
  return all(space.contains(np.asarray(a, space.dtype)) for a in actions)


def test_every_agent_folder_is_registered_and_alike():
  names = registry.names()
  assert {"vtrace", "ppo", "r2d2", "sac"} <= set(names)
  for name in names:
    for part in registry.MODULES:
      importlib.import_module(f"agents.{name}.{part}")
    assert callable(registry.module(name).make_agent)
    assert callable(registry.module(name, "config").get_config)
    # The package the runtime is handed; its split batch names a real config field.
    package = registry.package(name)
    assert (
      package.name == name
      and callable(package.make_agent)
      and package.default_config() == registry.default_config(name)
    )
    value = package.replica_batch_value(_run_config(name, _ENVS[0]))
    assert isinstance(value, int) and value > 0, (name, package.replica_batch, value)
  with pytest.raises(ValueError, match="known agents: .*vtrace"):
    registry.module("nope")
  with pytest.raises(ValueError, match="known agents: .*vtrace"):
    registry.package("nope")


@pytest.mark.parametrize("name", registry.names())
def test_agent_contract(name, tmp_path):
  config, agent, (obs_space, act_space) = _build(name)
  assert isinstance(agent, Agent)
  assert _specs_ok(agent.state_spec) and _specs_ok(agent.output_spec)
  assert "action" in agent.output_spec
  assert 1 <= agent.sequence_overlap <= config.unroll_length

  # step: batched outputs and state as the specs say; actions valid for the env.
  n = 3
  obs = tf.constant(np.stack([obs_space.sample() for _ in range(n)]))
  state = agent.initial_state(n)
  _leading(state, n, agent.state_spec)
  out, new_state = agent.step(obs, tf.ones([n], tf.bool), state, tf.range(n, dtype=tf.int32))
  _leading(out, n, agent.output_spec)
  _leading(new_state, n, agent.state_spec)
  assert _contains(act_space, out["action"].numpy())

  # One learn on real unrolls: scalar, finite logs, weights moved.
  source = PoolSource(agent, config, config.unroll_length)
  before = [v.numpy().copy() for v in agent.trainable_variables]
  logs = agent.learn(source)
  assert source.dequeued > 0
  assert any(k.startswith("loss/") for k in logs), sorted(logs)
  for k, v in logs.items():
    v = np.asarray(v)
    assert v.shape == () and np.isfinite(v), (k, v)
  assert any(not np.array_equal(b, v.numpy()) for b, v in zip(before, agent.trainable_variables))

  # Exported serving_default: observation [, state_i] in, action (batched) out.
  export = str(tmp_path / "export")
  policy = agent.policy()
  tf.saved_model.save(policy, export, signatures={"serving_default": policy.serving_default})
  serving = tf.saved_model.load(export).signatures["serving_default"]
  _, inputs = serving.structured_input_signature
  state_names = [f"state_{i}" for i in range(len(tf.nest.flatten(agent.state_spec)))]
  assert sorted(inputs) == sorted(["observation", *state_names])
  assert inputs["observation"].shape.as_list() == [None, *obs_space.shape]
  feeds = {"observation": obs[:2]}
  feeds.update({k: tf.zeros([2, *s.shape], s.dtype) for k, s in zip(state_names, tf.nest.flatten(agent.state_spec))})
  served = serving(**feeds)
  assert {"action", *state_names} <= set(served)
  assert served["action"].shape[0] == 2 and _contains(act_space, served["action"].numpy())

  # Checkpoint round trip into a fresh agent (other init seed): every variable restored.
  path = tf.train.Checkpoint(agent=agent).save(str(tmp_path / "ckpt"))
  _, fresh, _ = _build(name, seed=1)
  assert any(not np.array_equal(a.numpy(), b.numpy()) for a, b in zip(agent.variables, fresh.variables))
  tf.train.Checkpoint(agent=fresh).restore(path).assert_existing_objects_matched()
  assert len(fresh.variables) == len(agent.variables)
  for a, b in zip(agent.variables, fresh.variables):
    np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.name)
