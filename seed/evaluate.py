"""Plays a trained policy for a few episodes and reports its returns.

python -m seed.evaluate --logdir DIR [--source=export|checkpoint] [--export_dir PATH]
    [--checkpoint PATH] [--episodes 10] [--seed 0] [--greedy] [--video PATH.mp4|.gif]

The policy comes from the newest SavedModel in DIR/export (default), or from a
checkpoint: the agent is rebuilt from DIR/config.json and the latest checkpoint
in DIR/checkpoints (or --checkpoint) is restored into it. Either way the
environment is the run's (DIR/config.json's `env`), one env, episode i reset
with seed + i, the recurrent state fed back step by step.

Actions: --greedy takes the policy's `greedy_action`; otherwise a discrete
action is sampled from the policy's logits with a generator seeded by (seed,
episode). (The SavedModel's own sampled `action` output is not used there: its
random op seeds were fixed when it was exported, so --seed could not change
it.) The same seed therefore gives the same episodes on a rerun, from an export
or a checkpoint. Continuous policies (no logits) use their sampled `action`.

--video records the first --video_episodes episodes from the env's
rgb_array rendering, with imageio if installed, else Pillow (.gif) or OpenCV
(.mp4 and other containers OpenCV writes).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys
from collections.abc import Callable
from typing import Any

import ml_collections
import numpy as np
import tensorflow as tf
from absl import app, flags

import envs

_INSTALL_HINT = "pip install imageio imageio-ffmpeg"


class EvaluateError(Exception):
  """A problem with the user's input (paths, flags, missing optional packages)."""


# --- locating the run's config and model ----------------------------------------------------------


def load_config(logdir: str) -> ml_collections.ConfigDict:
  """The run's config, read back from DIR/config.json.

  Placeholders saved as null come back as None and tuples as lists; both are
  fine for building envs and agents.
  """
  _check_logdir(logdir)
  path = os.path.join(logdir, "config.json")
  if not os.path.isfile(path):
    raise EvaluateError(f"no config.json in {logdir} (the learner writes {path} when a run starts)")
  with open(path, encoding="utf-8") as f:
    try:
      return ml_collections.ConfigDict(json.load(f))
    except json.JSONDecodeError as e:
      raise EvaluateError(f"{path} is not valid JSON: {e}") from e


def _check_logdir(logdir: str) -> None:
  if not os.path.isdir(logdir):
    raise EvaluateError(f"no run directory at {logdir}")


def _is_saved_model(path: str) -> bool:
  return os.path.isfile(os.path.join(path, "saved_model.pb"))


def find_export(logdir: str, path: str | None = None) -> str:
  """`path` if it is a SavedModel, else the newest numeric folder under it (default DIR/export)."""
  root = path or os.path.join(logdir, "export")
  if _is_saved_model(root):
    return root
  if not os.path.isdir(root):
    raise EvaluateError(
      f"no export directory at {root} (the learner writes one at each checkpoint and at exit; "
      f"--source=checkpoint evaluates a checkpoint instead)"
    )
  steps = [int(d) for d in os.listdir(root) if re.fullmatch(r"\d+", d) and _is_saved_model(os.path.join(root, d))]
  if not steps:
    raise EvaluateError(
      f"no SavedModel in {root} (expected numbered folders with a saved_model.pb; "
      f"--source=checkpoint evaluates a checkpoint instead)"
    )
  return os.path.join(root, str(max(steps)))


def find_checkpoint(logdir: str, path: str | None = None) -> str:
  """`path` (a checkpoint prefix, or a directory: its latest checkpoint), default DIR/checkpoints."""
  root = path or os.path.join(logdir, "checkpoints")
  if path is None and not os.path.isdir(root):
    raise EvaluateError(f"no checkpoint in {root} (no such directory)")
  if os.path.isdir(root):
    latest = tf.train.latest_checkpoint(root)
    if latest is None:
      raise EvaluateError(f"no checkpoint in {root}")
    return latest
  if not os.path.isfile(root + ".index"):
    raise EvaluateError(f"no checkpoint at {root} (give a directory or a prefix such as .../checkpoints/ckpt-10)")
  return root


# --- the policy, from either source ---------------------------------------------------------------


