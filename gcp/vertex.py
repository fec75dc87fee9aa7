"""Submit one run as a Vertex AI CustomJob: `python -m gcp.vertex --config configs/<x>.py ...`.

    python -m gcp.vertex --config configs/atari_vtrace.py --project P --region us-central1 \\
        --image IMAGE --logdir gs://bucket/run --actor_hosts 4 --actors_per_host 8 \\
        --learner_machine_type a2-highgpu-1g --learner_accelerator NVIDIA_TESLA_A100:1 \\
        --actor_machine_type n2-standard-16 [--tpu_topology 2x2] [--tls_secret_dir /secrets] \\
        [--dry_run] [--config.field=value ...]

Worker pool 0 (1 replica) runs the learner, pool 1 (--actor_hosts replicas)
the actor hosts; every replica starts `python -m gcp.entrypoint`, which reads
its role from CLUSTER_SPEC. A TPU learner: a TPU machine type (e.g.
ct5lp-hightpu-4t) with --tpu_topology. --dry_run prints the job as JSON
(aiplatform_v1.CustomJob) and submits nothing. The job is built with anonymous
credentials, so building it needs no account and no network; only the submit
uses Application Default Credentials.

TLS: --tls_secret_dir is where the image (or a mounted volume) holds
make_certs.sh's files. Vertex AI names the learner's host itself, so actors
check the learner's certificate for the name --tls_server_name (default
seed-learner): make the certificates with `make_certs.sh certs seed-learner`.
"""

from __future__ import annotations

import json
import sys

from absl import app, flags
from ml_collections import config_flags

from gcp import cluster, image

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (its path inside the image is the same).")
_PROJECT = flags.DEFINE_string("project", None, "Google Cloud project.")
_REGION = flags.DEFINE_string("region", "us-central1", "Vertex AI region.")
_IMAGE = flags.DEFINE_string("image", None, "Container image built from gcp/Dockerfile.")
_LOGDIR = flags.DEFINE_string("logdir", None, "Run directory, gs://bucket/path (also the job's staging bucket).")
_DISPLAY_NAME = flags.DEFINE_string("display_name", None, "Job name in the console (default: seed-<config name>).")
_ACTOR_HOSTS = flags.DEFINE_integer("actor_hosts", 1, "Replicas of the actor pool.", lower_bound=1)
_ACTORS_PER_HOST = flags.DEFINE_integer("actors_per_host", 1, "Actor processes per actor host.", lower_bound=1)
_LEARNER_MACHINE = flags.DEFINE_string("learner_machine_type", "n1-standard-8", "Learner machine type.")
_LEARNER_ACCELERATOR = flags.DEFINE_string(
  "learner_accelerator", None, "TYPE:COUNT, e.g. NVIDIA_TESLA_A100:1 (TPU machine types need none)."
)
_TPU_TOPOLOGY = flags.DEFINE_string("tpu_topology", None, "TPU learner: the slice topology, e.g. 2x2.")
_ACTOR_MACHINE = flags.DEFINE_string("actor_machine_type", "n2-standard-16", "Actor host machine type.")
_TLS_SECRET_DIR = flags.DEFINE_string("tls_secret_dir", None, "Directory in the container with make_certs.sh's files.")
_TLS_SERVER_NAME = flags.DEFINE_string("tls_server_name", "seed-learner", "Name on the learner's certificate.")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Print the job as JSON; submit nothing.")


def _machine_spec(machine_type: str, accelerator: str | None, tpu_topology: str | None) -> dict:
  spec = {"machine_type": machine_type}
  if accelerator:
    kind, _, count = accelerator.partition(":")
    spec.update(accelerator_type=kind, accelerator_count=int(count or 1))
  if tpu_topology:
    spec["tpu_topology"] = tpu_topology
  return spec


