"""The prediction core both front ends share: resolving, validating and running a Predict.

It speaks in numpy arrays and ServingErrors; the gRPC and REST modules translate.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
from collections.abc import Callable

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2

import grpc
from seed.serving.batching import Batcher
from seed.serving.errors import ServingError, braces, invalid
from seed.serving.models import DEFAULT_SIGNATURE, ModelManager, Servable, Signature

_CODE_BY_NUMBER = {c.value[0]: c for c in grpc.StatusCode}


def from_tf_error(e: tf.errors.OpError) -> ServingError:
  return ServingError(_CODE_BY_NUMBER.get(e.error_code, grpc.StatusCode.UNKNOWN), e.message)


@dataclasses.dataclass
class Prediction:
  servable: Servable
  signature: str
  outputs: dict  # name -> np.ndarray


class Counters:
  """ "kind/model" -> count, from this process's Python paths plus any added source (the C++ Predict path)."""

  def __init__(self):
    self._lock = threading.Lock()
    self.values: collections.Counter = collections.Counter()
    self._sources: list[Callable[[], dict]] = []

  def add(self, **kv) -> None:
    with self._lock:
      self.values.update(kv)

  def add_source(self, source: Callable[[], dict]) -> None:
    self._sources.append(source)

  def snapshot(self) -> dict:
    with self._lock:
      total = collections.Counter(self.values)
    for source in self._sources:
      total.update(source())
    return dict(total)


class Core:
  """Everything both front ends share: models, validation, running, batching, counters."""

  def __init__(self, manager: ModelManager, batcher: Batcher | None = None):
    self.manager = manager
    self.batcher = batcher
    self.counters = Counters()

  def resolve(
    self, name: str, version: int | None, label: str | None, signature_name: str
  ) -> tuple[Servable, Signature]:
    servable = self.manager.get(name, version, label)
    signature_name = signature_name or DEFAULT_SIGNATURE
    sig = servable.signatures.get(signature_name)
    if sig is None:
      raise invalid(
        f'Serving signature name: "{signature_name}" not found in signature def '
        f"(model {name} version {servable.version} has {braces(servable.signatures)})"
      )
    return servable, sig

  @staticmethod
  def validate(sig: Signature, inputs: dict[str, np.ndarray], output_filter) -> None:
    expected, given = set(sig.inputs), set(inputs)
    if expected != given:
      raise invalid(
        f"Request inputs do not match required inputs for signature `{sig.name}`. "
        f"Send extra: {braces(given - expected)}. Missing but required: {braces(expected - given)}."
      )
    for name, spec in sig.inputs.items():
      value = inputs[name]
      want = np.dtype(object) if spec.dtype == tf.string else np.dtype(spec.dtype.as_numpy_dtype)
      if value.dtype != want:
        got = "string" if value.dtype == object else value.dtype.name
        raise invalid(f"input '{name}' has dtype {got} but the signature expects {spec.dtype.name}")
      if not spec.shape.is_compatible_with(value.shape):
        raise invalid(
          f"input '{name}' has shape {list(value.shape)} but the signature expects {_shape_text(spec.shape)}"
        )
    for name in output_filter:
      if name not in sig.outputs:
        raise invalid(
          f"output tensor alias not found in signature: {name}. Outputs expected to be in the "
          f"set {braces(sig.outputs)}."
        )

  def predict(
    self,
    name: str,
    version: int | None,
    label: str | None,
    signature_name: str,
    inputs: dict[str, np.ndarray],
    output_filter=(),
    resolved: tuple[Servable, Signature] | None = None,
  ) -> Prediction:
    servable, sig = resolved or self.resolve(name, version, label, signature_name)
    self.validate(sig, inputs, output_filter)
    self.counters.add(**{f"requests/{servable.model}": 1})

    def call(feed: dict) -> dict:  # once per run: alone, or for a whole batch
      self.counters.add(**{f"runs/{servable.model}": 1})
      try:
        out = sig.fn(**feed)
      except tf.errors.OpError as e:
        raise from_tf_error(e) from None
      except (TypeError, ValueError) as e:
        raise invalid(str(e)) from None
      return {k: v.numpy() for k, v in out.items()}

    rows = _batch_rows(sig, inputs)
    if self.batcher is not None and rows is not None and rows <= self.batcher.max_batch_size:
      key = (id(servable), sig.name, tuple((k, v.dtype.str, v.shape[1:]) for k, v in sorted(inputs.items())))
      outputs, batch_rows = self.batcher.run(key, call, inputs, rows)
      if batch_rows > rows:
        self.counters.add(**{f"batched_requests/{servable.model}": 1})
    else:
      outputs = call(inputs)
    if output_filter:
      outputs = {k: outputs[k] for k in output_filter}
    return Prediction(servable, sig.name, outputs)


def _batch_rows(sig: Signature, inputs: dict[str, np.ndarray]) -> int | None:
  """The shared leading dimension of the inputs if this call can join a batch."""
  if not sig.batchable:
    return None
  sizes = {v.shape[0] if v.ndim else None for v in inputs.values()}
  if len(sizes) != 1 or None in sizes:
    return None
  rows = sizes.pop()
  return rows if rows > 0 else None


def _shape_text(shape: tf.TensorShape) -> str:
  if shape.rank is None:
    return "<unknown rank>"
  return "[" + ",".join("?" if d is None else str(d) for d in shape.as_list()) + "]"


def status_response(entries) -> get_model_status_pb2.GetModelStatusResponse:
  """ModelManager.status() entries as TF Serving's message (gRPC sends it, REST prints it as JSON)."""
  response = get_model_status_pb2.GetModelStatusResponse()
  for version, state, code, message in entries:
    s = response.model_version_status.add()
    s.version = version
    s.state = state
    s.status.error_code = code.value[0]
    s.status.error_message = message
  return response


def signature_def_map(servable: Servable) -> get_model_metadata_pb2.SignatureDefMap:
  """A servable's metadata as TF Serving's message (gRPC packs it, REST prints it as JSON)."""
  sig_map = get_model_metadata_pb2.SignatureDefMap()
  for k, v in servable.signature_defs.items():
    sig_map.signature_def[k].CopyFrom(v)
  return sig_map
