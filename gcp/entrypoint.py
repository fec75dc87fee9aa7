"""The container's entry point: `python -m gcp.entrypoint --config configs/<x>.py [--config.field=value ...]`.

It learns this replica's role from the engine (gcp/cluster.py: Vertex AI's
CLUSTER_SPEC, TF_CONFIG, or a Kubernetes Indexed Job) and runs, through
`python -m seed.train`:
  the learner  listening on 0.0.0.0:<port of the learner's address>, or
  an actor host  `--actors_per_host` supervised actor processes with task ids
               host_index * actors_per_host + i, dialling the learner.
num_actors follows from the cluster's shape (actor hosts x actors_per_host); a
--config.num_actors that says otherwise is an error. TLS and the token come from
--tls_dir (the files scripts/tools/make_certs.sh writes: ca.crt, learner.crt,
learner.key, token, and actor.crt/actor.key for mutual TLS when present).
The process exits with the learner's or the actors' status: 0 once the run completes.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags, logging

from gcp import cluster

_CONFIG = flags.DEFINE_string("config", None, "Path to a config file in configs/ (inside the image).")
_ACTORS_PER_HOST = flags.DEFINE_integer("actors_per_host", 1, "Actor processes on each actor host.")
_LOGDIR = flags.DEFINE_string("logdir", None, "Run directory (a gs:// path on the cloud); the learner's.")
_TLS_DIR = flags.DEFINE_string("tls_dir", None, "Directory holding make_certs.sh's files (a mounted secret).")
_TLS_SERVER_NAME = flags.DEFINE_string(
  "tls_server_name",
  None,
  "Name the learner's certificate carries, when actors dial it by another (Vertex AI's generated host names).",
)
_INSECURE = flags.DEFINE_bool("insecure", False, "Run without TLS and token (a private network you trust).")

flags.mark_flag_as_required("config")


def _parse(argv: list[str]) -> list[str]:
  """Parses this module's flags; the rest must be config overrides (passed on to seed.train)."""
  rest = flags.FLAGS(argv, known_only=True)[1:]
  unknown = [a for a in rest if not a.startswith("--config.")]
  if unknown:
    raise app.UsageError(f"unknown arguments {unknown}: flags are listed by --help; overrides are --config.field=value")
  return argv[:1] + rest


def _tls_flags(learner: bool) -> list[str]:
  d = _TLS_DIR.value
  if not d:
    return ["--insecure"] if _INSECURE.value else []
  path = lambda name: os.path.join(d, name)
  mutual = os.path.exists(path("actor.crt"))
  if learner:
    out = [f"--tls_cert={path('learner.crt')}", f"--tls_key={path('learner.key')}"]
    out += [f"--tls_ca={path('ca.crt')}"] if mutual else []
  else:
    out = [f"--tls_ca={path('ca.crt')}"]
    out += [f"--tls_cert={path('actor.crt')}", f"--tls_key={path('actor.key')}"] if mutual else []
    out += [f"--tls_server_name={_TLS_SERVER_NAME.value}"] if _TLS_SERVER_NAME.value else []
  return out + [f"--auth_token_file={path('token')}"]


def _base_command(role: cluster.Role, overrides: list[str]) -> list[str]:
  """`python -m seed.train` with the config, its overrides and num_actors from the cluster's shape."""
  try:
    n = cluster.num_actors(role.actor_hosts, _ACTORS_PER_HOST.value, overrides)
  except ValueError as e:
    raise app.UsageError(str(e)) from e
  return [sys.executable, "-m", "seed.train", f"--config={_CONFIG.value}", *overrides, f"--config.num_actors={n}"]


def learner_command(role: cluster.Role, overrides: list[str]) -> list[str]:
  logdir = [f"--logdir={_LOGDIR.value}"] if _LOGDIR.value else []
  base = _base_command(role, overrides)
  return [*base, "--mode=learner", f"--server_address=0.0.0.0:{role.port}", *logdir, *_tls_flags(True)]


def actor_commands(role: cluster.Role, overrides: list[str]) -> dict[int, list[str]]:
  """This host's actors' command lines, by task id."""
  base = _base_command(role, overrides)
  first = role.host_index * _ACTORS_PER_HOST.value
  return {
    task: [*base, "--mode=actor", f"--task={task}", f"--server_address={role.learner_address}", *_tls_flags(False)]
    for task in range(first, first + _ACTORS_PER_HOST.value)
  }


def main(argv: list[str]) -> int:
  try:
    role = cluster.detect(os.environ)
  except ValueError as e:
    raise app.UsageError(str(e)) from e
  if role.learner:
    command = learner_command(role, argv[1:])
    logging.info("%s: the learner, serving on port %d for %d actor hosts", role.engine, role.port, role.actor_hosts)
    os.execv(sys.executable, command)  # the learner handles SIGTERM (checkpoint, export) itself
  cmds = actor_commands(role, argv[1:])
  from seed.runtime import launcher  # pylint: disable=g-import-not-at-top

  logging.info(
    "%s: actor host %d of %d, %d actors, learner at %s",
    role.engine,
    role.host_index,
    role.actor_hosts,
    len(cmds),
    role.learner_address,
  )
  return launcher.run_actors(cmds)


if __name__ == "__main__":
  app.run(main, flags_parser=_parse)
