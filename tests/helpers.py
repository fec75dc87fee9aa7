"""Small helpers for tests that run work in threads or subprocesses."""

import os
import signal
import subprocess
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TLS_TOKEN = "tok-3b1f9c0e5d7a"  # the token in conftest's tls_files


def run_parallel(fn, args_list, timeout=60):
  """Runs fn(*args) in one daemon thread per args; returns results or exceptions.

  Fails (instead of hanging) if any call is still running after `timeout`.
  """
  results = [None] * len(args_list)

  def target(i, args):
    try:
      results[i] = fn(*args)
    except BaseException as e:  # pylint: disable=broad-except
      results[i] = e

  threads = [threading.Thread(target=target, args=(i, a), daemon=True) for i, a in enumerate(args_list)]
  for t in threads:
    t.start()
  deadline = time.monotonic() + timeout
  for t in threads:
    t.join(max(0.0, deadline - time.monotonic()))
  hanging = sum(t.is_alive() for t in threads)
  assert not hanging, f"{hanging} calls still hanging after {timeout}s"
  return results


def run_python(code: str, timeout=120, env=None, cwd=REPO) -> subprocess.CompletedProcess:
  """Runs code in a fresh interpreter (own import order) in a process group of its own; returns the result.

  On timeout every process of the group dumps its Python stacks (PYTHONFAULTHANDLER + SIGABRT),
  the group is killed, and the test fails with the stacks, instead of hanging until pytest's own
  timeout (a child left running would hold the output pipes open).
  """
  full_env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO, PYTHONFAULTHANDLER="1")
  full_env.update(env or {})
  with subprocess.Popen(
    [sys.executable, "-c", code],
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
    env=full_env,
    cwd=cwd,
    start_new_session=True,
  ) as proc:
    try:
      out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
      signal_group(proc, signal.SIGABRT)
      time.sleep(2.0)  # the fault handlers write the stacks
      signal_group(proc, signal.SIGKILL)
      out, err = proc.communicate(timeout=30)
      stacks = f"{out[-3000:]}\n{err[-12000:]}"
      raise AssertionError(f"still running after {timeout}s; its stacks and output:\n{stacks}") from None
    except BaseException:
      signal_group(proc, signal.SIGKILL)
      raise
  return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def run_pythons(codes: list[str], timeout=120) -> list[subprocess.CompletedProcess]:
  """run_python for each code, all at once (fresh interpreters start in parallel: half the wall time on 2 cores)."""
  results = run_parallel(run_python, [(code, timeout) for code in codes], timeout + 30)
  for r in results:
    if isinstance(r, BaseException):
      raise r
  return results


def signal_group(p: subprocess.Popen, sig: int) -> None:
  """Signals p's process group, only while p is unreaped (else its PID may belong to someone else by now)."""
  if p.returncode is not None:
    return
  try:
    os.killpg(p.pid, sig)
  except (ProcessLookupError, PermissionError):
    pass


def catch(fn, *args, **kwargs):
  """fn(*args, **kwargs), or the exception it raised."""
  try:
    return fn(*args, **kwargs)
  except Exception as e:  # pylint: disable=broad-except
    return e


def make_policy_run(logdir: str, steps, lstm_size: int = 0, env=None, seed: int = 0) -> str:
  """A tiny V-trace CartPole run directory: config.json, and a checkpoint plus an export at each
  train step in `steps`, each with fresh random weights (so actions depend on the observation)."""
  import numpy as np  # pylint: disable=g-import-not-at-top

  from agents import registry  # pylint: disable=g-import-not-at-top
  from configs import cartpole_vtrace  # pylint: disable=g-import-not-at-top
  from seed.runtime import learner as learner_lib  # pylint: disable=g-import-not-at-top

  c = cartpole_vtrace.get_config()
  if env is not None:
    c.env = env
  c.num_actors, c.env_batch_size, c.inference_batch_size = 1, 1, 1
  c.unroll_length, c.batch_size, c.unroll_queue_capacity = 2, 1, 1
  c.agent.mlp_sizes = (16,)
  c.agent.lstm_size = lstm_size
  os.makedirs(logdir)
  with open(os.path.join(logdir, "config.json"), "w", encoding="utf-8") as f:
    f.write(c.to_json_best_effort(indent=2))
  learner = learner_lib.Learner(c, logdir, registry.package(c.agent_name))
  rng = np.random.default_rng(seed)
  for step in steps:
    for v in learner.agent.network.trainable_variables:
      v.assign(rng.normal(scale=0.5, size=v.shape).astype(v.dtype.as_numpy_dtype))
    learner.train_steps.assign(step)
    learner.save()
  return logdir


def spec(shape, dtype=None, name=None):
  """A tf.TensorSpec, int32 by default (the tensor-RPC tests' usual element)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top  (most users of this module need no TF)

  return tf.TensorSpec(shape, dtype or tf.int32, name)


def call_many(method, values, timeout=60):
  """Calls method(v) for every v concurrently; returns numpy results."""
  out = run_parallel(lambda v: method(v), [(v,) for v in values], timeout=timeout)
  for o in out:
    if isinstance(o, BaseException):
      raise o
  return [o.numpy() for o in out]


def cc_cases_pass(build, cases) -> None:
  """Builds a C++ unit test with `build` (a build_op function, cached: a second call gives the same path),
  runs it, and checks that it exits 0 and printed "PASS <case>" for every one of `cases`."""
  binary = build()
  assert build() == binary  # cached
  proc = subprocess.run([str(binary)], capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
  passed = {line.split()[1] for line in proc.stdout.splitlines() if line.startswith("PASS ")}
  assert passed >= set(cases), proc.stdout
