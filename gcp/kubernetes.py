"""Kubernetes (GKE) manifests for one run: `python -m gcp.kubernetes --config configs/<x>.py ... > run.yaml`.

    python -m gcp.kubernetes --config configs/atari_vtrace.py --image IMAGE --name pong \\
        --actor_hosts 4 --actors_per_host 8 --learner_gpus 1 --tls_secret seed-tls \\
        [--tpu_accelerator tpu-v5-lite-podslice --tpu_topology 2x2] [--logdir gs://b/run] [--config.x=v ...]
    kubectl apply -f run.yaml

Prints, as one YAML stream:
  Service  <name>-learner   headless: the learner pod's DNS name, which actors dial
  Job      <name>-learner   the learner (GPU limits, or GKE TPU node selectors and limits);
                            restarted on failure, it resumes from its checkpoint in --logdir
  Job      <name>-actors    an Indexed Job: one pod per actor host (JOB_COMPLETION_INDEX), each
                            running --actors_per_host actors; a failed or lost pod is replaced
The TLS certificate, key and token come from the Secret --tls_secret (made from
scripts/tools/make_certs.sh's directory: `kubectl create secret generic seed-tls --from-file=certs/`),
mounted read-only at /secrets; nothing secret is written into the manifests.
The learner's certificate must carry the name <name>-learner (make_certs.sh certs <name>-learner).
"""

from __future__ import annotations

import math
import sys

import yaml
from absl import app, flags
from ml_collections import config_flags

from gcp import cluster, image

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (its path inside the image is the same).")
_IMAGE = flags.DEFINE_string("image", None, "Container image built from gcp/Dockerfile.")
_NAME = flags.DEFINE_string("name", None, "Run name: prefix of every object (DNS label: a-z, 0-9, -).")
_ACTOR_HOSTS = flags.DEFINE_integer("actor_hosts", 1, "Actor pods.", lower_bound=1)
_ACTORS_PER_HOST = flags.DEFINE_integer("actors_per_host", 1, "Actor processes per pod.", lower_bound=1)
_LEARNER_GPUS = flags.DEFINE_integer("learner_gpus", 0, "nvidia.com/gpu for the learner pod.", lower_bound=0)
_TPU_ACCELERATOR = flags.DEFINE_string("tpu_accelerator", None, "GKE TPU type, e.g. tpu-v5-lite-podslice.")
_TPU_TOPOLOGY = flags.DEFINE_string("tpu_topology", None, "GKE TPU topology, e.g. 2x2.")
_TLS_SECRET = flags.DEFINE_string("tls_secret", None, "Secret holding make_certs.sh's files; unset: --insecure.")
_LOGDIR = flags.DEFINE_string("logdir", None, "The learner's run directory, e.g. gs://bucket/run.")
_LEARNER_CPU = flags.DEFINE_string("learner_cpu", "4", "CPU request of the learner pod.")
_LEARNER_MEMORY = flags.DEFINE_string("learner_memory", "16Gi", "Memory request of the learner pod.")
_ACTOR_MEMORY_PER_ACTOR = flags.DEFINE_integer("actor_memory_mb", 1024, "Memory request per actor process (MiB).")
_RESTARTS = flags.DEFINE_integer(
  "restarts", 10, "Restarts of each pod (learner, and per actor index) before the Job fails."
)

PORT = cluster.DEFAULT_PORT
SECRETS = "/secrets"


def _labels(name: str, role: str) -> dict:
  return {"app.kubernetes.io/name": "seed", "seed/run": name, "seed/role": role}


def _object(api_version: str, kind: str, name: str, role: str) -> dict:
  return {
    "apiVersion": api_version,
    "kind": kind,
    "metadata": {"name": f"{name}-{role}", "labels": _labels(name, role)},
  }


def _env(name: str) -> list[dict]:
  return [
    {"name": "SEED_LEARNER_SERVICE", "value": f"{name}-learner"},
    {"name": "SEED_LEARNER_PORT", "value": str(PORT)},
    {"name": "SEED_ACTOR_HOSTS", "value": str(_ACTOR_HOSTS.value)},
  ]


