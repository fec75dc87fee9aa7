"""The one place that maps `config.agent_name` to an agent package.

An agent is a folder `agents/<name>/` with the same modules as every other:
`config.py` (`get_config()`, `REPLICA_BATCH`, optional `validate(run_config)`), `networks.py`,
`losses.py` and `agent.py` (`make_agent(config, observation_space,
action_space)`). Copying a folder registers it; `tests/test_agent_contract.py`
checks that it keeps the contract. The learner, config validation and
`seed.evaluate` all build agents through here.
"""

from __future__ import annotations

import importlib
import pathlib
import types

import gymnasium
import ml_collections

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


def validate(config: ml_collections.ConfigDict) -> None:
  """Runs the agent's own checks of a full run config (those that need runtime fields too)."""
  check = getattr(module(config.agent_name, "config"), "validate", None)
  if check is not None:
    check(config)


def replica_batch(config: ml_collections.ConfigDict) -> tuple[str, int]:
  """(field path, value) of the batch the agent's training step splits over training devices."""
  path = module(config.agent_name, "config").REPLICA_BATCH
  value = config
  for part in path.split("."):
    value = value[part]
  return path, value


def make_agent(config: ml_collections.ConfigDict, observation_space: gymnasium.Space, action_space: gymnasium.Space):
  """Builds config.agent_name's agent (a seed.runtime.agent.Agent) for a full run config."""
  return module(config.agent_name).make_agent(config, observation_space, action_space)
