"""The served models: versions on disk, loaded servables and their signatures.

ModelManager loads and unloads versions as each model's version policy asks;
ModelServer's watcher calls its poll() for hot reload.
"""

from __future__ import annotations

import dataclasses
import os
import re
import threading
from collections.abc import Callable
from typing import Protocol

import numpy as np
import tensorflow as tf
from absl import logging
from google.protobuf import text_format
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2
from tensorflow_serving.apis import get_model_status_pb2

import grpc
from seed.serving.config import ModelConfig
from seed.serving.errors import invalid, not_found

DEFAULT_SIGNATURE = "serving_default"
State = get_model_status_pb2.ModelVersionStatus.State


def _model_file(path: str) -> str | None:
  for name in ("saved_model.pb", "saved_model.pbtxt"):
    if os.path.isfile(os.path.join(path, name)):
      return os.path.join(path, name)
  return None


def scan_versions(base_path: str) -> dict[int, str]:
  """Complete versions under base_path: {version: folder}. Partial exports are not versions."""
  try:
    entries = os.listdir(base_path)
  except OSError:
    return {}
  found = {}
  for entry in entries:
    path = os.path.join(base_path, entry)
    if re.fullmatch(r"\d+", entry) and os.path.isdir(path) and _model_file(path):
      found[int(entry)] = path
  return found


def _tree_stamp(path: str) -> tuple:
  """Changes whenever a file under path changes (decides when a failed load is retried)."""
  stamp = []
  for root, _, files in os.walk(path):
    for f in files:
      try:
        st = os.stat(os.path.join(root, f))
      except OSError:
        continue
      stamp.append((os.path.relpath(os.path.join(root, f), path), st.st_size, st.st_mtime_ns))
  return tuple(sorted(stamp))


@dataclasses.dataclass
class Signature:
  name: str
  fn: Callable[..., dict]
  inputs: dict  # name -> TensorSpec, in the signature's order
  outputs: dict  # name -> TensorSpec
  batchable: bool  # every input has an open leading dimension


def _read_signature_defs(path: str) -> dict[str, meta_graph_pb2.SignatureDef]:
  file = _model_file(path)
  proto = saved_model_pb2.SavedModel()
  with open(file, "rb") as f:
    data = f.read()
  if file.endswith(".pbtxt"):
    text_format.Parse(data.decode(), proto)
  else:
    proto.ParseFromString(data)
  graphs = [g for g in proto.meta_graphs if "serve" in g.meta_info_def.tags] or list(proto.meta_graphs)
  return dict(graphs[0].signature_def) if graphs else {}


class Servable:
  """One loaded version of a model."""

  def __init__(self, model: str, version: int, path: str):
    self.model = model
    self.version = version
    self.path = path
    self.loaded = tf.saved_model.load(path, tags=["serve"])
    self.signature_defs = _read_signature_defs(path)
    self.signatures: dict[str, Signature] = {}
    for name, fn in self.loaded.signatures.items():
      inputs = dict(fn.structured_input_signature[1])
      outputs = {k: tf.TensorSpec(v.shape, v.dtype, k) for k, v in fn.structured_outputs.items()}
      batchable = bool(inputs) and all(s.shape.rank and s.shape[0] is None for s in inputs.values())
      self.signatures[name] = Signature(name, fn, inputs, outputs, batchable)
    self._warm_up()

  def _warm_up(self) -> None:
    """One call per signature with a batch of zeros, so the first request is not the slow one."""
    for sig in self.signatures.values():
      if not all(s.shape.rank is not None for s in sig.inputs.values()):
        continue
      feed = {
        k: np.zeros([1 if d is None else d for d in s.shape], s.dtype.as_numpy_dtype)
        if s.dtype != tf.string
        else np.full([1 if d is None else d for d in s.shape], b"", object)
        for k, s in sig.inputs.items()
      }
      try:
        sig.fn(**feed)
      except Exception:  # pylint: disable=broad-except  (zeros may be invalid input: fine)
        pass


class _Model:
  """A configured model: its loaded versions and the state of every version seen."""

  def __init__(self, config: ModelConfig):
    self.config = config
    self.servables: dict[int, Servable] = {}
    self.states: dict[int, tuple[int, grpc.StatusCode, str]] = {}
    self.failed: dict[int, tuple] = {}  # version -> tree stamp of the failed attempt

  @property
  def labels(self) -> dict[str, int]:
    return dict(self.config.labels)


class VersionListener(Protocol):
  """Told of every change to the served set (the C++ gRPC front end mirrors it)."""

  def configured(self, configs: list[ModelConfig]) -> None: ...

  def loaded(self, servable: Servable) -> None:
    """Before the version is reported AVAILABLE; raising fails its load."""

  def unloaded(self, servable: Servable) -> None:
    """After the version left the manager; returns once nothing else runs it."""


