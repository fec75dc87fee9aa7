"""PPO (Schulman et al. 2017, arXiv:1707.06347) on the SEED runtime.

Each `learn` takes `batch_size` fresh unrolls from the queue, computes GAE
advantages with the current value function, then runs `num_epochs` passes of
minibatch updates on the clipped surrogate, value and entropy terms.

On-policy data: the actors' policy is the learner's (central inference), but
unrolls wait in the queue while the learner trains, so an unroll may come from
a policy a few updates old. Each step records the policy version that chose it;
unrolls older than `max_policy_lag` updates are not trained on, and the lag is
reported (`policy_lag/*`, `stale_fraction`).

Episode boundaries follow seed.runtime.env_store.Step: the transition into a `first`
step is not real. GAE gets delta = 0 there (reward := V(x_t), discount 0), so
nothing leaks across the boundary and a truncated episode bootstraps from the
value of its final observation.
"""

from __future__ import annotations

import gymnasium
import ml_collections
import numpy as np
import tensorflow as tf

import envs
from agents import optimizers
from agents.initializers import Initializers
from agents.ppo import losses, networks
from agents.torsos import dead_fractions, make_torso
from seed import replicas
from seed.runtime.agent import Agent, Source
from seed.tf_utils import masked_mean as _masked_mean
from seed.tf_utils import masked_std as _masked_std
from seed.tf_utils import time_major

# What one minibatch update logs (the loop in `_train_fn` carries them).
_UPDATE_LOGS = ("loss/total", "loss/policy", "loss/value", "entropy", "clip_fraction", "grad_norm", "clip_epsilon")


