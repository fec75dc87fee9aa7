"""Soft actor-critic (SAC) on continuous (gymnasium Box) action spaces.

Haarnoja et al. 2018 (arXiv:1801.01290; arXiv:1812.05905 for the automatic
temperature and clipped double-Q): twin Q critics with polyak-averaged target
critics, a tanh-squashed Gaussian actor trained through the reparametrised
sample, and a learned entropy temperature alpha = exp(log_alpha) steered toward
a target entropy. Loss terms: agents/sac/losses.py.

Data path: inference (`step`) samples an action from the policy (uniformly at
random for the first `random_steps` env steps) and rescales it from [-1, 1]^A
to the action space's bounds; the runtime stores it in unrolls. `learn` moves
completed unrolls into a uniform numpy replay through `ReplayFeeder` (which
holds the replay ratio `samples_per_insert`), turning them into single-step
transitions with `valid_transitions` (the non-transition into a `first`
observation is dropped; termination gets discount 0, truncation bootstraps).
Actions go into the replay normalised back to [-1, 1]^A, the space the
critics see. Each `learn` call is then one gradient step on one uniformly
sampled batch of `batch_size` transitions.

All three losses of a step are computed from the same (pre-update) parameters
in one pass, as in the authors' implementation, then critics, actor and
log_alpha are updated, then the target critics move toward the critics by tau.

Checkpointed state (attributes of this tf.Module): actor, critics, target
critics, the three optimizers, log_alpha, `acted_steps` and `gradient_steps`.
The replay is NOT checkpointed (numpy, and possibly large): a resumed run
starts with an empty replay and waits for `min_replay_size` new transitions.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import ml_collections
import numpy as np
import tensorflow as tf
import tf_keras as keras

from agents.initializers import Initializers
from agents.sac import losses, networks
from seed import replicas
from seed.replay.buffers import UniformReplay
from seed.replay.feeder import ReplayFeeder, valid_transitions
from seed.runtime.agent import Agent, Source


class SACAgent(Agent):
  """SAC with automatic temperature, uniform replay and replay-ratio control."""

  def __init__(
    self,
    config: ml_collections.ConfigDict,
    observation_space: gymnasium.spaces.Space,
    action_space: gymnasium.spaces.Space,
    *,
    seed: int = 0,
  ):
    super().__init__(name="sac_agent")
    if not isinstance(action_space, gymnasium.spaces.Box):
      raise ValueError(f"the SAC agent needs a continuous (gymnasium Box) action space, got {action_space}")
    if not isinstance(observation_space, gymnasium.spaces.Box):
      raise ValueError(f"the SAC agent needs a Box observation space, got {observation_space}")
    low = np.asarray(action_space.low, np.float64).reshape(-1)
    high = np.asarray(action_space.high, np.float64).reshape(-1)
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high)) and np.all(low < high)):
      raise ValueError(f"the SAC agent needs finite action bounds with low < high, got {action_space}")
    if config.batch_size < 1 or config.replay_capacity < config.batch_size:
      raise ValueError(
        f"agent.batch_size ({config.batch_size}) must be >= 1 and <= agent.replay_capacity ({config.replay_capacity})"
      )
    if not 0.0 < config.tau <= 1.0:
      raise ValueError(f"agent.tau must be in (0, 1], got {config.tau}")
    if not config.initial_alpha > 0:
      raise ValueError(f"agent.initial_alpha must be > 0, got {config.initial_alpha}")
    self.config = config
    self._seed = seed
    self.observation_spec = tf.TensorSpec(observation_space.shape, tf.as_dtype(observation_space.dtype))
    self.action_shape = tuple(action_space.shape)
    self.action_dim = int(np.prod(self.action_shape))
    self._low_np, self._high_np = low.astype(np.float32), high.astype(np.float32)
    self._low = tf.constant(self._low_np)
    self._high = tf.constant(self._high_np)
    self.target_entropy = float(-self.action_dim if config.target_entropy is None else config.target_entropy)

    init = Initializers(seed, "sac")
    self.actor = networks.Actor(
      self.action_dim, config.actor_sizes, config.log_std_min, config.log_std_max, init.child("actor")
    )
    self.critic1 = networks.Critic(config.critic_sizes, name="critic1", init=init.child("critic1"))
    self.critic2 = networks.Critic(config.critic_sizes, name="critic2", init=init.child("critic2"))
    # The targets start as copies of the critics (copy_variables below).
    self.target_critic1 = networks.Critic(config.critic_sizes, name="target_critic1")
    self.target_critic2 = networks.Critic(config.critic_sizes, name="target_critic2")
    self.log_alpha = tf.Variable(np.log(config.initial_alpha), dtype=tf.float32, name="log_alpha")
    self.critic_optimizer = keras.optimizers.Adam(config.critic_learning_rate)
    self.actor_optimizer = keras.optimizers.Adam(config.actor_learning_rate)
    self.alpha_optimizer = keras.optimizers.Adam(config.alpha_learning_rate)
    # Env steps that asked the agent for an action (all envs; drives random_steps).
    self.acted_steps = tf.Variable(0, dtype=tf.int64, trainable=False, name="acted_steps")
    self.gradient_steps = tf.Variable(0, dtype=tf.int64, trainable=False, name="gradient_steps")

    # Build every variable now, so checkpoints restore eagerly and inference can be traced.
    obs = tf.zeros([1, *self.observation_spec.shape], self.observation_spec.dtype)
    act = tf.zeros([1, self.action_dim])
    self.actor(obs)
    for critic in (self.critic1, self.critic2, self.target_critic1, self.target_critic2):
      critic(obs, act)
    # Target critics start as copies and then only move by polyak averaging (no optimizer has them).
    networks.copy_variables(self.critic1, self.target_critic1)
    networks.copy_variables(self.critic2, self.target_critic2)
    self.critic_optimizer.build(self._critic_variables)
    self.actor_optimizer.build(self.actor.trainable_variables)
    self.alpha_optimizer.build([self.log_alpha])
    self.strategy = tf.distribute.get_strategy()  # the learner's, when built in its scope

    # Not checkpointed (plain Python/numpy objects, which tf.Module does not track).
    self._replay = UniformReplay(config.replay_capacity)
    self._rng = np.random.default_rng(seed)
    self._feeder: ReplayFeeder | None = None
    spec = lambda shape, dtype: tf.TensorSpec([config.batch_size, *shape], dtype)
    self._train = tf.function(
      self._train_step,
      input_signature=[
        {
          "observation": spec(self.observation_spec.shape, self._replay_obs_dtype),
          "action": spec([self.action_dim], tf.float32),
          "reward": spec([], tf.float32),
          "discount": spec([], tf.float32),
          "next_observation": spec(self.observation_spec.shape, self._replay_obs_dtype),
        }
      ],
    )

  # -- the Agent interface ------------------------------------------------------

  @property
  def state_spec(self):
    return ()

  @property
  def output_spec(self):
    return {"action": tf.TensorSpec(self.action_shape, tf.float32)}

  def initial_state(self, batch_size):
    return ()

  def step(self, observation, first, state, env_ids):
    """Samples a ~ pi(.|x) per env, scaled to the action bounds. Rows are counted in
    `acted_steps`; while it is below `random_steps` the action is uniform instead."""
    n = tf.shape(observation)[0]
    mean, log_std = self.actor(observation)
    action = losses.tanh_gaussian(mean, log_std).sample()
    if self.config.random_steps > 0:
      before = self.acted_steps.assign_add(tf.cast(n, tf.int64)) - tf.cast(n, tf.int64)
      random = before + tf.range(n, dtype=tf.int64) < self.config.random_steps
      uniform = tf.random.uniform([n, self.action_dim], -1.0, 1.0)
      action = tf.where(random[:, None], uniform, action)
    else:
      self.acted_steps.assign_add(tf.cast(n, tf.int64))
    return {"action": self.scale_action(action)}, state

  def learn(self, source: Source) -> dict[str, Any]:
    """Moves unrolls into the replay as the ratio requires (waiting for the actors if
    needed), then one gradient step on a uniform batch; returns scalar logs."""
    c = self.config
    if self._feeder is None or self._feeder.source is not source:
      self._feeder = ReplayFeeder(
        source, self._replay, self._to_items, c.min_replay_size, c.samples_per_insert, c.batch_size
      )
    feeder = self._feeder
    feeder.pull()
    logs: dict[str, Any] = {}
    if len(self._replay) >= max(c.min_replay_size, c.batch_size):
      batch = self._replay.sample(c.batch_size, self._rng)
      feeder.count_sampled(c.batch_size)
      logs.update(self._train(batch))
    logs.update(
      {
        "replay/size": len(self._replay),
        "replay/bytes": self._replay.nbytes,
        "replay/ratio": feeder.replay_ratio,
        "replay/inserted": feeder.inserted,
      }
    )
    return logs

  def policy(self) -> tf.Module:
    return Policy(self.actor, self.observation_spec, self._low_np, self._high_np, self.action_shape)

  # -- helpers ------------------------------------------------------------------

  def scale_action(self, action: tf.Tensor) -> tf.Tensor:
    """[B, A] in [-1, 1] -> [B, *action_shape] within the action space bounds."""
    return _scale(action, self._low, self._high, self.action_shape)

  def normalize_action(self, action: np.ndarray) -> np.ndarray:
    """Inverse of scale_action, in numpy: [N, *action_shape] -> [N, A] in [-1, 1]."""
    flat = np.asarray(action, np.float32).reshape(len(action), self.action_dim)
    unit = 2.0 * (flat - self._low_np) / (self._high_np - self._low_np) - 1.0
    return np.clip(unit, -1.0, 1.0).astype(np.float32)

  @property
  def _replay_obs_dtype(self) -> tf.DType:
    # float64 observations (MuJoCo) are stored as float32: half the replay memory.
    return tf.float32 if self.observation_spec.dtype == tf.float64 else self.observation_spec.dtype

  @property
  def replay(self) -> UniformReplay:
    return self._replay

  @property
  def feeder(self) -> ReplayFeeder | None:
    return self._feeder

  @property
  def _critic_variables(self) -> list[tf.Variable]:
    return [*self.critic1.trainable_variables, *self.critic2.trainable_variables]

  def _to_items(self, unrolls) -> tuple[dict[str, np.ndarray], int]:
    items = valid_transitions(unrolls.steps, self.config.discount)
    obs_dtype = self._replay_obs_dtype.as_numpy_dtype
    items["observation"] = items["observation"].astype(obs_dtype, copy=False)
    items["next_observation"] = items["next_observation"].astype(obs_dtype, copy=False)
    items["action"] = self.normalize_action(items["action"])
    return items, len(items["reward"])

  def _train_step(self, batch: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    # The policy's sampling noise for s and s' is drawn here for the whole batch (seeded by the
    # step count) and split with it, so the step does not depend on how many replicas share it.
    rows = tf.shape(batch["observation"])[0]
    seed = tf.stack([tf.constant(self._seed, tf.int64), self.gradient_steps.read_value()])
    noise = tf.random.stateless_normal([rows, 2, self.action_dim], seed)
    logs = replicas.run(self.strategy, self._replica_step, {**batch, "noise": noise})
    for online, target in ((self.critic1, self.target_critic1), (self.critic2, self.target_critic2)):
      for s, t in zip(online.variables, target.variables):
        t.assign(t + self.config.tau * (s - t))
    self.gradient_steps.assign_add(1)
    return logs

  def _replica_step(self, batch: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """Critic, actor and temperature updates from this replica's rows (all three losses are batch means)."""
    c = self.config
    obs, next_obs = batch["observation"], batch["next_observation"]
    alpha = tf.exp(self.log_alpha)
    with tf.GradientTape(persistent=True) as tape:
      # One actor pass over s and s', one pass of each critic over (s, a) and (s, a~pi).
      mean, log_std = self.actor(tf.concat([obs, next_obs], 0))
      # The reparametrised sample a = tanh(u), u = mean + std * noise, and log pi(a) (as TFP's
      # sample_and_log_prob computes it: base density of u minus the bijector's log-det).
      pi = losses.tanh_gaussian(mean, log_std)
      u = mean + tf.exp(log_std) * tf.concat([batch["noise"][:, 0], batch["noise"][:, 1]], 0)
      sample = pi.bijector.forward(u)
      log_prob = pi.distribution.log_prob(u) - pi.bijector.forward_log_det_jacobian(u, event_ndims=1)
      pi_action, next_action = tf.split(sample, 2)
      log_prob_pi, next_log_prob = tf.split(log_prob, 2)
      next_q1 = self.target_critic1(next_obs, next_action)
      next_q2 = self.target_critic2(next_obs, next_action)
      both_obs = tf.concat([obs, obs], 0)
      both_actions = tf.concat([batch["action"], pi_action], 0)
      q1, q1_pi = tf.split(self.critic1(both_obs, both_actions), 2)
      q2, q2_pi = tf.split(self.critic2(both_obs, both_actions), 2)
      critic_loss = losses.critic_loss(
        q1, q2, c.reward_scale * batch["reward"], batch["discount"], next_q1, next_q2, next_log_prob, alpha
      )
      actor_loss = losses.actor_loss(q1_pi, q2_pi, log_prob_pi, alpha)
      temperature_loss = losses.temperature_loss(self.log_alpha, log_prob_pi, self.target_entropy)
    critic_vars = self._critic_variables
    actor_vars = self.actor.trainable_variables
    rows = tf.shape(obs)[0]
    critic_grads, actor_grads, (alpha_grad,) = (
      replicas.mean_gradients(tape.gradient(loss, variables), rows)
      for loss, variables in (
        (critic_loss, critic_vars),
        (actor_loss, actor_vars),
        (temperature_loss, [self.log_alpha]),
      )
    )
    del tape
    skip = {"skip_gradients_aggregation": True}
    self.critic_optimizer.apply_gradients(zip(critic_grads, critic_vars), **skip)
    self.actor_optimizer.apply_gradients(zip(actor_grads, actor_vars), **skip)
    self.alpha_optimizer.apply_gradients([(alpha_grad, self.log_alpha)], **skip)
    logs = {
      "loss/critic": critic_loss,
      "loss/policy": actor_loss,
      "loss/temperature": temperature_loss,
      "alpha": tf.exp(self.log_alpha),
      "entropy": -tf.reduce_mean(log_prob_pi),
      "q_mean": tf.reduce_mean(tf.minimum(q1, q2)),
      "critic_grad_norm": tf.linalg.global_norm(critic_grads),
      "actor_grad_norm": tf.linalg.global_norm(actor_grads),
    }
    return replicas.mean_logs(logs, rows)


