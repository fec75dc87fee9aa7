"""Environment construction from configs: gymnasium envs, Atari preprocessing, vectors."""

from envs import catch
from envs.catch import CATCH_ID, Catch
from envs.factory import atari_config, env_config, env_spaces, frame_skip, is_atari, make, make_vector

# On import, so `seed/Catch-v0` works in any config without naming a module (idempotent).
catch.register()

__all__ = [
  "CATCH_ID",
  "Catch",
  "atari_config",
  "env_config",
  "frame_skip",
  "is_atari",
  "make",
  "make_vector",
  "env_spaces",
]