def _args(overrides: list[str], learner: bool) -> list[str]:
  config_path = image.config_flag_path()
  args = [f"--config={config_path}", f"--actors_per_host={_ACTORS_PER_HOST.value}"]
  args += [f"--logdir={_LOGDIR.value}"] if learner else []
  if _TLS_SECRET_DIR.value:
    args += [f"--tls_dir={_TLS_SECRET_DIR.value}", f"--tls_server_name={_TLS_SERVER_NAME.value}"]
  else:
    args += ["--insecure"]
  return args + overrides


def worker_pool_specs(overrides: list[str]) -> list[dict]:
  """Pool 0: the learner (1 replica); pool 1: the actor hosts."""

  def pool(machine: dict, replicas: int, learner: bool) -> dict:
    return {
      "machine_spec": machine,
      "replica_count": replicas,
      "container_spec": {
        "image_uri": _IMAGE.value,
        "command": ["python", "-m", "gcp.entrypoint"],
        "args": _args(overrides, learner),
        "env": [{"name": "PYTHONUNBUFFERED", "value": "1"}],  # logs reach Cloud Logging as they are written
      },
    }

  learner = _machine_spec(_LEARNER_MACHINE.value, _LEARNER_ACCELERATOR.value, _TPU_TOPOLOGY.value)
  return [pool(learner, 1, True), pool(_machine_spec(_ACTOR_MACHINE.value, None, None), _ACTOR_HOSTS.value, False)]


def build_job(overrides: list[str], credentials=None):
  """The aiplatform.CustomJob; with no credentials (anonymous) building it makes no network call."""
  from google.auth import credentials as auth_credentials  # pylint: disable=g-import-not-at-top
  from google.cloud import aiplatform  # pylint: disable=g-import-not-at-top

  bucket = "/".join(_LOGDIR.value.split("/")[:3])  # gs://bucket
  name = _DISPLAY_NAME.value or "seed-" + image.config_flag_path().split("/")[-1][:-3]
  return aiplatform.CustomJob(
    display_name=name.replace("_", "-"),
    worker_pool_specs=worker_pool_specs(overrides),
    project=_PROJECT.value,
    location=_REGION.value,
    staging_bucket=bucket,
    credentials=credentials or auth_credentials.AnonymousCredentials(),
  )


def job_json(job) -> str:
  """The job's aiplatform_v1.CustomJob as JSON (what --dry_run prints)."""
  from google.cloud import aiplatform_v1  # pylint: disable=g-import-not-at-top

  return aiplatform_v1.CustomJob.to_json(job._gca_resource, use_integers_for_enums=False)  # pylint: disable=protected-access


def _check_flags() -> None:
  for flag in (_PROJECT, _IMAGE, _LOGDIR):
    if not flag.value:
      raise app.UsageError(f"--{flag.name} is required")
  if not _LOGDIR.value.startswith("gs://") or len(_LOGDIR.value.split("/")) < 3 or not _LOGDIR.value.split("/")[2]:
    raise app.UsageError(f"--logdir must be a gs://bucket/path that every replica can reach, got {_LOGDIR.value!r}")


def main(argv: list[str]) -> int:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  _check_flags()
  from agents import registry  # pylint: disable=g-import-not-at-top

  overrides = [a for a in sys.argv[1:] if a.startswith("--config.")]
  try:
    image.config_flag_path()
    _CONFIG.value.num_actors = cluster.num_actors(_ACTOR_HOSTS.value, _ACTORS_PER_HOST.value, overrides)
    registry.check_config(_CONFIG.value)
  except ValueError as e:
    raise app.UsageError(str(e)) from e
  if _DRY_RUN.value:
    print(job_json(build_job(overrides)))
    return 0
  import google.auth  # pylint: disable=g-import-not-at-top

  job = build_job(overrides, google.auth.default()[0])  # Application Default Credentials
  job.submit()
  print(json.dumps({"submitted": job.resource_name}))
  return 0


if __name__ == "__main__":
  flags.mark_flag_as_required("config")
  app.run(main)
