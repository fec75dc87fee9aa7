"""V-trace actor-critic agent (IMPALA): inference step, loss and training step.

Loss (Espeholt et al. 2018, arXiv:1802.01561, section 4.2): policy gradient on
V-trace advantages, a baseline loss toward the V-trace targets v_s, and an
entropy bonus.

Step conventions (see seed.runtime.env_store.Step): step t of an unroll holds x_t, the
reward and terminal flag of the transition *into* x_t, and the action a_t taken
there. Transition t -> t+1 therefore uses reward_{t+1}, discount
gamma * (1 - terminated_{t+1}), and is not real when x_{t+1} is the first
observation of an episode (the action a_t at a final observation is never
applied): those steps are masked out and their importance weight is set to 0,
so no value leaks across the episode boundary while a truncated episode still
bootstraps from V(x_final).
"""

from __future__ import annotations

import gymnasium
import ml_collections
import tensorflow as tf

import envs
from agents import optimizers
from agents.initializers import Initializers
from agents.vtrace import losses, networks
from seed import replicas
from seed.runtime.agent import Agent, serving_function
from seed.runtime.env_store import Unroll
from seed.tf_utils import spreads, time_major

_MASKED_LOG_RHO = -1e9  # exp() of it is 0: a masked step has importance weight 0