class _Policy:
  """One step of a `serving_default` function: observation and state in, outputs and state out."""

  def __init__(
    self,
    fn: Callable[..., dict[str, tf.Tensor]],
    by_name: dict[str, tf.TensorSpec],
    keyword_call: bool,
    description: str,
  ):
    if "observation" not in by_name:
      raise EvaluateError(f"{description}: the policy has no 'observation' input (inputs: {sorted(by_name)})")
    self.description = description
    self._fn = fn
    self._keyword_call = keyword_call
    self._obs_spec = by_name["observation"]
    names = [n for n in by_name if re.fullmatch(r"state_\d+", n)]
    self._state_names = sorted(names, key=lambda n: int(n.split("_")[1]))
    self._state_specs = [by_name[n] for n in self._state_names]

  def initial_state(self) -> list[np.ndarray]:
    return [np.zeros([1, *s.shape[1:]], s.dtype.as_numpy_dtype) for s in self._state_specs]

  def __call__(self, observation: np.ndarray, state: list[np.ndarray]) -> tuple[dict, list[np.ndarray]]:
    """Returns (outputs for the one observation, new state)."""
    obs = np.asarray(observation, self._obs_spec.dtype.as_numpy_dtype)[None]
    if self._keyword_call:
      out = self._fn(observation=obs, **dict(zip(self._state_names, state)))
    else:
      out = self._fn(obs, *state)
    return {k: v.numpy()[0] for k, v in out.items()}, [out[n].numpy() for n in self._state_names]


def _export_policy(export_dir: str) -> _Policy:
  model = tf.saved_model.load(export_dir)
  if "serving_default" not in model.signatures:
    raise EvaluateError(f"{export_dir} has no serving_default signature")
  fn = model.signatures["serving_default"]
  _, kwargs = fn.structured_input_signature
  policy = _Policy(fn, dict(kwargs), keyword_call=True, description=f"export {export_dir}")
  policy.model = model  # keeps the loaded variables alive as long as the function
  return policy


def _checkpoint_policy(config: ml_collections.ConfigDict, checkpoint: str) -> tuple[_Policy, int]:
  from agents import registry  # pylint: disable=g-import-not-at-top  (only this source needs the agent code)

  observation_space, action_space = envs.env_spaces(config.env, seed=config.seed)
  agent = registry.make_agent(config, observation_space, action_space)
  train_steps = tf.Variable(0, dtype=tf.int64)
  ckpt = tf.train.Checkpoint(agent=agent, train_steps=train_steps)
  try:
    ckpt.restore(checkpoint).expect_partial().assert_existing_objects_matched()
  except (AssertionError, ValueError, tf.errors.OpError) as e:
    raise EvaluateError(f"cannot restore {checkpoint} into the agent built from config.json: {e}") from e
  module = agent.policy()
  fn = module.serving_default
  # Positional call: the inputs are (observation, state_0, state_1, ...) in this order.
  policy = _Policy(
    fn, {s.name: s for s in fn.input_signature}, keyword_call=False, description=f"checkpoint {checkpoint}"
  )
  policy.model = module
  return policy, int(train_steps.numpy())


# --- video ----------------------------------------------------------------------------------------


def _have(module: str) -> bool:
  try:
    return importlib.util.find_spec(module) is not None
  except (ImportError, ValueError):  # a module set to None in sys.modules counts as missing
    return False


def _gif_frame_ms(fps: float) -> int:
  """GIF frame time: whole centiseconds (the format's unit), at least 20 ms (browsers slow faster ones)."""
  return max(20, 10 * int(round(100 / fps)))


class _GifWriter:
  """Collects frames, writes an animated GIF with Pillow on close."""

  def __init__(self, path: str, fps: float):
    self._path, self._fps, self._frames = path, fps, []

  def append(self, frame: np.ndarray) -> None:
    self._frames.append(frame)

  def close(self) -> None:
    from PIL import Image  # pylint: disable=g-import-not-at-top

    if not self._frames:
      return
    images = [Image.fromarray(f) for f in self._frames]
    images[0].save(self._path, save_all=True, append_images=images[1:], loop=0, duration=_gif_frame_ms(self._fps))


class _ImageioWriter:
  """Streams frames to an imageio writer (ffmpeg for video containers)."""

  def __init__(self, path: str, fps: float):
    import imageio.v2 as imageio  # pylint: disable=g-import-not-at-top

    if path.lower().endswith(".gif"):
      self._frames, self._path, self._fps, self._writer = [], path, fps, None
    else:
      # macro_block_size=2: keep the frame size (Atari's 210x160) instead of padding to 16.
      self._writer = imageio.get_writer(path, fps=fps, macro_block_size=2)

  def append(self, frame: np.ndarray) -> None:
    if self._writer is None:
      self._frames.append(frame)
    else:
      self._writer.append_data(frame)

  def close(self) -> None:
    if self._writer is not None:
      self._writer.close()
    elif self._frames:
      import imageio.v3 as iio  # pylint: disable=g-import-not-at-top

      iio.imwrite(self._path, np.stack(self._frames), extension=".gif", loop=0, duration=_gif_frame_ms(self._fps))


