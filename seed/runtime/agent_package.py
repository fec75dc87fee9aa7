"""What the runtime needs of an agent package, handed in by an entry point.

The runtime (seed/) never imports agents/: `seed.train`, `seed.evaluate` and
the gcp launchers resolve `config.agent_name` through agents/registry.py
(`registry.package(name)`) and pass the result to the runtime's config checks,
device plan and learner. TensorFlow-free, as config checks run in actors too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import ml_collections

if TYPE_CHECKING:
  from seed.runtime.agent import Agent


@dataclasses.dataclass(frozen=True)
class AgentPackage:
  """An agent package as the runtime sees it.

  Attributes:
    name: the package's name: config.agent_name.
    default_config: the agent's hyperparameters with their defaults (config.agent).
    make_agent: (run config, observation space, action space) -> Agent; imports the agent's
      TensorFlow code when called.
    replica_batch: dotted path of the config field holding the batch that the training step
      splits over the training devices ("batch_size", "agent.minibatch_size", ...).
    validate: the agent's own checks of a full run config (ValueError naming the field), or None.
  """

  name: str
  default_config: Callable[[], ml_collections.ConfigDict]
  make_agent: Callable[[ml_collections.ConfigDict, Any, Any], Agent]
  replica_batch: str
  validate: Callable[[ml_collections.ConfigDict], None] | None = None

  def replica_batch_value(self, config: ml_collections.ConfigDict) -> int:
    """The value of the replica_batch field in `config`."""
    value = config
    for part in self.replica_batch.split("."):
      value = value[part]
    return value
