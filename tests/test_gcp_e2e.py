"""gcp.entrypoint end to end: a learner host and two actor hosts in network namespaces, TLS + token.

Each host runs `python -m gcp.entrypoint` with nothing but the engine's
environment to tell it its role: once as Vertex AI sets it (CLUSTER_SPEC), once
as a Kubernetes Indexed Job does (the learner Service's name, JOB_COMPLETION_INDEX).
CartPole trains to the learning bar, the run completes, every process exits 0.
Needs root and iproute2 (CI has both).
"""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from cluster import PORT, REPO, make_certs, namespace_hosts

pytestmark = pytest.mark.multihost  # left out by ./scripts/test.sh --quick

CARTPOLE = os.path.join(REPO, "configs", "cartpole_ppo.py")  # the main job: stops at a last-50 mean >= 475
HOSTS = ("learner", "actors-0", "actors-1")


@pytest.fixture
def hosts():
  with namespace_hosts(HOSTS) as h:
    yield h


def _vertex_env(host: str) -> dict:
  task = {"type": "workerpool0", "index": 0} if host == "learner" else {"type": "workerpool1", "index": int(host[-1])}
  spec = {"cluster": {"workerpool0": [f"learner:{PORT}"], "workerpool1": [f"actors-{i}:{PORT}" for i in range(2)]}}
  return {"CLUSTER_SPEC": json.dumps({**spec, "task": task, "job": {}})}


def _kubernetes_env(host: str) -> dict:
  env = {"SEED_LEARNER_SERVICE": "learner", "SEED_LEARNER_PORT": str(PORT), "SEED_ACTOR_HOSTS": "2"}
  if host != "learner":
    env["JOB_COMPLETION_INDEX"] = host[-1]
  return env


@pytest.mark.parametrize("engine", ["vertex", "kubernetes"])
def test_entrypoint_runs_a_secure_cluster_that_learns_and_ends_by_itself(hosts, tmp_path, engine):
  pki = make_certs(tmp_path / "pki", "learner")
  logdir = tmp_path / "run"
  procs, logs = {}, {}
  for host in HOSTS:
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
    env.update(_vertex_env(host) if engine == "vertex" else _kubernetes_env(host))
    logs[host] = tmp_path / f"{host}.log"
    with open(logs[host], "wb") as log:
      procs[host] = hosts.popen(
        host,
        [
          sys.executable,
          "-m",
          "gcp.entrypoint",
          f"--config={CARTPOLE}",
          "--actors_per_host=1",
          f"--logdir={logdir}",
          f"--tls_dir={pki}",
          "--config.log_interval=2",
        ],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
      )
  tails = lambda: "\n".join(f"--- {h}:\n{logs[h].read_text(errors='replace')[-2500:]}" for h in HOSTS)
  try:
    assert procs["learner"].wait(360) == 0, tails()
    for host in HOSTS[1:]:
      assert procs[host].wait(30) == 0, tails()
  except subprocess.TimeoutExpired:
    raise AssertionError(f"the run did not end by itself\n{tails()}") from None
  text = {h: logs[h].read_text(errors="replace") for h in HOSTS}
  assert f"{engine}: the learner, serving on port {PORT} for 2 actor hosts" in text["learner"], text["learner"][-3000:]
  for i, host in enumerate(HOSTS[1:]):
    assert f"actor host {i} of 2, 1 actors, learner at learner:{PORT}" in text[host], text[host][-3000:]
    assert f"actor {i}: the learner says the run is complete" in text[host], text[host][-3000:]
  assert pki.joinpath("token").read_text().strip() not in "".join(text.values()), "the token must never be logged"
  with open(logdir / "episodes.csv", encoding="utf-8") as f:
    returns = [float(row["return"]) for row in csv.DictReader(f)]
  assert len(returns) >= 50 and np.mean(returns[-50:]) >= 400, f"last 50 mean {np.mean(returns[-50:]):.1f}"
  config = json.loads((logdir / "config.json").read_text())
  assert config["num_actors"] == 2  # actor hosts x actors_per_host
