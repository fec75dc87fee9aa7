"""The learner: central batched inference on the tensor-RPC server, and training.

Data flow: actors call the batched `inference` method with one step of every
env they run; inference (pure TF, run by the server's C++ threads) updates the
per-env state in `EnvStore`, runs the agent's policy and pushes completed
unrolls onto a bounded queue. The training loop below dequeues batches of
unrolls and calls the agent's `learn`. It is generic: the agent plugs in.

Threads: training runs in a worker thread; the main thread logs progress and
handles signals, so Ctrl-C/SIGTERM stop the run cleanly (final checkpoint and
export) even while training waits for data.
"""

from __future__ import annotations

import collections
import functools
import json
import os
import signal
import threading
import time
from typing import Any

import ml_collections
import numpy as np
import tensorflow as tf
from absl import logging

import envs
from seed import grpc, tf_utils
from seed.runtime import devices, processes, request
from seed.runtime.agent_package import AgentPackage
from seed.runtime.env_store import EnvStore, Step, Unroll, step_specs

RECENT_EPISODES = 50  # "mean return" = over the last 50 finished episodes
# After the run completes, the server answers "run complete" until no actor
# has called for _TOLD_QUIET seconds (all of them heard it), at most _TOLD_MAX.
_EPISODE_POLL = 0.25  # seconds between reads of finished episodes (stop_mean_return's check)
_TOLD_QUIET = 2.0
_TOLD_MAX = 15.0


class EpisodeLog:
  """Reads finished episodes out of the store's per-env rings, in finishing order."""

  def __init__(self, store: EnvStore, path: str):
    self._store = store
    self._seen = np.zeros(store.num_envs, np.int64)
    self.recent = collections.deque(maxlen=RECENT_EPISODES)
    self.total = 0
    new = not tf.io.gfile.exists(path)
    self._file = tf.io.gfile.GFile(path, "a")
    if new:
      self._file.write("time,frames,return,length\n")

  def poll(self, frames: int) -> list[tuple[float, float, int]]:
    done = self._store.episodes_done.numpy()
    if not np.any(done > self._seen):
      return []
    rets, lens, times = (v.numpy() for v in (self._store.ring_return, self._store.ring_length, self._store.ring_time))
    ring = self._store.episode_ring
    new = []
    for env in np.nonzero(done > self._seen)[0]:
      for i in range(max(self._seen[env], done[env] - ring), done[env]):
        new.append((float(times[env, i % ring]), float(rets[env, i % ring]), int(lens[env, i % ring])))
    self._seen = done
    new.sort()
    for t, r, n in new:
      self._file.write(f"{t:.3f},{frames},{r:.6g},{n}\n")
      self.recent.append(r)
    self._file.flush()
    self.total += len(new)
    return new

  def mean_return(self) -> float:
    return float(np.mean(self.recent)) if self.recent else float("nan")

  def close(self) -> None:
    self._file.close()


class UnrollSource:
  """What an agent's `learn` pulls completed unrolls from; counts the frames it hands out."""

  def __init__(self, store: EnvStore, frames: tf.Variable, frames_per_unroll: int):
    self._store = store
    self._frames = frames
    self._frames_per_unroll = frames_per_unroll
    self.spec = store.unroll_spec

  def size(self) -> tf.Tensor:
    """Unrolls ready now."""
    return self._store.queue.size()

  def dequeue(self, n) -> Unroll:
    """`n` unrolls (batch-major); blocks until they are there. Usable inside tf.function."""
    unroll = self._store.dequeue(n)
    self._frames.assign_add(tf.cast(n, tf.int64) * self._frames_per_unroll)
    return unroll


