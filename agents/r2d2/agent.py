"""R2D2: recurrent Q-learning from prioritized replay of sequences.

S. Kapturowski, G. Ostrovski, J. Quan, R. Munos, W. Dabney, "Recurrent
Experience Replay in Distributed Reinforcement Learning", ICLR 2019; exploration
and replay follow Ape-X (D. Horgan et al., "Distributed Prioritized Experience
Replay", ICLR 2018, arXiv:1803.00933).

Data: the runtime's unrolls are the replay's sequences. Each holds
unroll_length + 1 steps and the LSTM state before its first step (the "stored
state" strategy of R2D2, section 3); consecutive sequences of an env overlap
by `sequence_overlap` steps (see agents/r2d2/config.py). `learn` moves new
sequences into a PrioritizedReplay through a ReplayFeeder (which holds
samples_per_insert sampled per inserted sequence both ways: training waits for
actors, a full unroll queue makes actors wait for training), samples a batch,
trains, and writes the new priorities back. With
agent.frame_stack set, stacked-frame observations are stored once per frame
(FrameStackCompressor). The replay lives in the learner's memory, its size is
logged as replay/bytes.

Priorities of new sequences: they enter with the largest priority seen so far
(PrioritizedReplay's default; Schaul et al. 2016, algorithm 1), so every
sequence is likely to be sampled soon after it arrives. Ape-X/R2D2 instead
compute initial priorities on the actors from their own Q-values; here the
actors hold no model and inference is shared, so that would cost a second
(target-network) pass at inference time for a small gain.

The loss on a sampled sequence: the first `burn_in` steps are unrolled (online
and target networks) only to produce the start state, with no gradient;
on the remaining steps, transition t -> t+1 gets the (value-rescaled) n-step
double-Q target of losses.n_step_double_q_targets, squared TD error, weighted
by the sequence's importance-sampling weight. Priorities mix max and mean |TD|
over the trained steps (eta = 0.9).

Step conventions (as agents/vtrace/agent.py; see seed.runtime.env_store.Step): step t
holds x_t, the reward and terminated flag of the transition *into* x_t, and the
action a_t taken at x_t. Transition t -> t+1 uses reward_{t+1} and discount
gamma * (1 - terminated_{t+1}), and is not real when x_{t+1} starts an episode
(the action at a final observation is never applied): it is masked out of the
loss and the priorities. Its discount is set to 0 so no value leaks across the
boundary, and its reward is set to the bootstrap value of x_t (the
double-Q value h^-1(Q_target(x_t, argmax Q_online(x_t)))): an n-step window
reaching x_t then ends with exactly gamma^k * Q(x_t), so a truncated episode
(time limit) bootstraps from its final observation while a terminated one
(discount 0 into x_t) still gets nothing from it.

Exploration (Ape-X): env i of the N = num_actors * env_batch_size envs acts
epsilon-greedily with epsilon_i = epsilon_base ** (1 + epsilon_alpha * i / (N - 1)).
"""

from __future__ import annotations

import gymnasium
import ml_collections
import numpy as np
import tensorflow as tf
import tf_keras as keras

from agents.initializers import Initializers
from agents.r2d2 import losses, networks
from seed import replicas
from seed.replay.buffers import PrioritizedReplay
from seed.replay.feeder import ReplayFeeder
from seed.runtime.agent import Agent, Source, serving_function
from seed.runtime.env_store import Step, Unroll
from seed.tf_utils import time_major


def ape_x_epsilons(num_envs: int, base: float = 0.4, alpha: float = 7.0) -> np.ndarray:
  """epsilon_i = base ** (1 + alpha * i / (N - 1)) for i = 0..N-1 (N = 1: base)."""
  i = np.arange(num_envs, dtype=np.float64)
  return (base ** (1.0 + alpha * i / max(num_envs - 1, 1))).astype(np.float32)


def default_overlap(unroll_length: int, burn_in: int) -> int:
  """burn_in + half the trained length: each transition is trained in about two sequences."""
  return burn_in + (unroll_length - burn_in) // 2