class _OpenCVWriter:
  """Streams frames to an OpenCV VideoWriter (mp4v for .mp4)."""

  def __init__(self, path: str, fps: float):
    self._path, self._fps, self._writer = path, fps, None

  def append(self, frame: np.ndarray) -> None:
    import cv2  # pylint: disable=g-import-not-at-top

    if self._writer is None:
      ext = os.path.splitext(self._path)[1].lower()
      fourcc = {".mp4": "mp4v", ".avi": "MJPG", ".mkv": "mp4v", ".mov": "mp4v"}.get(ext, "mp4v")
      self._writer = cv2.VideoWriter(
        self._path, cv2.VideoWriter_fourcc(*fourcc), self._fps, (frame.shape[1], frame.shape[0])
      )
      if not self._writer.isOpened():
        raise EvaluateError(f"OpenCV cannot write {self._path}; {_INSTALL_HINT}, or write a .gif")
    self._writer.write(np.ascontiguousarray(frame[..., ::-1]))  # RGB -> BGR

  def close(self) -> None:
    if self._writer is not None:
      self._writer.release()


def _video_writer_class(path: str):
  """The writer for `path`'s format, chosen before any episode is played."""
  ext = os.path.splitext(path)[1].lower()
  if not ext:
    raise EvaluateError(f"--video {path}: give a file name ending in .mp4 or .gif")
  if _have("imageio") and (ext == ".gif" or _have("imageio_ffmpeg")):
    return _ImageioWriter
  if ext == ".gif":
    if _have("PIL"):
      return _GifWriter
    raise EvaluateError(f"writing {path} needs imageio or Pillow: {_INSTALL_HINT}")
  if _have("cv2"):
    return _OpenCVWriter
  raise EvaluateError(f"writing {path} needs imageio with its ffmpeg plugin: {_INSTALL_HINT} (or write a .gif)")


def _render(env) -> np.ndarray:
  try:
    frame = env.render()
  except Exception as e:  # pylint: disable=broad-except  (gymnasium's DependencyNotInstalled, ...)
    raise EvaluateError(f"cannot render {env.spec.id if env.spec else env} for --video: {e}") from e
  if not isinstance(frame, np.ndarray) or frame.ndim != 3:
    raise EvaluateError(f"{env.spec.id if env.spec else env} did not render an RGB frame for --video")
  return frame


# --- evaluation -----------------------------------------------------------------------------------


def _env_config(config: ml_collections.ConfigDict, render: bool) -> ml_collections.ConfigDict:
  env_config = ml_collections.ConfigDict(config.env.to_dict())
  if render:
    kwargs = env_config.get("kwargs")
    kwargs = kwargs.to_dict() if isinstance(kwargs, ml_collections.ConfigDict) else dict(kwargs or {})
    kwargs["render_mode"] = "rgb_array"
    env_config.kwargs = kwargs
  return env_config


def _play(
  env, policy: _Policy, seed: int, greedy: bool, rng: np.random.Generator, frames: Callable[[np.ndarray], Any] | None
) -> tuple[float, int]:
  observation, _ = env.reset(seed=seed)
  if frames:
    frames(_render(env))
  state = policy.initial_state()
  total, length, done = 0.0, 0, False
  while not done:
    out, state = policy(observation, state)
    if greedy:
      action = out["greedy_action"]
    elif "logits" in out:  # Gumbel-max: an exact sample of softmax(logits)
      logits = out["logits"]
      action = int(np.argmax(logits.astype(np.float64) + rng.gumbel(size=logits.shape)))
    else:  # continuous policies sample in the graph
      action = out["action"]
    observation, reward, terminated, truncated, _ = env.step(action)
    total += float(reward)
    length += 1
    done = terminated or truncated
    if frames:
      frames(_render(env))
  return total, length