class Learner:
  """Builds the agent, store, inference methods and training step for a config.

  The agent (networks, optimizers) lives in the training strategy's scope, its
  variables mirrored on the training devices; the store, counters and replay
  stay on the host CPU. There is one inference function per inference device
  (`self.inference`, a list the server runs round robin), each running the
  agent's step on its device and reading the policy's current variables.
  `strategy_factory` makes the strategy from the device plan
  (devices.make_strategy; tests and benchmarks pass their own).
  """

  def __init__(
    self,
    config: ml_collections.ConfigDict,
    logdir: str,
    agent: AgentPackage,
    strategy_factory: devices.StrategyFactory = devices.make_strategy,
  ):
    self.config = config
    self.logdir = logdir
    devices.configure_logical_cpus(config)  # no-op when run() did it (or the process is split so already)
    self.devices = devices.check(config, agent)
    self.strategy = strategy_factory(self.devices)
    tf.random.set_seed(config.seed)
    observation_space, action_space = envs.env_spaces(config.env, seed=config.seed)
    with self.strategy.scope():
      self.agent = agent.make_agent(config, observation_space, action_space)
    self.num_envs = config.num_actors * config.env_batch_size
    obs_spec = tf.TensorSpec(observation_space.shape, tf.as_dtype(observation_space.dtype))
    overlap = self.agent.sequence_overlap
    with tf.device(devices.HOST):
      self.store = EnvStore(
        self.num_envs,
        config.unroll_length,
        step_specs(obs_spec, self.agent.output_spec),
        self.agent.state_spec,
        self.agent.initial_state,
        config.unroll_queue_capacity,
        overlap=overlap,
      )
      self.train_steps = tf.Variable(0, dtype=tf.int64, trainable=False, name="train_steps")
      self.frames_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="frames")
    self.source = UnrollSource(
      self.store, self.frames_var, (config.unroll_length + 1 - overlap) * envs.frame_skip(config.env)
    )
    self.checkpoint = tf.train.Checkpoint(agent=self.agent, train_steps=self.train_steps, frames=self.frames_var)
    self.manager = tf.train.CheckpointManager(
      self.checkpoint, os.path.join(logdir, "checkpoints"), max_to_keep=config.checkpoints_to_keep
    )
    n = config.inference_batch_size
    # The server appends the padding mask to the actors' request (bind(..., pad_mask=True)).
    signature = [*request.specs(obs_spec, n), tf.TensorSpec([n], tf.bool, name="mask")]
    self.inference = []
    for i, device in enumerate(self.devices.inference):
      fn = tf.function(functools.partial(self._inference, device), input_signature=signature)
      if i:  # a graph's random ops are seeded from the global seed when traced: one stream per device
        tf.random.set_seed(config.seed + i)
        fn.get_concrete_function()
        tf.random.set_seed(config.seed)
      self.inference.append(fn)

  def _inference(self, device: str, *args):
    """One batched step for up to inference_batch_size envs (padding masked out); the policy runs on `device`."""
    *fields, mask = args
    with tf.device(devices.HOST):
      rows = tf.where(mask)[:, 0]
      req = request.InferenceRequest(*(tf.gather(x, rows) for x in fields))
      state = self.store.begin(req.env_id, req.run_id)
    with tf.device(device):
      output, new_state = self.agent.step(req.observation, req.first, state, req.env_id)
    with tf.device(devices.HOST):
      step = Step(req.observation, req.reward, req.terminated, req.truncated, req.first, output)
      self.store.record(req.env_id, step, state, new_state)
      action = output["action"]
      return tf.scatter_nd(
        rows[:, None], action, tf.concat([tf.shape(mask, tf.int64), tf.shape(action, tf.int64)[1:]], 0)
      )

  def train_step(self) -> dict[str, Any]:
    logs = self.agent.learn(self.source)
    self.train_steps.assign_add(1)
    return logs

  @property
  def frames(self) -> int:
    return int(self.frames_var.numpy())

  def save(self) -> str:
    """Checkpoint plus a SavedModel of the policy in <logdir>/export/<train step>."""
    path = self.manager.save(checkpoint_number=self.train_steps)
    export = os.path.join(self.logdir, "export", str(int(self.train_steps.numpy())))
    if not tf.io.gfile.exists(export):
      policy = self.agent.policy()
      signatures = {"serving_default": policy.serving_default}
      if "://" in export:  # an object store (gs://): no directory rename; saved_model.pb is written last
        tf.saved_model.save(policy, export, signatures=signatures)
      else:
        tf.saved_model.save(policy, export + ".tmp", signatures=signatures)
        os.replace(export + ".tmp", export)  # servers watching export/ never see a partial model
    return path


def _format_logs(logs: dict[str, float]) -> str:
  """Losses and entropy, then the torso's health: dead units per layer and V's spread across states."""
  keys = [k for k in logs if k.startswith("loss/")] + [k for k in ("entropy",) if k in logs]
  text = " ".join(f"{k.split('/')[-1]} {logs[k]:.4g}" for k in keys)
  dead = [f"{k.split('/')[-1]} {100 * logs[k]:.0f}%" for k in logs if k.startswith("dead/")]
  if dead:
    text += " | dead " + " ".join(dead)
  if "spread/value" in logs:
    text += f" | V spread {logs['spread/value']:.3g}"
  return text