class R2D2Agent(Agent):
  """Recurrent DQN with burn-in, n-step double-Q targets, value rescaling and prioritized replay.

  Checkpointed (tf.Module attributes): online and target networks, optimizer,
  the gradient-step counter. The replay and its feeder are plain Python objects
  and are *not* checkpointed: a resumed run refills the replay from the actors
  (min_replay_size sequences) before it trains again.
  """

  def __init__(
    self,
    config: ml_collections.ConfigDict,
    observation_space: gymnasium.spaces.Box,
    action_space: gymnasium.spaces.Discrete,
    *,
    batch_size: int,
    num_envs: int,
    unroll_length: int,
    seed: int = 0,
  ):
    super().__init__(name="r2d2_agent")
    if not isinstance(action_space, gymnasium.spaces.Discrete):
      raise ValueError(f"R2D2 needs a discrete action space, got {action_space}")
    c = config
    if not 0 <= c.burn_in < unroll_length:
      raise ValueError(f"agent.burn_in must be in [0, unroll_length={unroll_length}), got {c.burn_in}")
    overlap = c.sequence_overlap if c.sequence_overlap is not None else default_overlap(unroll_length, c.burn_in)
    if not c.burn_in + 1 <= overlap <= unroll_length:
      raise ValueError(
        f"agent.sequence_overlap must be in [burn_in + 1 = {c.burn_in + 1}, unroll_length = "
        f"{unroll_length}] so that every transition is trained, got {overlap}"
      )
    if c.n_step < 1:
      raise ValueError(f"agent.n_step must be >= 1, got {c.n_step}")
    if c.target_update_period < 1:
      raise ValueError(f"agent.target_update_period must be >= 1, got {c.target_update_period}")
    if not batch_size <= c.replay_capacity or not c.min_replay_size <= c.replay_capacity:
      raise ValueError(
        f"agent.replay_capacity ({c.replay_capacity}) must hold at least batch_size ({batch_size}) "
        f"and agent.min_replay_size ({c.min_replay_size}) sequences"
      )
    self.config = config
    self.num_actions = int(action_space.n)
    self.unroll_length = unroll_length
    self.batch_size = batch_size
    self._overlap = int(overlap)
    self.observation_spec = tf.TensorSpec(observation_space.shape, tf.as_dtype(observation_space.dtype))
    # The target starts as a copy of the online network (_copy_to_target below).
    make_net = lambda: networks.RecurrentQNetwork(
      self.num_actions,
      c.torso,
      tuple(c.mlp_sizes),
      c.cnn_hidden,
      c.lstm_size,
      c.head_hidden,
      c.dueling,
      c.compute_dtype,
      Initializers(seed, "r2d2"),
    )
    self.online = make_net()
    self.target = make_net()
    self.optimizer = keras.optimizers.Adam(c.learning_rate, epsilon=c.adam_epsilon, global_clipnorm=c.max_grad_norm)
    self.updates = tf.Variable(0, dtype=tf.int64, trainable=False, name="updates")  # gradient steps
    self.target_updates = tf.Variable(0, dtype=tf.int64, trainable=False, name="target_updates")
    self.epsilons = ape_x_epsilons(num_envs, c.epsilon_base, c.epsilon_alpha)  # numpy: not checkpointed
    # Build variables now so checkpoints restore eagerly and inference can be traced.
    dummy = tf.zeros([1, *self.observation_spec.shape], self.observation_spec.dtype)
    for net in (self.online, self.target):
      net(dummy, tf.ones([1], tf.bool), net.initial_state(1))
    self._copy_to_target()
    self.optimizer.build(self.online.trainable_variables)
    self.strategy = tf.distribute.get_strategy()  # the learner's, when built in its scope
    # Not checkpointed: the replay (refilled on resume), its feeder and the sampling RNG.
    self.replay = PrioritizedReplay(c.replay_capacity, alpha=c.priority_exponent)
    self._rng = np.random.default_rng(seed)
    self._feeder: ReplayFeeder | None = None
    self._train_fn = None
    self._frames = None
    if c.get("frame_stack") is not None:
      self._frames = FrameStackCompressor(self.observation_spec.shape, int(c.frame_stack))

  # -- runtime interface ---------------------------------------------------------------------------

  @property
  def state_spec(self):
    return self.online.state_spec

  @property
  def output_spec(self):
    return {"action": tf.TensorSpec([], tf.int32)}

  @property
  def sequence_overlap(self) -> int:
    return self._overlap

  def initial_state(self, batch_size):
    return self.online.initial_state(batch_size)

  def step(self, observation, first, state, env_ids):
    q, state = self.online(observation, first, state)
    greedy = tf.argmax(q, -1, output_type=tf.int32)
    epsilon = tf.gather(tf.constant(self.epsilons), env_ids)
    n = tf.shape(greedy)[0]
    explore = tf.random.uniform([n]) < epsilon
    random_action = tf.random.uniform([n], 0, self.num_actions, dtype=tf.int32)
    return {"action": tf.where(explore, random_action, greedy)}, state

  def unroll_spec(self, batch_size=None) -> Unroll:
    """Spec of a batch of sequences as the runtime assembles them (batch-major)."""
    t = self.unroll_length + 1
    with_dims = lambda s, *d: tf.TensorSpec([*d, *s.shape], s.dtype)
    scalar = lambda dtype: tf.TensorSpec([batch_size, t], dtype)
    steps = Step(
      with_dims(self.observation_spec, batch_size, t),
      scalar(tf.float32),
      scalar(tf.bool),
      scalar(tf.bool),
      scalar(tf.bool),
      tf.nest.map_structure(lambda s: with_dims(s, batch_size, t), self.output_spec),
    )
    return Unroll(tf.nest.map_structure(lambda s: with_dims(s, batch_size), self.state_spec), steps)

  def learn(self, source: Source) -> dict[str, float]:
    c = self.config
    if self._feeder is None or self._feeder.source is not source:
      self._feeder = ReplayFeeder(
        source,
        self.replay,
        self._to_items,
        min_size=c.min_replay_size,
        samples_per_insert=c.samples_per_insert,
        batch_size=self.batch_size,
      )
    self._feeder.pull()
    batch, indices, weights = self.replay.sample(self.batch_size, self._rng, c.importance_sampling_exponent)
    batch = self._from_items(batch)
    logs = self.train(batch, weights)
    priorities = logs.pop("priorities").numpy()
    self.replay.update_priorities(indices, priorities)
    self._feeder.count_sampled(self.batch_size)
    logs.update(
      {
        "replay/bytes": self.replay.nbytes,
        "replay/size": len(self.replay),
        "replay/ratio": self._feeder.replay_ratio,
        "replay/max_priority": self.replay.max_priority,
      }
    )
    return logs

  def _to_items(self, unroll: Unroll) -> tuple[Unroll, int]:
    """Sequences as stored in the replay: observations as single frames when frame_stack is set."""
    if self._frames is not None:
      unroll = unroll._replace(
        steps=unroll.steps._replace(observation=self._frames.compress(unroll.steps.observation, unroll.steps.first))
      )
    return unroll, unroll.steps.first.shape[0]

  def _from_items(self, unroll: Unroll) -> Unroll:
    if self._frames is not None:
      unroll = unroll._replace(
        steps=unroll.steps._replace(observation=self._frames.decompress(unroll.steps.observation, unroll.steps.first))
      )
    return unroll

  # -- training ----------------------------------------------------------------------------------------

  def train(self, unroll: Unroll, weights) -> dict[str, tf.Tensor]:
    """One gradient step on a batch of sequences (numpy or tensors); logs include the new `priorities`."""
    if self._train_fn is None:
      self._train_fn = tf.function(self._train, input_signature=[self.unroll_spec(), tf.TensorSpec([None], tf.float32)])
    return self._train_fn(unroll, weights)

  def _train(self, unroll: Unroll, weights: tf.Tensor) -> dict[str, tf.Tensor]:
    # The gradient step on every replica's rows; counters and the target copy once, after it.
    logs = replicas.run(self.strategy, self._replica_train, (unroll, weights))
    self.updates.assign_add(1)
    if self.updates % self.config.target_update_period == 0:
      self._copy_to_target()
    logs["updates"] = self.updates.read_value()
    logs["target_updates"] = self.target_updates.read_value()
    return logs

  def _replica_train(self, batch: tuple[Unroll, tf.Tensor]) -> dict[str, tf.Tensor]:
    unroll, weights = batch
    variables = self.online.trainable_variables
    with tf.GradientTape() as tape:
      out = self.loss(unroll, weights)
    rows = tf.shape(weights)[0]  # the loss is a mean over sequences
    grads = replicas.mean_gradients(tape.gradient(out["loss/total"], variables), rows)
    self.optimizer.apply_gradients(zip(grads, variables), skip_gradients_aggregation=True)
    logs = {k: v for k, v in out.items() if not k.startswith("_") and k != "priorities"}
    logs["grad_norm"] = tf.linalg.global_norm(grads)
    return {**replicas.mean_logs(logs, rows), "priorities": out["priorities"]}

  def _copy_to_target(self):
    for t, o in zip(self.target.variables, self.online.variables):
      t.assign(o)
    self.target_updates.assign_add(1)

  def sequence_targets(self, unroll: Unroll):
    """Burn-in, then online and target Q on the trained part; pure function of the batch.

    Returns a dict of time-major tensors over the T = unroll_length - burn_in
    trained transitions: q_taken [T, B], targets [T, B], mask [T, B] (1 for
    real transitions), and q_online [T + 1, B, A].
    """
    c = self.config
    steps = tf.nest.map_structure(time_major, unroll.steps)
    b = c.burn_in
    online_state = target_state = unroll.initial_state
    if b > 0:
      _, online_state = self.online.unroll(steps.observation[:b], steps.first[:b], unroll.initial_state)
      _, target_state = self.target.unroll(steps.observation[:b], steps.first[:b], unroll.initial_state)
      online_state = tf.nest.map_structure(tf.stop_gradient, online_state)
    obs, first = steps.observation[b:], steps.first[b:]
    q_online, _ = self.online.unroll(obs, first, online_state)  # [T + 1, B, A]
    q_target, _ = self.target.unroll(obs, first, target_state)
    q_target = tf.stop_gradient(q_target)
    actions = steps.agent_output["action"][b:-1]
    q_taken = tf.gather(q_online[:-1], actions, axis=-1, batch_dims=2)  # [T, B]

    real = tf.logical_not(first[1:])
    rewards = steps.reward[b + 1 :]
    if c.reward_clip is not None:
      rewards = tf.clip_by_value(rewards, -c.reward_clip, c.reward_clip)
    discounts = c.discount * (1.0 - tf.cast(steps.terminated[b + 1 :], tf.float32))
    # Into a `first` step: discount 0 and, as reward, the bootstrap value of the final observation
    # (see the module docstring): n-step windows stop there with gamma^k * Q(x_final).
    greedy = tf.argmax(tf.stop_gradient(q_online), -1, output_type=tf.int32)
    bootstrap = tf.gather(q_target, greedy, axis=-1, batch_dims=2)
    if c.value_rescaling:
      bootstrap = losses.signed_parabolic(bootstrap, c.rescaling_epsilon)
    rewards = tf.where(real, rewards, bootstrap[:-1])
    discounts = tf.where(real, discounts, 0.0)
    targets = losses.n_step_double_q_targets(
      q_target,
      tf.stop_gradient(q_online),
      rewards,
      discounts,
      c.n_step,
      rescale=c.value_rescaling,
      eps=c.rescaling_epsilon,
    )
    return {"q_taken": q_taken, "targets": targets, "mask": tf.cast(real, tf.float32), "q_online": q_online}

  def loss(self, unroll: Unroll, weights: tf.Tensor) -> dict[str, tf.Tensor]:
    """Importance-weighted squared TD loss over the trained steps, and the new sequence priorities."""
    out = self.sequence_targets(unroll)
    mask = out["mask"]
    td = out["targets"] - out["q_taken"]
    per_sequence = tf.reduce_sum(0.5 * tf.square(td) * mask, 0) / tf.maximum(tf.reduce_sum(mask, 0), 1.0)
    total = tf.reduce_mean(tf.cast(weights, tf.float32) * per_sequence)
    priorities = losses.r2d2_priorities(td, self.config.priority_eta, mask)
    count = tf.maximum(tf.reduce_sum(mask), 1.0)
    return {
      "loss/total": total,
      "priorities": priorities,
      "td/abs_mean": tf.reduce_sum(tf.abs(td) * mask) / count,
      "q/mean": tf.reduce_sum(out["q_taken"] * mask) / count,
      "_td": td,
      "_mask": mask,
    }

  def policy(self) -> tf.Module:
    return Policy(self.online, self.observation_spec, self.config.eval_epsilon)