class ModelManager:
  """The served models: loading, unloading and looking up versions (thread-safe)."""

  def __init__(self, configs: list[ModelConfig], listener: VersionListener | None = None):
    self._lock = threading.Lock()  # guards _models and their dicts
    self._poll_lock = threading.Lock()  # one poll (load/unload pass) at a time
    self._models: dict[str, _Model] = {}
    self._listener = listener
    self.set_configs(configs)

  def set_configs(self, configs: list[ModelConfig]) -> list[str]:
    """Replaces the served set of models and loads them; returns load errors."""
    with self._poll_lock:
      with self._lock:
        old = self._models
        models = {}
        for c in configs:
          m = old.get(c.name)
          if m is not None and m.config.base_path == c.base_path:
            m.config = c  # keeps its loaded versions; the poll applies a changed policy
          else:
            m = _Model(c)
          models[c.name] = m
        self._models = models
      for name, m in old.items():
        if models.get(name) is not m:
          logging.info("model %s removed: unloading versions %s", name, sorted(m.servables))
          if self._listener is not None:
            for servable in m.servables.values():
              self._listener.unloaded(servable)
      if self._listener is not None:
        self._listener.configured(configs)
      return self._poll_locked()

  def poll(self) -> list[str]:
    """Loads new versions and unloads unwanted ones; returns load errors."""
    with self._poll_lock:
      return self._poll_locked()

  def _poll_locked(self) -> list[str]:
    errors = []
    with self._lock:
      models = list(self._models.values())
    for m in models:
      on_disk = scan_versions(m.config.base_path)
      for v in list(m.failed):
        if v not in on_disk or _tree_stamp(on_disk[v]) != m.failed[v]:
          del m.failed[v]  # gone or changed: worth another try
      aspired = m.config.aspired([v for v in on_disk if v not in m.failed])
      for v in sorted(aspired - set(m.servables), reverse=True):
        with self._lock:
          m.states[v] = (State.LOADING, grpc.StatusCode.OK, "")
        try:
          servable = Servable(m.config.name, v, on_disk[v])
          if self._listener is not None:
            self._listener.loaded(servable)
        except Exception as e:  # pylint: disable=broad-except
          message = f"loading version {v} of model {m.config.name} from {on_disk[v]} failed: {e}"
          logging.error("%s", message)
          errors.append(message)
          m.failed[v] = _tree_stamp(on_disk[v])
          with self._lock:
            m.states[v] = (State.END, grpc.StatusCode.UNKNOWN, message)
          continue
        with self._lock:
          m.servables[v] = servable
          m.states[v] = (State.AVAILABLE, grpc.StatusCode.OK, "")
        logging.info("model %s: version %d loaded from %s", m.config.name, v, on_disk[v])
      with self._lock:
        unwanted = set(m.servables) - aspired
        if unwanted and not set(m.servables) & aspired:
          # Nothing the policy wants could be loaded: keep the newest loaded version serving.
          unwanted.discard(max(m.servables))
        gone = [m.servables.pop(v) for v in sorted(unwanted)]  # requests still holding one finish; then it is freed
        for v in unwanted:
          m.states[v] = (State.END, grpc.StatusCode.OK, "")
      for servable in gone:
        if self._listener is not None:
          self._listener.unloaded(servable)
        logging.info("model %s: version %d unloaded", m.config.name, servable.version)
      with self._lock:  # forget versions that ended and are gone from disk (bounded history)
        for v in [v for v, (state, _, _) in m.states.items() if state == State.END and v not in on_disk]:
          del m.states[v]
    return errors

  def model_names(self) -> list[str]:
    with self._lock:
      return sorted(self._models)

  def servables(self) -> list[Servable]:
    """The newest loaded version of every model."""
    with self._lock:
      return [m.servables[max(m.servables)] for m in self._models.values() if m.servables]

  def _resolve_version(self, m: _Model, version: int | None, label: str | None) -> int | None:
    if version is not None and label:
      raise invalid("a request may give a version or a version_label, not both")
    if label:
      labels = m.labels
      if label not in labels:
        raise invalid(f"Unrecognized servable version label: {label}")
      return labels[label]
    return version

  def get(self, name: str, version: int | None = None, label: str | None = None) -> Servable:
    if not name:
      raise invalid("Missing ModelSpec: the request names no model")
    with self._lock:
      m = self._models.get(name)
      if m is not None:
        version = self._resolve_version(m, version, label)
        if version is None and m.servables:
          return m.servables[max(m.servables)]
        if version is not None and version in m.servables:
          return m.servables[version]
    request = f"Latest({name})" if version is None else f"Specific({name}, {version})"
    raise not_found(f"Servable not found for request: {request}")

  def status(
    self, name: str, version: int | None = None, label: str | None = None
  ) -> list[tuple[int, int, grpc.StatusCode, str]]:
    """[(version, state, code, message)] for every version seen (or the one asked for)."""
    if not name:
      raise invalid("Missing ModelSpec: the request names no model")
    with self._lock:
      m = self._models.get(name)
      if m is None or not m.states:
        raise not_found(f"Could not find any versions of model {name}")
      version = self._resolve_version(m, version, label)
      if version is not None:
        if version not in m.states:
          raise not_found(f"Could not find version {version} of model {name}")
        return [(version, *m.states[version])]
      return [(v, *m.states[v]) for v in sorted(m.states, reverse=True)]
