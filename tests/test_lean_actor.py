"""An actor process imports neither TensorFlow nor tf_keras: `python -m seed.train --mode=actor` runs
against a stand-in learner (a seed.grpc.Server here binding the learner's inference signature), steps
its envs, exits 0 when told the run is complete, and reports the modules it loaded."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading

import pytest
import tensorflow as tf

from seed import grpc
from seed.runtime import request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_HEAVY = ("tensorflow", "tf_keras", "keras")

# Runs seed.train's main as `python -m seed.train` would, then writes the heavy modules it loaded.
_WRAPPER = textwrap.dedent("""
  import atexit, runpy, sys
  out = sys.argv.pop(1)
  def report():
    with open(out, "w") as f:
      f.write("\\n".join(sorted(m for m in sys.modules if m.split(".")[0] in {heavy!r})))
  atexit.register(report)
  sys.argv[0] = "seed.train"
  runpy.run_module("seed.train", run_name="__main__", alter_sys=True)
""").format(heavy=_HEAVY)


def _stand_in_learner(address: str, batch: int, obs_spec: tf.TensorSpec, steps: int):
  """A server with the learner's inference signature: action = env_id % 2; says "run complete" after `steps`."""
  server = grpc.Server([address])
  calls = []
  lock = threading.Lock()

  def count():
    with lock:
      calls.append(1)
      if len(calls) == steps:
        threading.Thread(target=server.complete).start()  # not from a server thread running this call

  signature = [*request.specs(obs_spec, batch), tf.TensorSpec([batch], tf.bool, name="mask")]

  @tf.function(input_signature=signature)
  def inference(env_id, run_id, reward, terminated, truncated, first, observation, mask):
    del run_id, reward, terminated, truncated, first, observation
    tf.py_function(count, [], [])
    return tf.where(mask, env_id % 2, 0)

  server.bind(inference, pad_mask=True, flush_timeout=0.005)
  server.start()
  return server, calls


@pytest.mark.parametrize("config", ["cartpole_vtrace", "atari_vtrace"])
def test_actor_process_imports_no_tensorflow(tmp_path, sock_dir, config):
  atari = config.startswith("atari")
  obs_spec = tf.TensorSpec([84, 84, 4], tf.uint8) if atari else tf.TensorSpec([4], tf.float32)
  # A short socket path: a second server in one process loses its socket at a path of 79+ characters
  # (pytest's tmp_path reaches that once its numbered base dir passes 99); see the closing note.
  address = f"unix:{sock_dir}/learner.sock"
  server, calls = _stand_in_learner(address, 2, obs_spec, steps=30)
  modules = tmp_path / "modules.txt"
  try:
    cmd = [
      sys.executable,
      "-c",
      _WRAPPER,
      str(modules),
      f"--config={REPO}/configs/{config}.py",
      "--mode=actor",
      "--task=0",
      f"--server_address={address}",
      "--config.num_actors=1",
      "--config.env_batch_size=2",
      "--config.inference_batch_size=2",
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
  finally:
    server.shutdown()
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "the learner says the run is complete" in proc.stderr
  assert len(calls) >= 30
  loaded = modules.read_text().split()
  assert loaded == [], f"the actor imported {loaded[:10]}"


def test_actor_host_modules_import_no_tensorflow():
  """The cloud entry point of an actor host and what it and an actor import: no TensorFlow either."""
  code = (
    "import sys\nimport gcp.entrypoint, seed.runtime.launcher, seed.runtime.actor, seed.rpc.client, envs\n"
    f"print(sorted(m for m in sys.modules if m.split('.')[0] in {_HEAVY!r}))\n"
  )
  proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert proc.stdout.strip() == "[]"