def _tell_actors_run_complete(server: grpc.Server, since: float) -> None:
  """Keeps answering "run complete" until actors stop calling (they exit on hearing it)."""
  last_count, last_change = None, since
  while time.monotonic() - since < _TOLD_MAX:
    count = server.stats()["__server__"]["completed_calls"]
    if count != last_count:
      last_count, last_change = count, time.monotonic()
    elif time.monotonic() - last_change >= _TOLD_QUIET:
      return
    time.sleep(0.1)


class Progress:
  """What a person watching a run sees: every log_interval (and once at stop) a progress line,
  a metrics.jsonl row and TensorBoard scalars, from the learner's counters and the server's stats."""

  def __init__(self, learner: Learner, server: grpc.Server, episodes: EpisodeLog, logs: dict[str, float]):
    self._learner, self._server, self._episodes, self._logs = learner, server, episodes, logs
    self._writer = tf.summary.create_file_writer(os.path.join(learner.logdir, "tb"))
    self._metrics = os.path.join(learner.logdir, "metrics.jsonl")
    self._start = self._last_time = time.monotonic()
    self._start_frames = self._last_frames = learner.frames
    self._last_stats: dict[str, Any] = {}

  def report(self) -> None:
    learner, config, episodes = self._learner, self._learner.config, self._episodes
    now, frames = time.monotonic(), learner.frames
    episodes.poll(frames)
    fps = (frames - self._last_frames) / max(now - self._last_time, 1e-9)
    self._last_frames, self._last_time = frames, now
    stats = self._server.stats().get(request.METHOD, {})
    batches = stats.get("batches", 0) - self._last_stats.get("batches", 0)
    slots = stats.get("slots", 0) - self._last_stats.get("slots", 0)
    fill = slots / (batches * config.inference_batch_size) if batches else float("nan")
    # Batches each inference device ran in this interval (the server's round robin).
    runs = np.subtract(stats.get("function_runs", []), self._last_stats.get("function_runs", 0))
    self._last_stats = stats
    scalars = {
      "frames_per_second": fps,
      "episodes": episodes.total,
      "queue_size": float(learner.store.queue.size()),
      "inference_batch_fill": fill,
      **self._logs,
    }
    spread = ""
    if len(runs) > 1:
      scalars.update(
        {f"inference_batches/{d.split('device:')[-1]}": int(r) for d, r in zip(learner.devices.inference, runs)}
      )
      spread = " | inference batches/device " + "/".join(str(int(r)) for r in runs)
    if episodes.recent:
      scalars["mean_episode_return"] = episodes.mean_return()
    with self._writer.as_default(step=frames):
      for k, v in scalars.items():
        tf.summary.scalar(k, v)
    self._writer.flush()
    with tf.io.gfile.GFile(self._metrics, "a") as f:
      f.write(json.dumps({"time": time.time(), "frames": frames, **scalars}) + "\n")
    budget = config.total_environment_frames
    rate = (frames - self._start_frames) / max(now - self._start, 1e-9)
    eta = time.strftime("%H:%M:%S", time.gmtime((budget - frames) / rate)) if 0 < rate and frames < budget else "-"
    logging.info(
      "frames %s (%.0f%% of %s, ETA %s) | %s f/s | return %.1f (%d ep) | %s | queue %d%s | %s elapsed",
      f"{frames:,}",
      min(100.0, 100.0 * frames / budget),
      f"{budget:,}",
      eta,
      f"{fps:,.0f}",
      episodes.mean_return(),
      episodes.total,
      _format_logs(self._logs),
      scalars["queue_size"],
      spread,
      time.strftime("%H:%M:%S", time.gmtime(now - self._start)),
    )

  def close(self) -> None:
    self._writer.close()


