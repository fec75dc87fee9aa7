"""gcp/: the role a replica reads from its engine, the Vertex AI job and the Kubernetes manifests (all offline)."""

import json
import os
import subprocess
import sys

import kubernetes_validate
import pytest
import yaml
from helpers import REPO

from gcp import cluster

CARTPOLE = os.path.join(REPO, "configs", "cartpole_vtrace.py")
ENV = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")


def _spec(task: dict, **cluster_pools) -> dict:
  return {"CLUSTER_SPEC": json.dumps({"cluster": cluster_pools, "task": task, "job": {}})}


VERTEX = {"workerpool0": ["host-0:2222"], "workerpool1": ["host-1:2222", "host-2:2222", "host-3:2222"]}


@pytest.mark.parametrize(
  "env,role",
  [
    (_spec({"type": "workerpool0", "index": 0}, **VERTEX), cluster.Role(True, "host-0:2222", 3, 0, "vertex")),
    (_spec({"type": "workerpool1", "index": 2}, **VERTEX), cluster.Role(False, "host-0:2222", 3, 2, "vertex")),
    (
      {"TF_CONFIG": json.dumps({"cluster": {"chief": ["c:2222"], "worker": ["w0:2222"]}, "task": {"type": "chief"}})},
      cluster.Role(True, "c:2222", 1, 0, "tf_config"),
    ),
    (
      {
        "TF_CONFIG": json.dumps(
          {"cluster": {"master": ["m"], "worker": ["a", "b"]}, "task": {"type": "worker", "index": 1}}
        )
      },
      cluster.Role(False, "m:8686", 2, 1, "tf_config"),
    ),
    (
      {"SEED_LEARNER_SERVICE": "pong-learner", "SEED_ACTOR_HOSTS": "4"},
      cluster.Role(True, "pong-learner:8686", 4, 0, "kubernetes"),
    ),
    (
      {
        "SEED_LEARNER_SERVICE": "pong-learner",
        "SEED_LEARNER_PORT": "9000",
        "SEED_ACTOR_HOSTS": "4",
        "JOB_COMPLETION_INDEX": "3",
      },
      cluster.Role(False, "pong-learner:9000", 4, 3, "kubernetes"),
    ),
  ],
)
def test_role_from_each_engine(env, role):
  assert cluster.detect(env) == role


@pytest.mark.parametrize(
  "env,message",
  [
    ({}, "set CLUSTER_SPEC (Vertex AI), TF_CONFIG, or SEED_LEARNER_SERVICE"),
    ({"CLUSTER_SPEC": "{not json"}, "CLUSTER_SPEC is not JSON"),
    (_spec({"type": "workerpool2", "index": 0}, **VERTEX), "task.type 'workerpool2' is not workerpool0"),
    (_spec({"type": "workerpool1", "index": 3}, **VERTEX), "CLUSTER_SPEC: task.index must be in [0, 3)"),
    (
      {"TF_CONFIG": json.dumps({"cluster": {"worker": ["a"]}, "task": {"type": "worker"}})},
      "TF_CONFIG: the cluster needs one 'chief' or 'master' pool",
    ),
    (
      {"TF_CONFIG": json.dumps({"cluster": {"chief": ["c"]}, "task": {"type": "evaluator"}})},
      "task.type 'evaluator' is not chief/master",
    ),
    ({"SEED_LEARNER_SERVICE": "l"}, "SEED_ACTOR_HOSTS must be set"),
    ({"SEED_LEARNER_SERVICE": "l", "SEED_ACTOR_HOSTS": "2", "JOB_COMPLETION_INDEX": "2"}, "JOB_COMPLETION_INDEX=2"),
  ],
)
def test_an_environment_that_names_no_role_is_a_clear_error(env, message):
  with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
    cluster.detect(env)


def test_num_actors_follows_the_cluster():
  assert cluster.num_actors(4, 8, ["--config.seed=1"]) == 32
  assert cluster.num_actors(4, 8, ["--config.num_actors=32"]) == 32
  with pytest.raises(ValueError, match="--config.num_actors=16 but the cluster runs 4 actor hosts x 8"):
    cluster.num_actors(4, 8, ["--config.num_actors=16"])


def _run(*args, env=None, check=True):
  r = subprocess.run(
    [sys.executable, "-m", *args], cwd=REPO, env=env or ENV, capture_output=True, text=True, timeout=180
  )
  if check:
    assert r.returncode == 0, r.stderr[-3000:]
  return r


