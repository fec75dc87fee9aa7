"""Entry point: `python -m seed.train --config configs/<x>.py [--config.field=value ...]`.

Modes:
  local   (default) the learner and config.num_actors actor processes on this
          machine, over a unix socket in a private temp dir, supervised.
  learner serve inference at --server_address and train (for multi-host runs).
  actor   run actor --task against the learner at --server_address.
The same config drives every mode; --logdir resumes a run that used it.
An actor process (local or --mode=actor) never imports TensorFlow.

Beyond loopback the learner needs TLS and client authentication:
  learner: --tls_cert=learner.crt --tls_key=learner.key --auth_token_file=token [--tls_ca=ca.crt: mutual TLS]
  actor:   --tls_ca=ca.crt --auth_token_file=token [--tls_cert=actor.crt --tls_key=actor.key]
(scripts/tools/make_certs.sh makes them). When the learner reaches its frame budget
or stop_mean_return it tells the actors, which exit 0.
"""

from __future__ import annotations

import os
import sys
import time

# TensorFlow's C++ INFO lines (fingerprints, device setup) would flood a run's output; warnings and errors stay.
# Set before TensorFlow is imported, here and (inherited) in the learner and actor processes.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
# tf.keras as tf_keras (which the agents use anyway) instead of Keras 3: importing TensorFlow
# then skips Keras 3 and the matplotlib it pulls in, ~0.8 s off every process start.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from absl import app, flags, logging
from ml_collections import config_flags

from agents import registry
from seed.runtime import devices

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a config file in configs/.", lock_config=True)
_MODE = flags.DEFINE_enum("mode", "local", ["local", "learner", "actor"], "What this process runs.")
_LOGDIR = flags.DEFINE_string("logdir", None, "Run directory (default runs/<config>-<time>); reusing one resumes.")
_SERVER_ADDRESS = flags.DEFINE_string(
  "server_address",
  "localhost:8686",
  "Learner address: 'host:port' (TCP, loopback by default) or 'unix:/path'. Learner and actor modes.",
)
_TASK = flags.DEFINE_integer("task", 0, "Actor index in [0, num_actors). Actor mode.")
_TLS_CERT = flags.DEFINE_string(
  "tls_cert", None, "PEM certificate: the learner's (TLS), or an actor's client certificate (mutual TLS)."
)
_TLS_KEY = flags.DEFINE_string("tls_key", None, "PEM private key of --tls_cert.")
_TLS_CA = flags.DEFINE_string(
  "tls_ca",
  None,
  "PEM CA certificate. Actor: enables TLS, trusting the learner's certificate it signed. "
  "Learner: mutual TLS, actors must present a certificate it signed.",
)
_TOKEN_FILE = flags.DEFINE_string(
  "auth_token_file", None, "File holding a bearer token: the learner requires it on TCP calls, actors send it."
)
_TLS_SERVER_NAME = flags.DEFINE_string(
  "tls_server_name",
  None,
  "Actor: the name the learner's certificate must carry, when it differs from the host dialled "
  "(a cloud engine that names hosts itself).",
)
_INSECURE = flags.DEFINE_bool(
  "insecure", False, "Allow a learner (or actor) on a non-loopback TCP address without TLS and client auth."
)

_OWN_FLAGS = (
  "--mode",
  "--logdir",
  "--server_address",
  "--task",
  "--tls_cert",
  "--tls_key",
  "--tls_ca",
  "--auth_token_file",
  "--tls_server_name",
  "--insecure",
  "--noinsecure",
)


def _default_logdir(config_path: str) -> str:
  name = os.path.splitext(os.path.basename(config_path))[0]
  return os.path.join("runs", f"{name}-{time.strftime('%Y%m%d-%H%M%S')}")


def _config_args(argv: list[str]) -> list[str]:
  """The command line's config flags (file and overrides), passed on to child processes."""
  out, skip = [], False
  for arg in argv:
    if skip:
      skip = False
      continue
    if arg.startswith(_OWN_FLAGS):
      skip = "=" not in arg
      continue
    out.append(arg)
  return out


def main(argv: list[str]) -> int:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  config = _CONFIG.value
  try:
    agent = registry.check_config(config)  # this entry point picks the agent; the runtime only gets its package
    # The devices exist, before any process starts; an actor has none to check (nor TensorFlow to ask).
    if _MODE.value != "actor" and devices.needs_check(config):
      devices.check(config, agent)
  except ValueError as e:
    raise app.UsageError(str(e)) from e
  logdir = _LOGDIR.value or _default_logdir(config_flags.get_config_filename(flags.FLAGS["config"]))
  files = (_TLS_CERT.value, _TLS_KEY.value, _TLS_CA.value, _TOKEN_FILE.value)
  if _MODE.value == "local":
    from seed.runtime import launcher  # pylint: disable=g-import-not-at-top

    if any(files):
      logging.warning("local mode runs over a private unix socket: the TLS and token flags are not used")
    logging.info("local run: learner + %d actors, logdir %s", config.num_actors, logdir)
    return launcher.run(config, _config_args(sys.argv[1:]), logdir if "://" in logdir else os.path.abspath(logdir))
  from seed.runtime import security  # pylint: disable=g-import-not-at-top

  address = _SERVER_ADDRESS.value
  if _MODE.value == "learner":
    try:
      credentials = security.server_credentials(*files)
      security.check_learner_address(address, credentials, _INSECURE.value)
    except (ValueError, OSError) as e:
      raise app.UsageError(str(e)) from e
    from seed.runtime import learner  # pylint: disable=g-import-not-at-top

    learner.run(config, logdir, address, agent=agent, credentials=credentials)
    return 0
  try:
    credentials = security.channel_credentials(
      _TLS_CA.value, _TLS_CERT.value, _TLS_KEY.value, _TOKEN_FILE.value, _TLS_SERVER_NAME.value
    )
    security.check_actor_address(address, credentials, _INSECURE.value)
  except (ValueError, OSError) as e:
    raise app.UsageError(str(e)) from e
  from seed.runtime import actor  # pylint: disable=g-import-not-at-top

  try:
    actor.run(config, _TASK.value, address, credentials=credentials)
  except actor.LearnerUnreachable as e:
    logging.error("%s", e)
    return 1
  return 0


if __name__ == "__main__":
  flags.mark_flag_as_required("config")
  app.run(main)