def _container(name: str, role: str, overrides: list[str], resources: dict) -> dict:
  args = [f"--config={image.config_path(config_flags.get_config_filename(flags.FLAGS['config']))}"]
  args += [f"--actors_per_host={_ACTORS_PER_HOST.value}"]
  args += [f"--logdir={_LOGDIR.value}"] if _LOGDIR.value and role == "learner" else []
  args += [f"--tls_dir={SECRETS}"] if _TLS_SECRET.value else ["--insecure"]
  container = {
    "name": role,
    "image": _IMAGE.value,
    "command": ["python", "-m", "gcp.entrypoint"],
    "args": args + overrides,
    "env": _env(name),
    "resources": resources,
  }
  if role == "learner":
    container["ports"] = [{"name": "grpc", "containerPort": PORT}]
  if _TLS_SECRET.value:
    container["volumeMounts"] = [{"name": "tls", "mountPath": SECRETS, "readOnly": True}]
  return container


def _pod(name: str, role: str, container: dict, node_selector: dict | None = None) -> dict:
  spec = {"restartPolicy": "OnFailure", "containers": [container]}
  if node_selector:
    spec["nodeSelector"] = node_selector
  if _TLS_SECRET.value:
    spec["volumes"] = [{"name": "tls", "secret": {"secretName": _TLS_SECRET.value, "defaultMode": 0o400}}]
  return {"metadata": {"labels": _labels(name, role)}, "spec": spec}


def manifests(overrides: list[str]) -> list[dict]:
  """The Service, learner Job and actor Indexed Job for the flags and config overrides."""
  name = _NAME.value
  learner_resources = {"requests": {"cpu": _LEARNER_CPU.value, "memory": _LEARNER_MEMORY.value}, "limits": {}}
  selector = None
  if _TPU_ACCELERATOR.value:
    chips = math.prod(int(d) for d in _TPU_TOPOLOGY.value.split("x"))
    learner_resources["limits"]["google.com/tpu"] = str(chips)
    selector = {
      "cloud.google.com/gke-tpu-accelerator": _TPU_ACCELERATOR.value,
      "cloud.google.com/gke-tpu-topology": _TPU_TOPOLOGY.value,
    }
  elif _LEARNER_GPUS.value:
    learner_resources["limits"]["nvidia.com/gpu"] = str(_LEARNER_GPUS.value)
  if not learner_resources["limits"]:
    del learner_resources["limits"]
  per_host = _ACTORS_PER_HOST.value
  actor_resources = {"requests": {"cpu": str(per_host), "memory": f"{per_host * _ACTOR_MEMORY_PER_ACTOR.value}Mi"}}
  service = _object("v1", "Service", name, "learner")
  service["spec"] = {
    "clusterIP": "None",
    "selector": _labels(name, "learner"),
    "ports": [{"name": "grpc", "port": PORT, "targetPort": PORT}],
  }
  learner = _object("batch/v1", "Job", name, "learner")
  learner["spec"] = {
    "backoffLimit": _RESTARTS.value,
    "template": _pod(name, "learner", _container(name, "learner", overrides, learner_resources), selector),
  }
  actors = _object("batch/v1", "Job", name, "actors")
  actors["spec"] = {
    "completionMode": "Indexed",
    "completions": _ACTOR_HOSTS.value,
    "parallelism": _ACTOR_HOSTS.value,
    "backoffLimitPerIndex": _RESTARTS.value,
    "template": _pod(name, "actors", _container(name, "actors", overrides, actor_resources)),
  }
  return [service, learner, actors]


def _check_flags() -> None:
  for flag in (_IMAGE, _NAME):
    if not flag.value:
      raise app.UsageError(f"--{flag.name} is required")
  if bool(_TPU_ACCELERATOR.value) != bool(_TPU_TOPOLOGY.value):
    raise app.UsageError("--tpu_accelerator and --tpu_topology go together")
  if _TPU_ACCELERATOR.value and _LEARNER_GPUS.value:
    raise app.UsageError("a learner has GPUs (--learner_gpus) or a TPU (--tpu_accelerator), not both")


def main(argv: list[str]) -> int:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  _check_flags()
  from agents import registry  # pylint: disable=g-import-not-at-top

  config = _CONFIG.value
  overrides = [a for a in sys.argv[1:] if a.startswith("--config.")]
  try:
    image.config_flag_path()
    config.num_actors = cluster.num_actors(_ACTOR_HOSTS.value, _ACTORS_PER_HOST.value, overrides)  # as the pods will
    registry.check_config(config)
  except ValueError as e:
    raise app.UsageError(str(e)) from e
  yaml.safe_dump_all(manifests(overrides), sys.stdout, sort_keys=False)
  return 0


if __name__ == "__main__":
  flags.mark_flag_as_required("config")
  app.run(main)