def run(
  config: ml_collections.ConfigDict,
  logdir: str,
  server_address: str,
  *,
  agent: AgentPackage,
  credentials: grpc.ServerCredentials | None = None,
) -> None:
  """Serves inference at server_address and trains `agent` until total_environment_frames or stop_mean_return.

  A run that reaches either tells its actors ("run complete") before the server
  goes away; one stopped by SIGTERM/Ctrl-C does not, so actors wait for a restart.
  """
  tf_utils.quiet_tensorflow_logs()  # TF's own INFO lines (saver, SavedModel builder) would flood the run's log
  # Both must precede the first TF op of the process (TF fixes its devices and thread pools then).
  devices.configure_logical_cpus(config)
  if config.learner_intra_op_threads:
    tf.config.threading.set_intra_op_parallelism_threads(config.learner_intra_op_threads)
  # Every file of the run goes through tf.io.gfile: --logdir may be gs://bucket/run.
  tf.io.gfile.makedirs(logdir)
  config_path = os.path.join(logdir, "config.json")
  if tf.io.gfile.exists(config_path):  # a resumed run's config replaces it (ram:// "w" does not truncate)
    tf.io.gfile.remove(config_path)
  with tf.io.gfile.GFile(config_path, "w") as f:
    f.write(config.to_json_best_effort(indent=2))
  learner = Learner(config, logdir, agent)
  if learner.manager.latest_checkpoint:
    learner.checkpoint.restore(learner.manager.latest_checkpoint).assert_existing_objects_matched()
    logging.info("resumed from %s at %d frames", learner.manager.latest_checkpoint, learner.frames)
  server = grpc.Server([server_address], num_threads=config.server_threads or None, credentials=credentials)
  server.bind(learner.inference, name=request.METHOD, flush_timeout=config.inference_flush_timeout, pad_mask=True)
  server.start()
  logging.info("learner serving inference at %s for %d envs", server_address, learner.num_envs)
  logging.info(
    "training on %s (%s), inference on %s%s",
    ", ".join(learner.devices.training),
    type(learner.strategy).__name__,
    ", ".join(learner.devices.inference),
    " (shared)" if learner.devices.shared and len(learner.devices.training) > 1 else "",
  )

  stop = threading.Event()
  completed = threading.Event()  # reached the budget or the goal (not stopped from outside)
  errors: list[BaseException] = []
  last_logs: dict[str, float] = {}
  episodes = EpisodeLog(learner.store, os.path.join(logdir, "episodes.csv"))

  # Set by the main thread, which alone reads finished episodes (the training thread only waits on it).
  goal_reached: list[float] = []  # the mean return that met config.stop_mean_return

  def poll_episodes() -> None:
    episodes.poll(learner.frames)
    goal = config.stop_mean_return
    if not goal_reached and goal is not None and len(episodes.recent) == RECENT_EPISODES:
      mean = episodes.mean_return()
      if mean >= goal:
        goal_reached.append(mean)

  def train_loop() -> None:
    last_save = time.monotonic()
    try:
      while not stop.is_set() and learner.frames < config.total_environment_frames and not goal_reached:
        logs = learner.train_step()
        last_logs.update({k: float(v) for k, v in logs.items()})
        if time.monotonic() - last_save > config.checkpoint_interval:
          learner.save()
          last_save = time.monotonic()
      if not stop.is_set():
        completed.set()
        logging.info(
          "%s at %s frames, %.1f s after the Python process started (imports and tracing included)",
          f"goal reached: mean return of the last {RECENT_EPISODES} episodes {goal_reached[0]:.1f} "
          f">= {config.stop_mean_return}"
          if goal_reached
          else "frame budget reached",
          f"{learner.frames:,}",
          processes.seconds_since_run_start(),
        )
    except (tf.errors.OutOfRangeError, tf.errors.CancelledError):
      if not stop.is_set():
        raise
    except BaseException as e:  # pylint: disable=broad-except
      errors.append(e)
    finally:
      stop.set()

  previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
  trainer = threading.Thread(target=train_loop, name="train")
  progress = Progress(learner, server, episodes, last_logs)
  trainer.start()
  try:
    next_report = time.monotonic() + config.log_interval
    while not stop.wait(min(_EPISODE_POLL, config.log_interval)):
      poll_episodes()  # the goal is seen within _EPISODE_POLL of the episode that met it
      if time.monotonic() >= next_report:
        progress.report()
        next_report += config.log_interval
  finally:
    stop.set()
    if completed.is_set():
      server.complete()  # from now on actors hear "run complete" and exit
      completed_at = time.monotonic()
    learner.store.close()  # wakes training and inference blocked on the queue
    trainer.join()
    progress.report()  # the final line, metrics and TensorBoard point, however short the run
    progress.close()
    episodes.close()
    learner.save()
    if completed.is_set():
      _tell_actors_run_complete(server, completed_at)
    server.shutdown()
    for s, h in previous.items():
      signal.signal(s, h)
    logging.info(
      "learner stopped at %d frames, %d episodes, mean return %.1f; checkpoint and export in %s",
      learner.frames,
      episodes.total,
      episodes.mean_return(),
      logdir,
    )
  if errors:
    raise errors[0]