class FrameStackCompressor:
  """Stores stacked-frame observations [T, H, W, K * C] as their T + K - 1 distinct frames.

  Within an episode, x_t's stack holds frames t-K+1..t (oldest first), so a sequence
  only needs the older K - 1 frames of x_0 plus the newest frame of every step: a
  K-fold saving. At an episode start s the stack repeats the reset frame
  (gymnasium's FrameStackObservation with padding_type="reset", as envs/ builds
  Atari), so frame j of x_t is the frame at time max(t - (K - 1 - j), s) for the
  last start s <= t in the sequence. `compress` checks that the round trip is
  exact and raises otherwise (a different stacking, e.g. zero padding).
  """

  def __init__(self, observation_shape, frame_stack: int):
    if len(observation_shape) != 3 or frame_stack < 2 or observation_shape[-1] % frame_stack:
      raise ValueError(
        f"agent.frame_stack={frame_stack} needs observations [H, W, frame_stack * C], "
        f"got shape {tuple(observation_shape)}"
      )
    self.k = frame_stack
    self.c = observation_shape[-1] // frame_stack

  def _indices(self, first: np.ndarray) -> np.ndarray:
    """[B, T, K] indices into the T + K - 1 stored frames."""
    b, t = first.shape
    time = np.arange(t)
    last_start = np.maximum.accumulate(np.where(first, time, -self.k), axis=1)  # [B, T]
    source = time[:, None] - (self.k - 1 - np.arange(self.k))[None, :]  # [T, K]
    return np.maximum(source[None], last_start[:, :, None]) + self.k - 1

  def compress(self, observation: np.ndarray, first: np.ndarray) -> np.ndarray:
    b, t, h, w, _ = observation.shape
    frames = observation.reshape(b, t, h, w, self.k, self.c)
    out = np.concatenate([np.moveaxis(frames[:, 0, :, :, :-1], 3, 1), frames[:, :, :, :, -1]], axis=1)
    if not np.array_equal(self.decompress(out, first), observation):
      raise ValueError(
        "agent.frame_stack: these observations are not stacks of consecutive frames with "
        "reset padding; set agent.frame_stack = None"
      )
    return out  # [B, T + K - 1, H, W, C]

  def decompress(self, frames: np.ndarray, first: np.ndarray) -> np.ndarray:
    b, t = first.shape
    idx = self._indices(first)  # [B, T, K]
    stacked = frames[np.arange(b)[:, None, None], idx]  # [B, T, K, H, W, C]
    stacked = np.moveaxis(stacked, 2, 4)  # [B, T, H, W, K, C]
    return stacked.reshape(*stacked.shape[:4], self.k * self.c)


