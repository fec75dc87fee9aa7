"""Reading a run directory's files (metrics.jsonl, episodes.csv, config.json) while the run writes them.

Local paths are read with plain Python; a URL (gs://, ram://) through tf.io.gfile, TensorFlow
being imported only then. Used by seed.plot, the soak, the e2e benchmarks and the tests.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable


def accessors(path: str) -> tuple[Callable[[str], bool], Callable[[str], bool], Callable[[str], str]]:
  """(isdir, exists, read_text) for `path`'s file system."""
  if "://" not in path:

    def read(p: str) -> str:
      with open(p, encoding="utf-8") as f:
        return f.read()

    return os.path.isdir, os.path.exists, read
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  return tf.io.gfile.isdir, tf.io.gfile.exists, lambda p: tf.io.gfile.GFile(p).read()


def parse_metrics(text: str, where: str = "metrics.jsonl") -> list[dict]:
  """The rows of metrics.jsonl text. A last line without its newline is being written: left out.
  Any other line that is not a JSON object is damage, not a race: ValueError naming it."""
  lines = text.split("\n")
  complete = lines[:-1]  # the text after the last newline: "" or a row still being written
  rows = []
  for number, line in enumerate(complete, 1):
    if not line.strip():
      continue
    try:
      row = json.loads(line)
    except json.JSONDecodeError as e:
      raise ValueError(f"{where}:{number}: not a JSON row ({e.msg})") from None
    if not isinstance(row, dict):
      raise ValueError(f"{where}:{number}: not a JSON object")
    rows.append(row)
  return rows


def read_metrics(logdir: str | os.PathLike) -> list[dict]:
  """The learner's metrics rows of a run directory so far ([] before the first)."""
  logdir = os.fspath(logdir)
  _, exists, read = accessors(logdir)
  path = os.path.join(logdir, "metrics.jsonl")
  if not exists(path):
    return []
  return parse_metrics(read(path), path)
