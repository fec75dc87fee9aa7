"""The interface an agent implements to plug into the generic runtime.

An agent package `agents/<name>/` provides `agent.make_agent(config,
observation_space, action_space) -> Agent`. The learner calls `step` inside
batched inference (from C++ server threads, so it must be pure TF) and `train`
on batches of unrolls; it checkpoints the agent (a tf.Module holding networks
and optimizer) and exports `policy()` as a SavedModel.
"""

from __future__ import annotations

import abc
from typing import Any

import tensorflow as tf

from seed.env_store import Unroll

Nest = Any


class Agent(tf.Module, abc.ABC):
  """Networks, inference step and training step of one RL algorithm."""

  @property
  @abc.abstractmethod
  def state_spec(self) -> Nest:
    """Per-env recurrent state specs (no batch dim); () for feed-forward agents."""

  @property
  @abc.abstractmethod
  def output_spec(self) -> Nest:
    """Per-step outputs stored in unrolls (no batch dim); a dict with an 'action' key."""

  @abc.abstractmethod
  def initial_state(self, batch_size: tf.Tensor | int) -> Nest:
    """Recurrent state for `batch_size` fresh episodes."""

  @abc.abstractmethod
  def step(self, observation: Nest, first: tf.Tensor, state: Nest) -> tuple[Nest, Nest]:
    """One batched inference step: (outputs matching output_spec, new state)."""

  @abc.abstractmethod
  def train(self, unroll: Unroll) -> dict[str, tf.Tensor]:
    """One optimisation step on a batch of unrolls (batch-major); returns scalar logs."""

  @abc.abstractmethod
  def policy(self) -> tf.Module:
    """A module with a `serving_default` tf.function, exported as a SavedModel."""
