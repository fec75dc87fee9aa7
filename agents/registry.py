"""The one place that maps `config.agent_name` to an agent package.

An agent is a folder `agents/<name>/` with the same modules as every other:
`config.py` (`get_config()`, `REPLICA_BATCH`, optional `validate(run_config)`), `networks.py`,
`losses.py` and `agent.py` (`make_agent(config, observation_space,
action_space)`). Copying a folder registers it; `tests/test_agent_contract.py`
checks that it keeps the contract. The learner, config validation and
`seed.evaluate` all build agents through here.
"""

from __future__ import annotations

import functools
import importlib
import pathlib
import types

import gymnasium
import ml_collections

from seed.runtime import config as seed_config
from seed.runtime.agent_package import AgentPackage

_ROOT = pathlib.Path(__file__).resolve().parent
MODULES = ("config", "networks", "losses", "agent")


def names() -> list[str]:
  """Every agent package under agents/ (a folder with an agent.py)."""
  return sorted(p.parent.name for p in _ROOT.glob("*/agent.py"))


def module(name: str, part: str = "agent") -> types.ModuleType:
  """agents.<name>.<part>; ValueError naming the known agents if there is no such agent."""
  if part not in MODULES:
    raise ValueError(f"an agent package has modules {MODULES}, not {part!r}")
  if name not in names():
    raise ValueError(f"config.agent_name={name!r}: no package agents/{name}/ (known agents: {', '.join(names())})")
  return importlib.import_module(f"agents.{name}.{part}")


def default_config(name: str) -> ml_collections.ConfigDict:
  """The agent's hyperparameters with their defaults (config.agent)."""
  return module(name, "config").get_config()


def _make_agent(name: str, config, observation_space: gymnasium.Space, action_space: gymnasium.Space):
  return module(name).make_agent(config, observation_space, action_space)


def package(name: str) -> AgentPackage:
  """The runtime's view of agents/<name>/ (its config module only is imported; the agent's
  TensorFlow code when make_agent is called). ValueError naming the known agents if there is none."""
  config_module = module(name, "config")
  return AgentPackage(
    name=name,
    default_config=config_module.get_config,
    make_agent=functools.partial(_make_agent, name),
    replica_batch=config_module.REPLICA_BATCH,
    validate=getattr(config_module, "validate", None),
  )


def check_config(config: ml_collections.ConfigDict) -> AgentPackage:
  """Resolves config.agent_name and runs every check of the run config (runtime and agent);
  returns the package. ValueError naming the field."""
  if not isinstance(config.get("agent_name"), str):
    raise ValueError("config.agent_name must name an agent package")
  agent = package(config.agent_name)
  seed_config.validate(config, agent)
  return agent


def make_agent(config: ml_collections.ConfigDict, observation_space: gymnasium.Space, action_space: gymnasium.Space):
  """Builds config.agent_name's agent (a seed.runtime.agent.Agent) for a full run config."""
  return _make_agent(config.agent_name, config, observation_space, action_space)
