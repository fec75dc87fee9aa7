"""Builds gymnasium environments (and vectors of them) from a ConfigDict.

Any gymnasium id works, including a user's own env through gymnasium's
``"package.module:EnvName-v0"`` syntax (the module is imported, and registers
the id, on first use). Ids starting with ``ALE/`` get the standard Atari
preprocessing of the DQN/IMPALA/SEED line of work, built from gymnasium's own
wrappers: no-op starts, frame skip with max-pooling, 84x84 grayscale, frame
stacking, and channels-last uint8 observations of shape (84, 84, 4).
"""

from __future__ import annotations

import re
from typing import Any

import gymnasium
import ml_collections
import numpy as np
from gymnasium import spaces
from ml_collections import config_dict

ATARI_PREFIX = "ALE/"

# Keys of gymnasium.make's kwargs that `config.atari` owns for Atari envs; a
# second way to set them would silently disagree with the preprocessing.
_ATARI_OWNED_KWARGS = (
  "frameskip",
  "repeat_action_probability",
  "full_action_space",
  "max_num_frames_per_episode",
  "obs_type",
)


def atari_config() -> ml_collections.ConfigDict:
  """Defaults for the Atari preprocessing (IMPALA / SEED RL settings)."""
  c = ml_collections.ConfigDict()
  # Probability that the emulator repeats the previous action instead of the
  # chosen one ("sticky actions", Machado et al. 2018). 0.0 as in the IMPALA
  # and SEED papers; ALE v5's own default is 0.25.
  c.repeat_action_probability = 0.0
  # All 18 joystick actions instead of the game's minimal set (6 for Pong).
  c.full_action_space = False
  # Emulator frames (not agent steps) after which an episode is truncated:
  # 108000 frames = 30 minutes at 60 Hz. Ends with truncated=True.
  c.max_episode_frames = 108_000
  # On reset, take a random number in [1, noop_max] of NOOP actions so starts
  # differ; 0 turns it off.
  c.noop_max = 30
  # Emulator frames per agent step; the action is repeated and the observation
  # is the pixel-wise max of the last two frames (removes sprite flicker).
  c.frame_skip = 4
  # Side of the square the screen is resized to (area interpolation).
  c.screen_size = 84
  # One luminance channel per frame instead of RGB (3 channels per frame).
  c.grayscale = True
  # End the episode (terminated=True) whenever a life is lost. Off, as
  # recommended by Machado et al. 2018: it leaks game knowledge to the agent.
  c.terminal_on_life_loss = False
  # Number of most recent frames stacked along the channel axis.
  c.frame_stack = 4
  # Actors step their envs in ale_py's C++ vector env (the same preprocessing without
  # Python per frame: ~23% less CPU per frame) instead of gymnasium's wrappers. Used when
  # the settings allow it: grayscale, no env.kwargs and no env.max_episode_steps.
  c.native_vector = True
  return c


def env_config(env_id: str) -> ml_collections.ConfigDict:
  """Config for `make`: the gymnasium id, its kwargs and the episode limits."""
  c = ml_collections.ConfigDict()
  c.id = env_id  # any gymnasium id, e.g. "CartPole-v1", "ALE/Pong-v5", "mod:Env-v0"
  c.kwargs = {}  # passed on to gymnasium.make
  # Agent-step limit (gymnasium's TimeLimit, truncated=True); None keeps the
  # env's registered default. A placeholder so `--config.x=N` can set an int.
  c.max_episode_steps = config_dict.placeholder(int)
  c.atari = atari_config()  # used only when is_atari(c)
  return c


def is_atari(config: ml_collections.ConfigDict) -> bool:
  return config.id.startswith(ATARI_PREFIX)


def env_spaces(config: ml_collections.ConfigDict, seed: int | None = None) -> tuple[gymnasium.Space, gymnasium.Space]:
  """(observation_space, action_space) of the env `make(config)` builds."""
  env = make(config, seed=seed)
  try:
    return env.observation_space, env.action_space
  finally:
    env.close()


