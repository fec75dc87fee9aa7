"""The interface an agent implements to plug into the generic runtime.

An agent package `agents/<name>/` provides `agent.make_agent(config,
observation_space, action_space) -> Agent`; the runtime gets it through an
`AgentPackage` (seed/runtime/agent_package.py), never by importing agents/. The learner calls `step` inside
batched inference (from C++ server threads, so it must be pure TF) and `learn`
in its training loop; `learn` pulls completed unrolls from the source and
decides what to do with them (train on them directly, or fill a replay and
sample from it). The learner checkpoints the agent (a tf.Module holding
networks, optimizer and anything else to keep) and exports `policy()` as a
SavedModel.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any

import tensorflow as tf

from seed.runtime.env_store import Unroll
from seed.tf_utils import Nest


class Source(abc.ABC):
  """Completed unrolls (batch-major, `unroll_length + 1` steps each)."""

  spec: Unroll

  @abc.abstractmethod
  def size(self) -> tf.Tensor:
    """Unrolls ready now."""

  @abc.abstractmethod
  def dequeue(self, n) -> Unroll:
    """Blocks until `n` unrolls are ready; usable inside tf.function."""


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

  @property
  def sequence_overlap(self) -> int:
    """Steps consecutive unrolls share (1: the last step of one is the first of the next)."""
    return 1

  @abc.abstractmethod
  def step(self, observation: Nest, first: tf.Tensor, state: Nest, env_ids: tf.Tensor) -> tuple[Nest, Nest]:
    """One batched inference step: (outputs matching output_spec, new state)."""

  @abc.abstractmethod
  def learn(self, source: Source) -> dict[str, Any]:
    """One learning step with data from `source`; returns scalar logs."""

  @abc.abstractmethod
  def policy(self) -> tf.Module:
    """A module with a `serving_default` tf.function, exported as a SavedModel."""


def serving_function(
  observation_spec: tf.TensorSpec,
  state_spec: Nest,
  step: Callable[[tf.Tensor, tf.Tensor, Nest], tuple[dict[str, tf.Tensor], Nest]],
):
  """An exported policy's `serving_default` with the recurrent state passed explicitly.

  Inputs `observation` [, `state_0`, `state_1`, ...] (batched); outputs what
  `step(observation, first, state)` returns plus the new `state_i`. No step is
  an episode start here: a client starting an episode passes zero states.
  """
  obs = tf.TensorSpec([None, *observation_spec.shape], observation_spec.dtype, name="observation")
  states = [
    tf.TensorSpec([None, *s.shape], s.dtype, name=f"state_{i}") for i, s in enumerate(tf.nest.flatten(state_spec))
  ]

  def serve(observation, *state):
    first = tf.zeros([tf.shape(observation)[0]], tf.bool)
    out, new_state = step(observation, first, tf.nest.pack_sequence_as(state_spec, list(state)))
    out.update({f"state_{i}": s for i, s in enumerate(tf.nest.flatten(new_state))})
    return out

  return tf.function(serve, input_signature=[obs, *states])
