"""seed.serve's gRPC port in C++: TF Serving's PredictionService answered from the op library.

Predict and GetModelMetadata are parsed, validated and run in C++ on gRPC threads
(each signature a bound function, as tensor-RPC methods are): no Python and no GIL
on that path. gRPC's own health service answers Health. Every other method
(ModelService, unknown ones) is forwarded to the Python grpcio servicers, which
listen on a unix socket in a private directory. The Python model manager stays
the one owner of versions: it publishes each loaded version here before reporting
it AVAILABLE, and unpublishes it (waiting for its requests) before freeing it.
"""

from __future__ import annotations

import json

import tensorflow as tf

from seed import grpc as tensor_rpc
from seed.serving.config import ModelConfig
from seed.serving.core import signature_def_map
from seed.serving.models import Servable
from seed.serving.positional import positional_function

SERVICES = ("tensorflow.serving.PredictionService", "tensorflow.serving.ModelService")


class NativeFront:
  """The C++ gRPC server of seed.serve (one per ModelServer)."""

  def __init__(
    self,
    address: str,
    forward_address: str,
    *,
    max_request_bytes: int,
    max_response_bytes: int,
    cpp_predict: bool = True,
    enable_batching: bool = False,
    max_batch_size: int = 32,
    batch_timeout_micros: int = 1000,
    num_threads: int = 0,
  ):
    self._ops = tensor_rpc.op_library()
    self._id = self._ops.seed_serving_create(
      address=address,
      forward_address=forward_address,
      num_threads=num_threads,
      max_request_bytes=max_request_bytes,
      max_response_bytes=max_response_bytes,
      cpp_predict=cpp_predict,
      enable_batching=enable_batching,
      max_batch_size=max_batch_size,
      batch_timeout_micros=batch_timeout_micros,
    )
    self._closed = False

  def start(self) -> int:
    """Listens; returns the port."""
    return int(self._ops.seed_serving_start(self._id))

  def publish(self, servable: Servable) -> None:
    """Makes every signature of a loaded version callable (before it is reported AVAILABLE)."""
    metadata = signature_def_map(servable).SerializeToString()
    concrete = []
    for sig in servable.signatures.values():
      fn, names = positional_function(sig)
      concrete.append((sig, fn.get_concrete_function(), names))

    # In a graph function, not eagerly: an eager op's kernel stays cached for its attributes, and with
    # `fn` among them each version's kernel would keep a copy of its function library (graph constants
    # included) for the life of the process. This function's kernels go when it does.
    @tf.function(autograph=False)
    def stage():
      staged = []
      for sig, cf, names in concrete:
        outputs = sorted(sig.outputs)
        staged.append(
          self._ops.seed_serving_stage(
            self._id,
            cf.captured_inputs,
            fn=cf,
            model=servable.model,
            version=servable.version,
            signature=sig.name,
            input_names=names,
            input_dtypes=[sig.inputs[n].dtype for n in names],
            input_shapes=[sig.inputs[n].shape for n in names],
            output_names=outputs,  # a dict's outputs flatten in sorted key order
            output_dtypes=[sig.outputs[n].dtype for n in outputs],
          )
        )
      with tf.control_dependencies(staged):  # they share no input that would order them
        self._ops.seed_serving_publish(self._id, metadata, model=servable.model, version=servable.version)

    stage()

  def unpublish(self, servable: Servable, timeout: float = 30.0) -> bool:
    """Takes a version out; True once no request holds it (False: some still did after `timeout`)."""
    if self._closed:
      return True
    return bool(
      self._ops.seed_serving_unpublish(
        self._id, model=servable.model, version=servable.version, timeout_ms=int(timeout * 1000)
      )
    )

  def set_models(self, configs: list[ModelConfig]) -> None:
    """The configured models and their version labels (a removed model's versions go with it)."""
    labels = [(c.name, label, version) for c in configs for label, version in c.labels]
    self._ops.seed_serving_set_models(
      self._id,
      tf.constant([c.name for c in configs], tf.string),
      tf.constant([m for m, _, _ in labels], tf.string),
      tf.constant([label for _, label, _ in labels], tf.string),
      tf.constant([v for _, _, v in labels], tf.int64),
    )

  def set_serving(self, serving: bool) -> None:
    self._ops.seed_serving_set_serving(self._id, tf.constant(SERVICES, tf.string), serving)

  def stats(self) -> dict:
    """{model: {requests, runs, batched_requests, errors}} of the C++ Predict path."""
    return json.loads(self._ops.seed_serving_stats(self._id).numpy())

  def counters(self) -> dict:
    """The stats as Core's counters name them ("requests/<model>", ...)."""
    if self._closed:
      return {}
    return {
      f"{kind}/{model}": n for model, kinds in self.stats().items() for kind, n in kinds.items() if kind != "errors"
    }

  # ModelManager's VersionListener.
  def configured(self, configs: list[ModelConfig]) -> None:
    self.set_models(configs)

  def loaded(self, servable: Servable) -> None:
    self.publish(servable)

  def unloaded(self, servable: Servable) -> None:
    self.unpublish(servable)

  def shutdown(self) -> None:
    if not self._closed:
      self._closed = True
      self._ops.seed_serving_shutdown(self._id)