def frame_skip(config: ml_collections.ConfigDict) -> int:
  """Environment frames per agent step: the Atari frame skip, 1 for every other env."""
  return config.atari.frame_skip if is_atari(config) else 1


def _kwargs(config: ml_collections.ConfigDict) -> dict[str, Any]:
  kw = config.get("kwargs") or {}
  return kw.to_dict() if isinstance(kw, ml_collections.ConfigDict) else dict(kw)


def _stack_channels_last(env: gymnasium.Env) -> gymnasium.Env:
  """(stack, H, W[, C]) frames -> (H, W, stack * C), oldest frame first."""
  src = env.observation_space
  assert isinstance(src, spaces.Box)
  stack, h, w = src.shape[:3]
  c = src.shape[3] if len(src.shape) == 4 else 1
  shape = (h, w, stack * c)
  space = spaces.Box(low=0, high=255, shape=shape, dtype=np.uint8)

  def to_channels_last(obs: np.ndarray) -> np.ndarray:
    obs = obs.reshape(stack, h, w, c)
    # Contiguous copy: consumers (vector batching, tf.convert) want a plain array.
    return np.ascontiguousarray(obs.transpose(1, 2, 0, 3)).reshape(shape)

  return gymnasium.wrappers.TransformObservation(env, to_channels_last, space)


def _make_atari(config: ml_collections.ConfigDict) -> gymnasium.Env:
  import ale_py  # pylint: disable=g-import-not-at-top  (only Atari needs the ROMs)

  gymnasium.register_envs(ale_py)

  a = config.atari
  kwargs = _kwargs(config)
  clash = sorted(set(kwargs) & set(_ATARI_OWNED_KWARGS))
  if clash:
    raise ValueError(f"{config.id}: set {clash} through config.atari, not config.kwargs")
  env = gymnasium.make(
    config.id,
    # AtariPreprocessing skips frames itself (and needs the raw frames to
    # max-pool), so the emulator must step one frame at a time.
    frameskip=1,
    repeat_action_probability=a.repeat_action_probability,
    full_action_space=a.full_action_space,
    # ALE reports this limit as truncation, not termination.
    max_num_frames_per_episode=a.max_episode_frames,
    # The wrapper reads the screen from the ALE itself; asking the base env
    # for grayscale just avoids an unused RGB copy on every emulator frame.
    obs_type="grayscale" if a.grayscale else "rgb",
    **kwargs,
  )
  env = gymnasium.wrappers.AtariPreprocessing(
    env,
    noop_max=a.noop_max,
    frame_skip=a.frame_skip,
    screen_size=a.screen_size,
    terminal_on_life_loss=a.terminal_on_life_loss,
    grayscale_obs=a.grayscale,
    grayscale_newaxis=False,
    scale_obs=False,  # uint8 keeps replay/transport 4x smaller than float32
  )
  # "reset" padding: the first stack repeats the reset frame (no black frames).
  env = gymnasium.wrappers.FrameStackObservation(env, a.frame_stack, padding_type="reset")
  env = _stack_channels_last(env)
  if config.max_episode_steps is not None:
    # Outermost, so the limit counts agent steps rather than emulator frames
    # (gymnasium.make would put it under the frame skip).
    env = gymnasium.wrappers.TimeLimit(env, config.max_episode_steps)
  return env


def make(config: ml_collections.ConfigDict, seed: int | None = None) -> gymnasium.Env:
  """Creates the env described by `config` (see `env_config`).

  With a seed, the env's RNG (via a first reset) and its action and observation
  spaces are seeded, so later unseeded resets are reproducible too. Unknown ids
  raise gymnasium's error, which names the id.
  """
  if is_atari(config):
    env = _make_atari(config)
  else:
    env = gymnasium.make(config.id, max_episode_steps=config.max_episode_steps, **_kwargs(config))
  if seed is not None:
    env.reset(seed=seed)
    env.action_space.seed(seed)
    env.observation_space.seed(seed)
  return env


