"""A multi-host run on one machine: learner and actor hosts in their own network namespaces, over TLS + token.

Hosts: "learner" serves on 0.0.0.0 (beyond its loopback, so the learner insists
on TLS and client auth); "actors-a" and "actors-b" run one actor each and reach
it by name ("learner", from /etc/netns/<ns>/hosts); "intruder" has the CA but
not the token. Certificates come from scripts/tools/make_certs.sh, as a user makes
them. The run: train, get refused intruders, lose and regain an actor host,
SIGTERM and restart the learner, reach the learning bar, and every process
exits 0 by itself. Needs root and iproute2; without them it fails (CI has both).
"""

import csv
import os
import signal
import sys
import time

import numpy as np
import pytest
from cluster import PORT, REPO, Cluster, make_certs, namespace_hosts

pytestmark = pytest.mark.multihost  # left out by ./scripts/test.sh --quick

CARTPOLE = os.path.join(REPO, "configs", "cartpole_vtrace.py")
HOSTS = ("learner", "actors-a", "actors-b", "intruder")


@pytest.fixture
def hosts():
  with namespace_hosts(HOSTS) as h:
    yield h


@pytest.fixture
def pki(tmp_path):
  return make_certs(tmp_path / "pki", "learner")


def _intrude(hosts, pki) -> str:
  """From the intruder's host: a client without the token, and a plaintext one. Prints what each got."""
  code = f"""
import tensorflow as tf
from seed import grpc
for name, creds in [("no token", grpc.ChannelCredentials(ca_file={str(pki / "ca.crt")!r})), ("plaintext", None)]:
  try:
    grpc.Client("learner:{PORT}", credentials=creds, connect_timeout=20)
    print(name, "ACCEPTED")
  except tf.errors.OpError as e:
    print(name, type(e).__name__, e.message.splitlines()[0])
"""
  env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
  r = hosts.run("intruder", [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=90)
  return r.stdout + r.stderr[-2000:]


def test_tls_multihost_run_survives_faults_refuses_intruders_learns_and_ends_by_itself(hosts, pki, tmp_path):
  c = Cluster(hosts, tmp_path, pki, CARTPOLE)
  common = ["--config.log_interval=1", "--config.checkpoint_interval=5"]
  # No goal for the first learner (the config's 475 comes within ~200k frames): the faults come first.
  learner = c.learner(
    "learner0", *common, "--config.total_environment_frames=100000000", "--config.stop_mean_return=1e9"
  )
  actor_a = c.actor("actors-a", "actor-a0", 0)
  actor_b = c.actor("actors-b", "actor-b0", 1)
  c.wait_until(lambda: any(f > 0 for f in c.frames()), 180, "training over TLS", learner, actor_a, actor_b)

  # An intruder with the CA but no token is refused; one without TLS gets nowhere.
  out = _intrude(hosts, pki)
  assert "no token UnauthenticatedError" in out and "auth token" in out, out
  assert "plaintext UnavailableError" in out and "TLS" in out, out
  assert "ACCEPTED" not in out, out
  intruder_ip = hosts.address("intruder")
  c.wait_until(lambda: f"refused a call from ipv4:{intruder_ip}" in c.log("learner0"), 10, "the refusal in the log")
  assert pki.joinpath("token").read_text().strip() not in c.tails(), "the token must never be logged"
  seen = len(c.frames())
  c.wait_until(lambda: len(c.frames()) > seen + 2, 30, "training to go on after the intruder", learner)

  # An actor host dies (its whole process group) and comes back: it rejoins.
  os.killpg(actor_b.pid, signal.SIGKILL)
  actor_b.wait(10)
  actor_b = c.actor("actors-b", "actor-b1", 1)
  c.wait_until(lambda: "connected to the learner" in c.log("actor-b1"), 120, "actor host b to rejoin", actor_b)
  seen = len(c.frames())
  c.wait_until(lambda: len(c.frames()) > seen + 2, 30, "training with the new actor", learner, actor_a, actor_b)

  # The learner is SIGTERMed (it checkpoints) and restarted: it resumes, the same actors reconnect.
  learner.send_signal(signal.SIGTERM)
  assert learner.wait(90) == 0, c.tails()
  stopped_at = max(c.frames())
  learner = c.learner("learner1", *common, "--config.total_environment_frames=4000000", "--config.stop_mean_return=450")
  c.wait_until(lambda: "resumed from" in c.log("learner1"), 120, "the learner to resume", learner, actor_a, actor_b)
  c.wait_until(
    lambda: (
      c.log("actor-a0").count("connected to the learner") >= 2
      and c.log("actor-b1").count("connected to the learner") >= 2
    ),
    60,
    "both actors to reconnect",
    actor_a,
    actor_b,
  )
  assert min(c.frames()[-1:]) >= stopped_at, "the frame counter continues from the checkpoint"

  # The learning bar, then the run ends by itself: every process exits 0 within seconds of the learner.
  assert learner.wait(300) == 0, c.tails()
  done = time.monotonic()
  for p in (actor_a, actor_b):
    assert p.wait(20) == 0, c.tails()
  assert time.monotonic() - done < 15, "actors must exit within seconds of the run completing"
  for name in ("actor-a0", "actor-b1"):
    assert "the learner says the run is complete" in c.log(name), c.tails()
  with open(c.logdir / "episodes.csv", encoding="utf-8") as f:
    returns = [float(row["return"]) for row in csv.DictReader(f)]
  assert len(returns) >= 50 and np.mean(returns[-50:]) >= 400, f"last 50 mean {np.mean(returns[-50:]):.1f}"