def evaluate(
  logdir: str,
  episodes: int = 10,
  seed: int = 0,
  greedy: bool = False,
  source: str = "export",
  path: str | None = None,
  video: str | None = None,
  video_episodes: int = 1,
  verbose: bool = True,
) -> list[tuple[float, int]]:
  """Plays `episodes` episodes of the run's policy; returns (return, length) per episode.

  source: "export" (a SavedModel: `path` or the newest under DIR/export) or
    "checkpoint" (the agent rebuilt from DIR/config.json, restored from `path`
    or the latest checkpoint in DIR/checkpoints).
  video: a file (.mp4, .gif) to record the first `video_episodes` episodes to.
  Raises EvaluateError for missing paths, bad arguments or a missing video writer.
  """
  log = print if verbose else (lambda *a, **k: None)
  if episodes < 1:
    raise EvaluateError(f"episodes must be >= 1, got {episodes}")
  if seed < 0:
    raise EvaluateError(f"seed must be >= 0, got {seed}")
  if source not in ("export", "checkpoint"):
    raise EvaluateError(f"source must be 'export' or 'checkpoint', got {source!r}")
  config = load_config(logdir)
  model_path = find_export(logdir, path) if source == "export" else find_checkpoint(logdir, path)
  writer_class = _video_writer_class(video) if video else None

  tf.random.set_seed(seed)
  if source == "export":
    policy = _export_policy(model_path)
    step = os.path.basename(os.path.normpath(model_path))
    log(f"evaluating {policy.description}" + (f" (train step {step})" if step.isdigit() else ""), flush=True)
  else:
    policy, step = _checkpoint_policy(config, model_path)
    log(f"evaluating {policy.description} (train step {step})", flush=True)

  env = envs.make(_env_config(config, render=bool(video)), seed)
  writer = None
  results = []
  try:
    if video:
      fps = float(env.metadata.get("render_fps") or 30)
      fps /= envs.frame_skip(config.env)  # one frame per agent step: keep real-time speed
      os.makedirs(os.path.dirname(os.path.abspath(video)), exist_ok=True)
      writer = writer_class(video, fps)
    for i in range(episodes):
      record = writer.append if writer is not None and i < video_episodes else None
      ret, length = _play(env, policy, seed + i, greedy, np.random.default_rng([seed, i]), record)
      results.append((ret, length))
      log(f"episode {i + 1}/{episodes}: return {ret:g}, length {length}", flush=True)
  finally:
    env.close()
    if writer is not None:
      writer.close()
  returns = np.array([r for r, _ in results])
  lengths = np.array([n for _, n in results])
  log(
    f"{episodes} episodes ({'greedy' if greedy else 'sampled'}, seed {seed}): return mean {returns.mean():.2f} "
    f"std {returns.std():.2f} min {returns.min():g} max {returns.max():g}; length mean {lengths.mean():.1f}",
    flush=True,
  )
  if video:
    log(f"video of {min(video_episodes, episodes)} episode(s) written to {video}", flush=True)
  return results


# --- command line ---------------------------------------------------------------------------------

_LOGDIR = flags.DEFINE_string("logdir", None, "Run directory (holds config.json, export/, checkpoints/).")
_SOURCE = flags.DEFINE_enum(
  "source",
  "export",
  ["export", "checkpoint"],
  "Evaluate a SavedModel export or a checkpoint (agent rebuilt from config.json).",
)
_EXPORT_DIR = flags.DEFINE_string(
  "export_dir", None, "A SavedModel, or a folder of numbered ones (newest used). Default DIR/export."
)
_CHECKPOINT = flags.DEFINE_string(
  "checkpoint",
  None,
  "A checkpoint prefix or folder (latest used). Default DIR/checkpoints. Implies --source=checkpoint.",
)
_EPISODES = flags.DEFINE_integer("episodes", 10, "Episodes to play.")
_SEED = flags.DEFINE_integer("seed", 0, "Episode i is reset with seed + i; also seeds action sampling.")
_GREEDY = flags.DEFINE_bool("greedy", False, "Take the most likely action instead of sampling.")
_VIDEO = flags.DEFINE_string("video", None, "Record episodes to this .mp4 or .gif file.")
_VIDEO_EPISODES = flags.DEFINE_integer("video_episodes", 1, "How many of the first episodes --video records.")


def _source_and_path() -> tuple[str, str | None]:
  source_given = flags.FLAGS["source"].present
  if _EXPORT_DIR.value and _CHECKPOINT.value:
    raise app.UsageError("give --export_dir or --checkpoint, not both")
  if _CHECKPOINT.value:
    if source_given and _SOURCE.value != "checkpoint":
      raise app.UsageError("--checkpoint needs --source=checkpoint")
    return "checkpoint", _CHECKPOINT.value
  if _EXPORT_DIR.value:
    if _SOURCE.value != "export":
      raise app.UsageError("--export_dir needs --source=export")
    return "export", _EXPORT_DIR.value
  return _SOURCE.value, None


def main(argv: list[str]) -> int:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  source, path = _source_and_path()
  try:
    evaluate(
      _LOGDIR.value,
      episodes=_EPISODES.value,
      seed=_SEED.value,
      greedy=_GREEDY.value,
      source=source,
      path=path,
      video=_VIDEO.value,
      video_episodes=_VIDEO_EPISODES.value,
    )
  except EvaluateError as e:
    print(f"error: {e}", file=sys.stderr, flush=True)
    return 1
  return 0


if __name__ == "__main__":
  flags.mark_flag_as_required("logdir")
  app.run(main)