class VTraceAgent(Agent):
  """IMPALA's agent on a discrete action space."""

  def __init__(
    self,
    config: ml_collections.ConfigDict,
    observation_space: gymnasium.spaces.Box,
    action_space: gymnasium.spaces.Discrete,
    *,
    batch_size: int,
    train_steps: int,
    seed: int = 0,
  ):
    super().__init__(name="vtrace_agent")
    if not isinstance(action_space, gymnasium.spaces.Discrete):
      raise ValueError(f"the V-trace agent needs a discrete action space, got {action_space}")
    self.config = config
    self.observation_spec = tf.TensorSpec(observation_space.shape, tf.as_dtype(observation_space.dtype))
    self.num_actions = int(action_space.n)
    self.network = networks.ActorCritic(
      self.num_actions,
      config.torso,
      config.mlp_sizes,
      config.lstm_size,
      config.compute_dtype,
      init=Initializers(seed, "vtrace"),
      mlp_activation=config.mlp_activation,
    )
    self.optimizer = optimizers.make(config, train_steps)
    # Build variables and optimizer slots now (in the caller's strategy scope) so checkpoints
    # restore eagerly, inference can be traced, and no variable is created inside a replica step.
    self.step(
      tf.zeros([1, *self.observation_spec.shape], self.observation_spec.dtype),
      tf.ones([1], tf.bool),
      self.initial_state(1),
      tf.zeros([1], tf.int32),
    )
    self.optimizer.build(self.network.trainable_variables)
    self.strategy = tf.distribute.get_strategy()
    self.batch_size = batch_size
    self._learn = None

  @property
  def state_spec(self):
    return self.network.state_spec

  @property
  def output_spec(self):
    return {"action": tf.TensorSpec([], tf.int32), "logits": tf.TensorSpec([self.num_actions], tf.float32)}

  def initial_state(self, batch_size):
    return self.network.initial_state(batch_size)

  def step(self, observation, first, state, env_ids):
    (logits, _), state = self.network(observation, first, state)
    action = tf.random.categorical(logits, 1, dtype=tf.int32)[:, 0]
    return {"action": action, "logits": logits}, state

  def loss(self, unroll: Unroll) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
    """(total loss, logs); every term is a mean over the real transitions, counted in logs["transitions"]."""
    c = self.config
    # Frames stay batch-major (transposing them would copy every pixel); the rest goes time-major.
    steps = tf.nest.map_structure(time_major, unroll.steps._replace(observation=()))
    stats = {}
    logits, values = self.network.unroll(unroll.steps.observation, steps.first, unroll.initial_state, stats)
    actions = steps.agent_output["action"][:-1]
    target_logp = -tf.nn.sparse_softmax_cross_entropy_with_logits(labels=actions, logits=logits[:-1])
    behaviour_logp = -tf.nn.sparse_softmax_cross_entropy_with_logits(
      labels=actions, logits=steps.agent_output["logits"][:-1]
    )
    real = tf.logical_not(steps.first[1:])
    mask = tf.cast(real, tf.float32)
    log_rhos = tf.where(real, target_logp - behaviour_logp, _MASKED_LOG_RHO)
    rewards = steps.reward[1:]
    if c.reward_clip is not None:
      rewards = tf.clip_by_value(rewards, -c.reward_clip, c.reward_clip)
    discounts = c.discount * mask * (1.0 - tf.cast(steps.terminated[1:], tf.float32))
    returns = losses.vtrace(
      log_rhos,
      discounts,
      rewards,
      values[:-1],
      values[-1],
      clip_rho_threshold=c.clip_rho_threshold,
      clip_pg_rho_threshold=c.clip_pg_rho_threshold,
      lambda_=c.lambda_,
    )
    advantages = returns.pg_advantages
    if c.normalize_advantages:
      advantages = losses.scale_by_std(advantages, mask)
    pg = losses.policy_gradient_loss(logits[:-1], actions, advantages, mask)
    baseline = losses.baseline_loss(values[:-1], returns.vs, mask)
    entropy = losses.entropy_loss(logits[:-1], mask)
    total = pg + c.baseline_cost * baseline + c.entropy_cost * entropy
    logs = {
      "loss/total": total,
      "loss/policy": pg,
      "loss/baseline": baseline,
      "entropy": -entropy,
      "mean_rho": tf.reduce_sum(tf.exp(log_rhos) * mask) / tf.maximum(tf.reduce_sum(mask), 1.0),
      "transitions": tf.reduce_sum(mask),
      **stats,
      **spreads(logits[:-1], values[:-1], mask),
    }
    return total, logs

  def learn(self, source) -> dict[str, tf.Tensor]:
    if self._learn is None:  # one graph: dequeue on the host, train on every replica
      self._learn = tf.function(lambda: replicas.run(self.strategy, self.train, source.dequeue(self.batch_size)))
    return self._learn()

  def train(self, unroll: Unroll) -> dict[str, tf.Tensor]:
    """One gradient step on `unroll` (this replica's rows of the global batch)."""
    variables = self.network.trainable_variables
    with tf.GradientTape() as tape:
      total, logs = self.loss(unroll)
    weight = logs.pop("transitions")
    grads = replicas.mean_gradients(tape.gradient(total, variables), weight)
    logs["grad_norm"] = tf.linalg.global_norm(grads)
    self.optimizer.apply_gradients(zip(grads, variables), skip_gradients_aggregation=True)
    logs["learning_rate"] = optimizers.current_learning_rate(self.optimizer)
    return replicas.mean_logs(logs, weight)

  def policy(self) -> tf.Module:
    return Policy(self.network, self.observation_spec)


class Policy(tf.Module):
  """The exported policy. Recurrent state goes in and out explicitly, so a client
  can play an episode step by step: pass `state_*` back, zeros at an episode start."""

  def __init__(self, network: networks.ActorCritic, observation_spec: tf.TensorSpec):
    super().__init__(name="policy")
    self.network = network

    def step(observation, first, state):
      (logits, value), new_state = network(observation, first, state)
      return {
        "action": tf.random.categorical(logits, 1, dtype=tf.int32)[:, 0],
        "greedy_action": tf.argmax(logits, -1, output_type=tf.int32),
        "logits": logits,
        "value": value,
      }, new_state

    self.serving_default = serving_function(observation_spec, network.state_spec, step)


def make_agent(
  config: ml_collections.ConfigDict, observation_space: gymnasium.Space, action_space: gymnasium.Space
) -> VTraceAgent:
  """Builds the agent from a full run config (config.agent and the runtime fields)."""
  frames_per_step = config.batch_size * config.unroll_length * envs.frame_skip(config.env)
  return VTraceAgent(
    config.agent,
    observation_space,
    action_space,
    batch_size=config.batch_size,
    train_steps=-(-config.total_environment_frames // frames_per_step),
    seed=config.seed,
  )
