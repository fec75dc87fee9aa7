"""A run directory anywhere tf.io.gfile reaches (gs:// on the cloud): tested on TensorFlow's ram:// filesystem.

The learner runs in a process of its own with --logdir ram://run (one actor
process beside it) and writes config, metrics, episodes, TensorBoard events,
checkpoints and exports there; a second learner.run in the same process resumes
from the checkpoint. A plain open() or os.makedirs() of a ram:// path would make a
local "ram:" directory (or fail): the test checks there is none.
"""

import os

import pytest
from helpers import run_python

pytestmark = pytest.mark.learning  # left out by ./scripts/test.sh --quick

_SCRIPT = r"""
import json, os, shutil, subprocess, sys, tempfile
import tensorflow as tf
from configs import cartpole_vtrace
from agents import registry
from seed import run_files
from seed.runtime import learner

sock_dir = tempfile.mkdtemp(prefix="seedt-")
address = "unix:" + os.path.join(sock_dir, "l.sock")
config = cartpole_vtrace.get_config()
config.num_actors, config.log_interval, config.checkpoint_interval = 1, 1.0, 2.0
g = tf.io.gfile

def run(frames):
  config.total_environment_frames = frames
  actor = subprocess.Popen([sys.executable, "-m", "seed.train", "--config=" + cartpole_vtrace.__file__, "--mode=actor",
                            "--task=0", "--server_address=" + address, "--config.num_actors=1"])
  try:
    learner.run(config, "ram://run", address, agent=registry.package(config.agent_name))
    assert actor.wait(60) == 0
  finally:
    actor.kill()

run(20000)
first = sorted(f.rstrip("/") for f in g.listdir("ram://run"))
steps = tf.train.load_variable("ram://run/checkpoints", "frames/.ATTRIBUTES/VARIABLE_VALUE")
exports = g.listdir("ram://run/export")
metrics = run_files.read_metrics("ram://run")
episodes = g.GFile("ram://run/episodes.csv").read().splitlines()
model = tf.saved_model.load("ram://run/export/" + sorted((e.rstrip("/") for e in exports), key=int)[-1])
served = model.signatures["serving_default"](observation=tf.zeros([2, 4]))
run(40000)
shutil.rmtree(sock_dir)
resumed = [row["frames"] for row in run_files.read_metrics("ram://run")]
print(json.dumps({"files": first, "frames": int(steps), "exports": exports, "metrics": len(metrics),
                  "episodes": episodes[:1] + [str(len(episodes))], "action": served["action"].shape.as_list(),
                  "tb": g.listdir("ram://run/tb"), "resumed": resumed[len(metrics):][:1],
                  "config": json.loads(g.GFile("ram://run/config.json").read())["num_actors"]}))
"""


def test_run_directory_through_gfile_checkpoints_resumes_exports_and_logs(tmp_path):
  r = run_python(_SCRIPT, timeout=240, cwd=tmp_path)
  assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
  import json

  out = json.loads(r.stdout.strip().splitlines()[-1])
  assert {"checkpoints", "config.json", "episodes.csv", "export", "metrics.jsonl", "tb"} <= set(out["files"]), out
  assert out["frames"] >= 20000 and out["exports"] and out["metrics"] >= 1
  assert out["episodes"][0] == "time,frames,return,length" and int(out["episodes"][1]) > 10
  assert out["action"] == [2] and out["tb"] and out["config"] == 1
  assert out["resumed"] and out["resumed"][0] >= out["frames"], "the second run continues from the checkpoint"
  assert sorted(os.listdir(tmp_path)) == [], f"nothing may be written beside the ram:// run: {os.listdir(tmp_path)}"
