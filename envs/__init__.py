"""Environment construction from configs: gymnasium envs, Atari preprocessing, vectors."""

from envs.factory import atari_config, env_config, env_spaces, frame_skip, is_atari, make, make_vector

__all__ = ["atari_config", "env_config", "frame_skip", "is_atari", "make", "make_vector", "env_spaces"]
