"""Entry point: `python -m seed.train --config configs/<x>.py [--config.field=value ...]`.

Modes:
  local   (default) the learner and config.num_actors actor processes on this
          machine, over a unix socket in a private temp dir, supervised.
  learner serve inference at --server_address and train (for multi-host runs).
  actor   run actor --task against the learner at --server_address.
The same config drives every mode; --logdir resumes a run that used it.
"""

from __future__ import annotations

import os
import sys
import time

from absl import app, flags, logging
from ml_collections import config_flags

from seed.runtime import config as seed_config

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a config file in configs/.", lock_config=True)
_MODE = flags.DEFINE_enum("mode", "local", ["local", "learner", "actor"], "What this process runs.")
_LOGDIR = flags.DEFINE_string("logdir", None, "Run directory (default runs/<config>-<time>); reusing one resumes.")
_SERVER_ADDRESS = flags.DEFINE_string(
  "server_address",
  "localhost:8686",
  "Learner address: 'host:port' (TCP, loopback by default) or 'unix:/path'. Learner and actor modes.",
)
_TASK = flags.DEFINE_integer("task", 0, "Actor index in [0, num_actors). Actor mode.")

_OWN_FLAGS = ("--mode", "--logdir", "--server_address", "--task")


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
    seed_config.validate(config)
  except ValueError as e:
    raise app.UsageError(str(e)) from e
  logdir = _LOGDIR.value or _default_logdir(config_flags.get_config_filename(flags.FLAGS["config"]))
  if _MODE.value == "local":
    from seed.runtime import launcher  # pylint: disable=g-import-not-at-top

    logging.info("local run: learner + %d actors, logdir %s", config.num_actors, logdir)
    return launcher.run(config, _config_args(sys.argv[1:]), os.path.abspath(logdir))
  if _MODE.value == "learner":
    from seed.runtime import learner  # pylint: disable=g-import-not-at-top

    learner.run(config, logdir, _SERVER_ADDRESS.value)
    return 0
  from seed.runtime import actor  # pylint: disable=g-import-not-at-top

  actor.run(config, _TASK.value, _SERVER_ADDRESS.value)
  return 0


if __name__ == "__main__":
  flags.mark_flag_as_required("config")
  app.run(main)