class PPOAgent(Agent):
  def __init__(
    self,
    config: ml_collections.ConfigDict,
    observation_space: gymnasium.spaces.Box,
    action_space: gymnasium.Space,
    *,
    batch_size: int,
    seed: int = 0,
    total_updates: int = 1,
  ):
    super().__init__(name="ppo_agent")
    if batch_size % config.minibatch_size:
      raise ValueError(
        f"batch_size ({batch_size}) must be a multiple of agent.minibatch_size ({config.minibatch_size})"
      )
    self.config = config
    self.batch_size = batch_size
    self.observation_spec = tf.TensorSpec(observation_space.shape, tf.as_dtype(observation_space.dtype))
    self.normalizer = networks.RunningNormalizer(observation_space.shape) if config.normalize_observations else None
    init = Initializers(seed, "ppo")
    # A conv torso is shared by linear heads; with the MLP torso the heads are the two MLPs.
    self.torso = None
    hidden = config.hidden_sizes
    if config.get("torso", "mlp") != "mlp":
      self.torso = make_torso(config.torso, compute_dtype=config.compute_dtype, init=init.child("torso"))
      hidden = ()
    self.policy_net = networks.Policy(action_space, hidden, config.initial_log_std, init.child("policy"))
    self.value_net = networks.Value(hidden, config.popart, config.popart_step, init.child("value"))
    # Gradient steps in the whole run: the horizon of the linear decays.
    self.total_updates = max(int(total_updates), 1)
    self.optimizer = optimizers.make(config, self.total_updates)
    self.updates = tf.Variable(0, dtype=tf.int64, trainable=False, name="updates")
    self._rng = np.random.default_rng(seed)
    if self.policy_net.discrete:
      self._action_spec = {"action": tf.TensorSpec([], tf.int32)}
    else:
      shape = action_space.shape
      self._action_spec = {"action": tf.TensorSpec(shape, tf.float32), "raw_action": tf.TensorSpec(shape, tf.float32)}
    obs = tf.zeros([1, *observation_space.shape], self.observation_spec.dtype)
    self.step(obs, tf.ones([1], tf.bool), (), tf.zeros([1], tf.int32))
    self.value_net(self._normalize(obs))
    # Optimizer slots before any step is traced (no variable may be created inside a replica step).
    self.optimizer.build(self._trained_variables)
    self.strategy = tf.distribute.get_strategy()  # the learner's, when built in its scope
    # One graph per batch: advantages, then every epoch's minibatch updates in a loop (a
    # call per minibatch would cost more than the update of a small network).
    self._train = tf.function(self._train_fn)

  state_spec = ()

  @property
  def output_spec(self):
    return {
      **self._action_spec,
      "log_prob": tf.TensorSpec([], tf.float32),
      "policy_version": tf.TensorSpec([], tf.int64),
    }

  def initial_state(self, batch_size):
    return ()

  @property
  def _trained_variables(self) -> list[tf.Variable]:
    torso = list(self.torso.trainable_variables) if self.torso is not None else []
    return torso + list(self.policy_net.trainable_variables) + list(self.value_net.trainable_variables)

  def _normalize(self, obs: tf.Tensor) -> tf.Tensor:
    """What the heads see: the conv torso's features, else the (normalised) observation."""
    if self.torso is not None:
      return self.torso(obs)
    return self.normalizer(obs) if self.normalizer is not None else tf.cast(obs, tf.float32)

  def step(self, observation, first, state, env_ids):
    dist = self.policy_net.distribution(self._normalize(observation))
    raw = dist.sample()
    out = {
      "action": self.policy_net.to_env(raw),
      "log_prob": dist.log_prob(raw),
      "policy_version": tf.fill(tf.shape(first), self.updates),
    }
    if not self.policy_net.discrete:
      out["raw_action"] = raw
    return out, state

  def _policy_action(self, steps):
    return steps.agent_output["action" if self.policy_net.discrete else "raw_action"]

  def _prepare_fn(self, steps, fresh):
    """Advantages and value targets for a batch-major [B, T+1] batch, with the current networks."""
    c = self.config
    b, t1 = tf.shape(steps.reward)[0], tf.shape(steps.reward)[1]
    obs = tf.reshape(steps.observation, tf.concat([[b * t1], tf.shape(steps.observation)[2:]], 0))
    values = tf.reshape(self.value_net(self._normalize(obs)), [b, t1])
    real = tf.cast(tf.logical_not(steps.first[:, 1:]), tf.float32)
    mask = real * tf.cast(fresh, tf.float32)[:, None]
    discounts = c.discount * real * (1.0 - tf.cast(steps.terminated[:, 1:], tf.float32))
    rewards = steps.reward[:, 1:]
    if c.reward_clip is not None:
      rewards = tf.clip_by_value(rewards, -c.reward_clip, c.reward_clip)
    rewards = tf.where(real > 0, rewards, values[:, :-1])
    tm = time_major
    adv = tm(losses.gae(tm(rewards), tm(discounts), tm(values[:, :-1]), values[:, -1], c.gae_lambda))
    returns = adv + values[:, :-1]
    self.value_net.update_stats(returns, mask)
    if c.normalize_advantages:
      mean = _masked_mean(adv, mask)
      std = tf.sqrt(_masked_mean(tf.square(adv - mean), mask))
      adv = (adv - mean) / (std + 1e-8)
    return adv, returns, values[:, :-1], mask

  def _update_fn(self, observation, action, old_log_prob, advantages, returns, old_values, mask):
    """One minibatch step (or this replica's rows of it); inputs [b, T, ...] for the transitions' first
    observations. Every loss term is a mean over `mask`, so replicas weigh in by its sum."""
    c = self.config
    b, t = tf.shape(advantages)[0], tf.shape(advantages)[1]
    flat = lambda x: tf.reshape(x, tf.concat([[b * t], tf.shape(x)[2:]], 0))
    unflat = lambda x: tf.reshape(x, [b, t])
    variables = self._trained_variables
    clip_epsilon = self._clip_epsilon()
    health = {}
    with tf.GradientTape() as tape:
      if self.torso is not None:
        x, activations = self.torso.forward(flat(observation))
        health = dead_fractions(activations)
      else:
        x = self._normalize(flat(observation))
      dist = self.policy_net.distribution(x)
      log_prob = unflat(dist.log_prob(flat(action)))
      pg = losses.clipped_surrogate_loss(log_prob, old_log_prob, advantages, clip_epsilon, mask)
      entropy = _masked_mean(unflat(self.policy_net.entropy(dist)), mask)
      norm = self.value_net.normalize_targets
      value = losses.value_loss(
        unflat(self.value_net.normalized(x)), norm(old_values), norm(returns), c.value_clip_epsilon or None, mask
      )
      total = pg + c.value_cost * value - c.entropy_cost * entropy
      if self.torso is not None:
        health["spread/value"] = _masked_std(unflat(self.value_net(x)), mask)
    weight = tf.reduce_sum(mask)
    grads = replicas.mean_gradients(tape.gradient(total, variables), weight)
    self.optimizer.apply_gradients(zip(grads, variables), skip_gradients_aggregation=True)
    ratio = tf.exp(log_prob - old_log_prob)
    clipped = tf.cast(tf.abs(ratio - 1.0) > clip_epsilon, tf.float32)
    logs = {
      "loss/total": total,
      "loss/policy": pg,
      "loss/value": value,
      "entropy": entropy,
      "clip_fraction": _masked_mean(clipped, mask),
      "grad_norm": tf.linalg.global_norm(grads),
      "clip_epsilon": clip_epsilon,
      **health,
    }
    return replicas.mean_logs(logs, weight)

  @property
  def _health_logs(self) -> tuple[str, ...]:
    """The conv torso's dead-unit fractions per layer and V's spread, logged per update."""
    if self.torso is None:
      return ()
    return (*(f"dead/{name}" for name in self.torso.layer_names), "spread/value")

  def _clip_epsilon(self) -> tf.Tensor:
    """The surrogate's clipping range for the next gradient step (decayed with the learning rate's horizon)."""
    eps = tf.constant(self.config.clip_epsilon, tf.float32)
    if not self.config.clip_decay:
      return eps
    done = tf.cast(self.optimizer.iterations, tf.float32) / float(self.total_updates)
    return eps * tf.maximum(1.0 - done, 0.0)

  def learn(self, source: Source) -> dict:
    c = self.config
    unroll = source.dequeue(self.batch_size)
    steps = unroll.steps
    lag = (self.updates - tf.reduce_min(steps.agent_output["policy_version"][:, :-1], axis=1)).numpy()
    fresh = lag <= c.max_policy_lag
    logs = {
      "policy_lag/mean": float(lag.mean()),
      "policy_lag/max": float(lag.max()),
      "stale_fraction": float(1.0 - fresh.mean()),
    }
    if not fresh.any():
      return logs
    if self.normalizer is not None:
      self.normalizer.update(tf.boolean_mask(steps.observation, fresh))
    orders = np.stack([self._rng.permutation(self.batch_size) for _ in range(c.num_epochs)])
    out = self._train(steps, tf.constant(fresh), tf.constant(orders, tf.int32))
    self.updates.assign_add(1)
    logs.update({k: float(v) for k, v in out.items()})
    return logs

  def _train_fn(self, steps, fresh, orders):
    """num_epochs passes over the batch, minibatches of unrolls in the order of `orders` [epochs, B].

    Each minibatch is split over the strategy's replicas: the same update as on one device.
    Returns the last update's logs.
    """
    c = self.config
    adv, returns, old_values, mask = self._prepare_fn(steps, fresh)
    data = (
      steps.observation[:, :-1],
      self._policy_action(steps)[:, :-1],
      steps.agent_output["log_prob"][:, :-1],
      adv,
      returns,
      old_values,
      mask,
    )
    size, per_epoch = c.minibatch_size, self.batch_size // c.minibatch_size

    def update(k, _):
      idx = orders[k // per_epoch, (k % per_epoch) * size : (k % per_epoch + 1) * size]
      rows = tuple(tf.gather(x, idx) for x in data)
      logs = replicas.run(self.strategy, lambda r: self._update_fn(*r), rows)
      return k + 1, {name: tf.cast(logs[name], tf.float32) for name in names}

    names = _UPDATE_LOGS + self._health_logs
    first = {name: tf.constant(0.0) for name in names}
    _, logs = tf.while_loop(lambda k, _: k < c.num_epochs * per_epoch, update, (tf.constant(0), first))
    return logs

  def policy(self) -> tf.Module:
    return Policy(self)


class Policy(tf.Module):
  """serving_default(observation) -> action (sampled), greedy_action, value."""

  def __init__(self, agent: PPOAgent):
    super().__init__(name="policy")
    self.normalizer, self.policy_net, self.value_net = agent.normalizer, agent.policy_net, agent.value_net
    self.torso = agent.torso
    normalize = agent._normalize  # pylint: disable=protected-access
    spec = agent.observation_spec

    @tf.function(input_signature=[tf.TensorSpec([None, *spec.shape], spec.dtype, name="observation")])
    def serve(observation):
      x = normalize(observation)
      return {
        "action": self.policy_net.to_env(self.policy_net.distribution(x).sample()),
        "greedy_action": self.policy_net.to_env(self.policy_net.mode(x)),
        "value": self.value_net(x),
      }

    self.serving_default = serve


def make_agent(
  config: ml_collections.ConfigDict, observation_space: gymnasium.Space, action_space: gymnasium.Space
) -> PPOAgent:
  """Builds the agent from a full run config (config.agent and the runtime fields)."""
  frames_per_batch = config.batch_size * config.unroll_length * envs.frame_skip(config.env)
  batches = -(-config.total_environment_frames // frames_per_batch)
  return PPOAgent(
    config.agent,
    observation_space,
    action_space,
    batch_size=config.batch_size,
    seed=config.seed,
    total_updates=batches * config.agent.num_epochs * (config.batch_size // config.agent.minibatch_size),
  )