def test_entrypoint_without_a_cluster_environment_names_the_variables():
  env = {k: v for k, v in ENV.items() if k not in ("CLUSTER_SPEC", "TF_CONFIG", "SEED_LEARNER_SERVICE")}
  r = _run("gcp.entrypoint", f"--config={CARTPOLE}", env=env, check=False)
  assert r.returncode != 0 and "set CLUSTER_SPEC (Vertex AI), TF_CONFIG, or SEED_LEARNER_SERVICE" in r.stderr
  r = _run("gcp.entrypoint", f"--config={CARTPOLE}", "--actor_per_host=2", env=env, check=False)
  assert r.returncode != 0 and "unknown arguments ['--actor_per_host=2']" in r.stderr


# -- Vertex AI ------------------------------------------------------------------------------------

VERTEX_ARGS = [
  "gcp.vertex",
  "--config=configs/cartpole_vtrace.py",
  "--project=p",
  "--region=us-central1",
  "--image=us-docker.pkg.dev/p/seed/seed:1",
  "--logdir=gs://bucket/run",
  "--actor_hosts=4",
  "--actors_per_host=8",
  "--learner_machine_type=a2-highgpu-1g",
  "--learner_accelerator=NVIDIA_TESLA_A100:1",
  "--actor_machine_type=n2-standard-16",
  "--tls_secret_dir=/secrets",
  "--config.seed=7",
]


def test_vertex_dry_run_prints_the_job():
  from google.cloud import aiplatform_v1

  out = _run(*VERTEX_ARGS, "--dry_run").stdout
  job = aiplatform_v1.CustomJob.from_json(out)  # a wrong field name would not parse
  learner, actors = job.job_spec.worker_pool_specs
  assert job.display_name == "seed-cartpole-vtrace"
  assert (learner.replica_count, actors.replica_count) == (1, 4)
  assert learner.machine_spec.machine_type == "a2-highgpu-1g" and actors.machine_spec.machine_type == "n2-standard-16"
  assert (
    learner.machine_spec.accelerator_type.name == "NVIDIA_TESLA_A100" and learner.machine_spec.accelerator_count == 1
  )
  assert actors.machine_spec.accelerator_count == 0
  for pool in (learner, actors):
    c = pool.container_spec
    assert c.image_uri == "us-docker.pkg.dev/p/seed/seed:1" and list(c.command) == ["python", "-m", "gcp.entrypoint"]
    assert {"--config=configs/cartpole_vtrace.py", "--actors_per_host=8", "--tls_dir=/secrets"} <= set(c.args)
    assert "--tls_server_name=seed-learner" in c.args and c.args[-1] == "--config.seed=7"
    assert {e.name: e.value for e in c.env} == {"PYTHONUNBUFFERED": "1"}
  assert "--logdir=gs://bucket/run" in learner.container_spec.args
  assert not any(a.startswith("--logdir") for a in actors.container_spec.args)


def test_vertex_tpu_learner_and_bad_flags():
  out = _run(*VERTEX_ARGS[:9], "--learner_machine_type=ct5lp-hightpu-4t", "--tpu_topology=2x2", "--dry_run").stdout
  machine = json.loads(out)["jobSpec"]["workerPoolSpecs"][0]["machineSpec"]
  assert machine["machineType"] == "ct5lp-hightpu-4t" and machine["tpuTopology"] == "2x2"
  for bad, message in [
    (["--logdir=/local/run"], "--logdir must be a gs://bucket/path"),
    (["--config.num_actors=3"], "--config.num_actors=3 but the cluster runs 4 actor hosts x 8"),
    (["--config.batch_size=0"], "config.batch_size must be a positive integer"),
  ]:
    r = _run(*VERTEX_ARGS, *bad, "--dry_run", check=False)
    assert r.returncode != 0 and message in r.stderr, r.stderr[-2000:]


_SUBMIT = r"""
import sys
from unittest import mock
from absl import app
from google.auth.credentials import AnonymousCredentials
from google.cloud import aiplatform_v1
from google.cloud.aiplatform_v1.services.job_service import JobServiceClient
from gcp import vertex

calls = []
def create(self, *, parent, custom_job, timeout=None, **kwargs):
  calls.append(parent)
  done = aiplatform_v1.CustomJob(custom_job)
  done.name = parent + "/customJobs/42"
  return done

with mock.patch.object(JobServiceClient, "create_custom_job", create), \
     mock.patch("google.auth.default", return_value=(AnonymousCredentials(), "p")):
  try:
    app.run(vertex.main, argv=["vertex", *sys.argv[1:]])
  except SystemExit as e:
    assert not e.code, e.code
print("CALLS", calls)
"""


def test_vertex_submit_makes_exactly_one_create_call():
  r = subprocess.run(
    [sys.executable, "-c", _SUBMIT, *VERTEX_ARGS[1:]], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=180
  )
  assert r.returncode == 0, r.stderr[-3000:]
  assert "CALLS ['projects/p/locations/us-central1']" in r.stdout, r.stdout
  assert '"submitted": "projects/p/locations/us-central1/customJobs/42"' in r.stdout