class Policy(tf.Module):
  """The exported greedy policy. Recurrent state goes in and out explicitly (zeros at an episode start).

  Outputs, with agents/vtrace's key conventions: `action` and `greedy_action` (both the argmax of Q),
  `q`, `logits` = log-probabilities of eval_epsilon-greedy (what seed.evaluate samples from
  without --greedy), and `state_0`, `state_1`.
  """

  def __init__(self, network: networks.RecurrentQNetwork, observation_spec: tf.TensorSpec, eval_epsilon: float):
    super().__init__(name="policy")
    self.network = network
    num_actions = network.num_actions

    def step(observation, first, state):
      q, new_state = network(observation, first, state)
      greedy = tf.argmax(q, -1, output_type=tf.int32)
      probs = eval_epsilon / num_actions + (1.0 - eval_epsilon) * tf.one_hot(greedy, num_actions)
      return {
        "action": greedy,
        "greedy_action": greedy,
        "q": q,
        "logits": tf.math.log(tf.maximum(probs, 1e-30)),
      }, new_state

    self.serving_default = serving_function(observation_spec, network.state_spec, step)


def make_agent(
  config: ml_collections.ConfigDict, observation_space: gymnasium.Space, action_space: gymnasium.Space
) -> R2D2Agent:
  """Builds the agent from a full run config (config.agent and the runtime fields)."""
  return R2D2Agent(
    config.agent,
    observation_space,
    action_space,
    batch_size=config.batch_size,
    num_envs=config.num_actors * config.env_batch_size,
    unroll_length=config.unroll_length,
    seed=config.seed,
  )
