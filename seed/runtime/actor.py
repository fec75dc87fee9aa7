"""An actor: steps a batch of environments; the learner chooses every action.

Each step is one inference call carrying all `env_batch_size` envs. The actor
holds no model. Every env gets a random run id; when the learner is
unreachable (restart, network) the actor waits for it, then starts fresh
episodes with new run ids so the learner drops any partial unroll.

Episode ends use gymnasium's next-step autoreset: the step that ends an episode
reports its final observation with terminated/truncated; the next step returns
the reset observation (`first`), and the action chosen at the final
observation is ignored. A truncated episode therefore gives the learner the
final observation to bootstrap from.

How an actor ends: the learner answers "run complete" once it reached its
budget or goal, and the actor returns (exit 0) without retrying. A learner
that vanished (crash, restart) is waited for up to actor_reconnect_timeout,
then `LearnerUnreachable` is raised. Misconfigured security (a wrong token,
TLS on one side only, an untrusted certificate) fails within a second or two:
retrying would not help.

An actor process imports no TensorFlow: it calls the learner through the
numpy-only client of seed.rpc.client (tests/test_lean_actor.py checks).
"""

from __future__ import annotations

import threading
import time

import ml_collections
import numpy as np
from absl import logging

import envs
from seed.rpc import client as rpc_client
from seed.rpc import errors
from seed.rpc.credentials import ChannelCredentials
from seed.runtime.request import InferenceRequest

# A full training queue blocks inference (backpressure) for as long as a
# training step takes; a call slower than this means the learner is stuck.
_CALL_TIMEOUT = 60.0
# Failures that mean "the learner is away for now": wait and reconnect.
_TRANSIENT = (errors.Unavailable, errors.Cancelled, errors.DeadlineExceeded, errors.Aborted)


class LearnerUnreachable(RuntimeError):
  """The learner stayed unreachable for longer than actor_reconnect_timeout."""


class _RunComplete(Exception):
  pass


def _is_misconfigured(e: errors.RpcError) -> bool:
  """Errors no retry can fix: credentials or TLS settings that do not match the learner's."""
  if isinstance(e, (errors.Unauthenticated, errors.PermissionDenied)):
    return True
  return isinstance(e, errors.Unavailable) and "TLS" in e.message


def run(
  config: ml_collections.ConfigDict,
  task: int,
  server_address: str,
  stop: threading.Event | None = None,
  max_steps: int | None = None,
  credentials: ChannelCredentials | None = None,
) -> int:
  """Runs actor `task` until the learner says the run is complete, `stop` is set or `max_steps` steps.

  Returns the number of steps taken. Raises LearnerUnreachable when the
  learner is gone for longer than config.actor_reconnect_timeout.
  """
  if not 0 <= task < config.num_actors:
    raise ValueError(f"--task={task} is out of range for config.num_actors={config.num_actors}")
  stop = stop or threading.Event()
  n = config.env_batch_size
  env_ids = np.arange(task * n, (task + 1) * n, dtype=np.int32)
  rng = np.random.default_rng([config.seed, task])
  seed = config.seed * 100_003 + task * n
  vec = envs.make_vector(config.env, n)  # unseeded: the reset below seeds it (a second reset costs ~0.4 s on Atari)
  steps = 0
  try:
    client = None
    while not stop.is_set() and (max_steps is None or steps < max_steps):
      if client is None:
        try:
          client = _connect(server_address, config.actor_reconnect_timeout, stop, credentials)
        except _RunComplete:
          logging.info("actor %d: the learner says the run is complete; stopping after %d steps", task, steps)
          break
        if client is None:
          break
        logging.info("actor %d: connected to the learner at %s", task, server_address)
        run_ids = rng.integers(1, 2**62, size=n, dtype=np.int64)
        observation, _ = vec.reset(seed=seed)
        seed += 1
        reward = np.zeros(n, np.float32)
        terminated = np.zeros(n, bool)
        truncated = np.zeros(n, bool)
        first = np.ones(n, bool)
      try:
        req = InferenceRequest(
          env_id=env_ids,
          run_id=run_ids,
          reward=reward,
          terminated=terminated,
          truncated=truncated,
          first=first,
          observation=observation,
        )
        action = client.inference(*req, timeout=_CALL_TIMEOUT)
      except errors.OutOfRange as e:
        if not errors.is_run_complete(e):
          raise
        logging.info("actor %d: the learner says the run is complete; stopping after %d steps", task, steps)
        break
      except _TRANSIENT as e:
        logging.warning("actor %d: learner call failed (%s); reconnecting", task, type(e).__name__)
        client = None
        stop.wait(1.0)  # a learner that is going down answers fast: don't spin
        continue
      # Envs that ended last step are reset by this step (their action is ignored).
      first = terminated | truncated
      observation, reward, terminated, truncated, _ = vec.step(np.asarray(action))
      reward = reward.astype(np.float32)
      steps += 1
  finally:
    vec.close()
  return steps


def _connect(
  address: str, timeout: float, stop: threading.Event, credentials: ChannelCredentials | None
) -> rpc_client.Client | None:
  """A client of the learner; None if `stop` was set first. Raises _RunComplete, LearnerUnreachable."""
  deadline = time.monotonic() + timeout
  strikes = 0  # a TLS failure can be a server going down mid-handshake; three in a row is a setting
  while not stop.is_set():
    try:
      return rpc_client.Client(
        address, connect_timeout=min(5.0, max(0.1, deadline - time.monotonic())), credentials=credentials
      )
    except errors.OutOfRange as e:
      if errors.is_run_complete(e):
        raise _RunComplete() from e
      raise
    except _TRANSIENT as e:
      strikes = strikes + 1 if _is_misconfigured(e) else 0
      if strikes >= 3:
        raise
      if time.monotonic() > deadline:
        raise LearnerUnreachable(f"no learner at {address} for {timeout:.0f}s; giving up") from e
      stop.wait(0.5)  # the learner went away mid-connect: don't spin
  return None