# -- Kubernetes -----------------------------------------------------------------------------------

K8S_ARGS = [
  "gcp.kubernetes",
  "--config=configs/cartpole_vtrace.py",
  "--image=IMAGE",
  "--name=pong",
  "--actor_hosts=4",
  "--actors_per_host=8",
  "--tls_secret=seed-tls",
  "--logdir=gs://bucket/run",
]


def _manifests(*extra):
  docs = list(yaml.safe_load_all(_run(*K8S_ARGS, *extra).stdout))
  for doc in docs:  # the schemas of a current Kubernetes, strict: an unknown field fails
    kubernetes_validate.validate(doc, "1.37.0", strict=True)
  return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def test_kubernetes_manifests_validate_and_are_wired():
  docs = _manifests("--learner_gpus=1", "--config.seed=7")
  service, learner, actors = docs["Service", "pong-learner"], docs["Job", "pong-learner"], docs["Job", "pong-actors"]
  assert service["spec"]["clusterIP"] == "None"  # headless: the learner pod's own address
  assert service["spec"]["selector"] == learner["spec"]["template"]["metadata"]["labels"]
  port = service["spec"]["ports"][0]["port"]
  learner_pod, actor_pod = learner["spec"]["template"]["spec"], actors["spec"]["template"]["spec"]
  assert learner_pod["containers"][0]["ports"][0]["containerPort"] == port
  assert learner_pod["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": "1"}
  # Actor pods find the learner by the Service's name and port; indices 0..3 each run once.
  env = {e["name"]: e["value"] for e in actor_pod["containers"][0]["env"]}
  assert env == {"SEED_LEARNER_SERVICE": "pong-learner", "SEED_LEARNER_PORT": str(port), "SEED_ACTOR_HOSTS": "4"}
  assert actors["spec"]["completionMode"] == "Indexed"
  assert actors["spec"]["completions"] == actors["spec"]["parallelism"] == 4
  assert actor_pod["restartPolicy"] == "OnFailure" and actors["spec"]["backoffLimitPerIndex"] > 0
  assert actor_pod["containers"][0]["resources"]["requests"]["cpu"] == "8"
  for pod in (learner_pod, actor_pod):
    container = pod["containers"][0]
    assert container["image"] == "IMAGE" and container["command"] == ["python", "-m", "gcp.entrypoint"]
    assert "--tls_dir=/secrets" in container["args"] and container["args"][-1] == "--config.seed=7"
    assert container["volumeMounts"] == [{"name": "tls", "mountPath": "/secrets", "readOnly": True}]
    assert pod["volumes"] == [{"name": "tls", "secret": {"secretName": "seed-tls", "defaultMode": 0o400}}]
  assert "--logdir=gs://bucket/run" in learner_pod["containers"][0]["args"]


def test_kubernetes_tpu_learner_and_bad_flags(tmp_path):
  outside = tmp_path / "mine.py"
  outside.write_text("from configs.cartpole_vtrace import get_config  # noqa: F401\n")
  learner = _manifests("--tpu_accelerator=tpu-v5-lite-podslice", "--tpu_topology=2x2")["Job", "pong-learner"]
  pod = learner["spec"]["template"]["spec"]
  assert pod["nodeSelector"] == {
    "cloud.google.com/gke-tpu-accelerator": "tpu-v5-lite-podslice",
    "cloud.google.com/gke-tpu-topology": "2x2",
  }
  assert pod["containers"][0]["resources"]["limits"] == {"google.com/tpu": "4"}
  for bad, message in [
    (["--tpu_accelerator=tpu-v5-lite-podslice"], "--tpu_accelerator and --tpu_topology go together"),
    (["--config.num_actors=5"], "--config.num_actors=5 but the cluster runs 4 actor hosts x 8"),
    ([f"--config={outside}"], "is outside the repository, so the image does not hold it"),
  ]:
    r = _run(*K8S_ARGS, *bad, check=False)
    assert r.returncode != 0 and message in r.stderr, r.stderr[-2000:]


def test_image_is_setup_sh_and_the_entrypoint_and_leaves_secrets_out():
  dockerfile = open(os.path.join(REPO, "gcp", "Dockerfile"), encoding="utf-8").read()
  assert "RUN ./scripts/setup.sh" in dockerfile and "ARG BASE_IMAGE=debian:12" in dockerfile
  assert 'ENTRYPOINT ["python", "-m", "gcp.entrypoint"]' in dockerfile and "ARG GPU=0" in dockerfile
  ignored = set(open(os.path.join(REPO, ".dockerignore"), encoding="utf-8").read().split())
  assert {".venv", ".git", "certs", "*.key", "token"} <= ignored
  assert not ignored & {"scripts", "grpc", "seed", "agents", "envs", "configs", "gcp", "pyproject.toml", "setup.py"}
