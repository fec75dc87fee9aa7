"""What the container image (gcp/Dockerfile) holds: the repository at /seed, its working directory."""

from __future__ import annotations

import os

from absl import flags
from ml_collections import config_flags

WORKDIR = "/seed"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def config_path(path: str) -> str:
  """A config file's path inside the image (relative to WORKDIR); ValueError if the image would not have it."""
  relative = os.path.relpath(os.path.abspath(path), REPO)
  if relative.startswith(".."):
    raise ValueError(f"--config {path} is outside the repository, so the image does not hold it; put it in configs/")
  return relative


def config_flag_path() -> str:
  """config_path of the --config flag (a config_flags.DEFINE_config_file flag)."""
  return config_path(config_flags.get_config_filename(flags.FLAGS["config"]))