def make_vector(
  config: ml_collections.ConfigDict, num_envs: int, seed: int | None = None
) -> gymnasium.vector.VectorEnv:
  """`num_envs` copies of `make(config, seed + i)` stepped in this process.

  Autoreset is NEXT_STEP (explicitly, not relying on the default): the step
  after an episode's end ignores the action and returns the reset observation
  with reward 0 and terminated = truncated = False.
  """
  if num_envs < 1:
    raise ValueError(f"num_envs must be >= 1, got {num_envs}")
  if _native_atari_vector_ok(config):
    return _native_atari_vector(config, num_envs, seed)
  fns = [lambda i=i: make(config, None if seed is None else seed + i) for i in range(num_envs)]
  return gymnasium.vector.SyncVectorEnv(fns, autoreset_mode=gymnasium.vector.AutoresetMode.NEXT_STEP)


def _native_atari_vector_ok(config: ml_collections.ConfigDict) -> bool:
  """Whether ale_py's vector env reproduces `make`'s preprocessing for this config."""
  if not is_atari(config) or not config.atari.native_vector:
    return False
  return bool(
    re.fullmatch(r"ALE/\w+-v5", config.id)
    and config.atari.grayscale
    and not _kwargs(config)
    and config.max_episode_steps is None
  )


def _native_atari_vector(
  config: ml_collections.ConfigDict, num_envs: int, seed: int | None
) -> gymnasium.vector.VectorEnv:
  from ale_py.vector_env import AtariVectorEnv  # pylint: disable=g-import-not-at-top

  a = config.atari
  game = re.sub(
    r"(?<!^)(?=[A-Z])", "_", config.id[len(ATARI_PREFIX) : -len("-v5")]
  ).lower()  # SpaceInvaders -> space_invaders
  env = AtariVectorEnv(
    game,
    num_envs,
    num_threads=1,  # an actor is one process among several on the host: one core's worth each
    max_num_frames_per_episode=a.max_episode_frames,
    repeat_action_probability=a.repeat_action_probability,
    full_action_space=a.full_action_space,
    autoreset_mode=gymnasium.vector.AutoresetMode.NEXT_STEP,
    img_height=a.screen_size,
    img_width=a.screen_size,
    grayscale=True,
    stack_num=a.frame_stack,
    frameskip=a.frame_skip,
    maxpool=True,
    noop_max=a.noop_max,
    episodic_life=a.terminal_on_life_loss,
    reward_clipping=False,  # the agent clips (config.agent.reward_clip), as with `make`
    use_fire_reset=False,  # `make` does not press FIRE on reset either
  )
  if seed is not None:
    env.reset(seed=seed)
  return _ChannelsLastStack(env)


class _ChannelsLastStack(gymnasium.vector.VectorWrapper):
  """ale_py's vector env with `make`'s observations: (H, W, stack) with the oldest frame first,
  and a new episode's stack padded with its reset frame (ale_py pads with black frames)."""

  def __init__(self, env: gymnasium.vector.VectorEnv):
    super().__init__(env)
    n, stack, h, w = env.observation_space.shape
    self.single_observation_space = spaces.Box(low=0, high=255, shape=(h, w, stack), dtype=np.uint8)
    self.observation_space = gymnasium.vector.utils.batch_space(self.single_observation_space, n)
    self._age = np.zeros(n, np.int64)  # agent steps since each env's reset observation
    self._ended = np.zeros(n, bool)

  def reset(self, **kwargs):
    observation, info = self.env.reset(**kwargs)
    self._age[:] = 0
    self._ended[:] = False
    return self._observation(observation), info

  def step(self, actions):
    observation, reward, terminated, truncated, info = self.env.step(actions)
    self._age += 1
    self._age[self._ended] = 0  # next-step autoreset: this step returned the reset observation
    self._ended = terminated | truncated
    return self._observation(observation), reward, terminated, truncated, info

  def _observation(self, observation: np.ndarray) -> np.ndarray:
    stack = observation.shape[1]
    young = np.flatnonzero(self._age < stack - 1)
    if young.size:
      observation = np.array(observation)  # the env's own buffer is not ours to write
      for i in young:
        pad = stack - 1 - self._age[i]
        observation[i, :pad] = observation[i, pad]
    return np.ascontiguousarray(observation.transpose(0, 2, 3, 1))