def _scale(action: tf.Tensor, low: tf.Tensor, high: tf.Tensor, shape: tuple[int, ...]) -> tf.Tensor:
  scaled = low + 0.5 * (action + 1.0) * (high - low)
  scaled = tf.clip_by_value(scaled, low, high)  # float rounding at the bounds
  return tf.reshape(scaled, tf.concat([tf.shape(action)[:1], tf.constant(shape, tf.int32)], 0))


class Policy(tf.Module):
  """The exported policy: `serving_default(observation)` ->
    action: a sample of the tanh-Gaussian, scaled to the action space bounds;
    greedy_action: tanh(mean), scaled (the deterministic policy for evaluation);
    mean, log_std: [B, A] parameters of the Gaussian before tanh, so a client
      can sample with its own generator: low + (tanh(mean + exp(log_std) * eps) + 1) / 2 * (high - low).
  Feed-forward: no recurrent state inputs or outputs."""

  def __init__(
    self,
    actor: networks.Actor,
    observation_spec: tf.TensorSpec,
    low: np.ndarray,
    high: np.ndarray,
    action_shape: tuple[int, ...],
  ):
    super().__init__(name="policy")
    self.actor = actor
    self.low = tf.constant(low)
    self.high = tf.constant(high)
    obs = tf.TensorSpec([None, *observation_spec.shape], observation_spec.dtype, name="observation")

    def serve(observation):
      mean, log_std = self.actor(observation)
      sample = losses.tanh_gaussian(mean, log_std).sample()
      return {
        "action": _scale(sample, self.low, self.high, action_shape),
        "greedy_action": _scale(tf.tanh(mean), self.low, self.high, action_shape),
        "mean": mean,
        "log_std": log_std,
      }

    self.serving_default = tf.function(serve, input_signature=[obs])


def make_agent(
  config: ml_collections.ConfigDict, observation_space: gymnasium.Space, action_space: gymnasium.Space
) -> SACAgent:
  """Builds the agent from a full run config (uses config.agent and config.seed)."""
  return SACAgent(config.agent, observation_space, action_space, seed=config.seed)
