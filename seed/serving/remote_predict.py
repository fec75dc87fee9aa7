"""Seed 004's RemotePredict op: Predict on a TF Serving PredictionService from inside a TF graph.

The same module shape as TF Serving's `remote_predict_ops`:

    from seed.serving import remote_predict
    outputs = remote_predict.run(
        input_tensor_alias=["x"], input_tensors=[x], output_tensor_alias=["y"],
        target_address="localhost:8500", model_name="half_plus_two", model_version=-1,
        max_rpc_deadline_millis=3000, output_types=[tf.float32], signature_name="serving_default")
    code, message, outputs = remote_predict.run_returning_status(...same arguments...)

The op (grpc/remote_predict.cc) is asynchronous: it holds no thread while the call
is out, so a model served by seed.serve may call the very server that serves it.
It works eagerly, in a tf.function and in a SavedModel; a process loading such a
SavedModel needs the op library loaded first (`seed.grpc.op_library()`, which
seed.serve does). Addresses, model names and file paths are op attributes; the
token and keys in `credentials` are files read at run time, never in the graph.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from seed import grpc as tensor_rpc


def _call(
  input_tensor_alias: Sequence[str],
  input_tensors: Sequence,
  output_tensor_alias: Sequence[str],
  target_address: str,
  model_name: str,
  model_version: int,
  max_rpc_deadline_millis: int,
  output_types: Sequence[tf.DType],
  signature_name: str,
  credentials: tensor_rpc.ChannelCredentials | None,
  max_message_size: int,
  fail: bool,
  name: str | None,
):
  if len(input_tensor_alias) != len(input_tensors):
    raise ValueError(f"{len(input_tensor_alias)} input aliases for {len(input_tensors)} input tensors")
  if output_types is None or len(output_types) != len(output_tensor_alias):
    raise ValueError("output_types must give one dtype per output alias")
  return tensor_rpc.op_library().seed_remote_predict(
    input_tensor_aliases=tf.constant(list(input_tensor_alias), tf.string),
    input_tensors=[tf.convert_to_tensor(t) for t in input_tensors],
    output_tensor_aliases=tf.constant(list(output_tensor_alias), tf.string),
    output_types=list(output_types),
    target_address=target_address,
    model_name=model_name,
    model_version=model_version,
    signature_name=signature_name,
    max_rpc_deadline_millis=max_rpc_deadline_millis,
    fail_op_on_rpc_error=fail,
    max_message_size=max_message_size,
    name=name,
    **tensor_rpc.channel_attrs(credentials),
  )


def run(
  input_tensor_alias: Sequence[str],
  input_tensors: Sequence,
  output_tensor_alias: Sequence[str],
  target_address: str,
  model_name: str,
  model_version: int = -1,
  max_rpc_deadline_millis: int = 3000,
  output_types: Sequence[tf.DType] | None = None,
  signature_name: str = "serving_default",
  credentials: tensor_rpc.ChannelCredentials | None = None,
  max_message_size: int = tensor_rpc.DEFAULT_MAX_MESSAGE_SIZE,
  name: str | None = None,
) -> list[tf.Tensor]:
  """The outputs named by `output_tensor_alias`, in that order; an RPC error raises its tf.errors class
  (DEADLINE_EXCEEDED after `max_rpc_deadline_millis`). `model_version` -1: the newest."""
  out = _call(
    input_tensor_alias, input_tensors, output_tensor_alias, target_address, model_name, model_version,
    max_rpc_deadline_millis, output_types, signature_name, credentials, max_message_size, True, name,
  )  # fmt: skip
  return list(out.output_tensors)


def run_returning_status(
  input_tensor_alias: Sequence[str],
  input_tensors: Sequence,
  output_tensor_alias: Sequence[str],
  target_address: str,
  model_name: str,
  model_version: int = -1,
  max_rpc_deadline_millis: int = 3000,
  output_types: Sequence[tf.DType] | None = None,
  signature_name: str = "serving_default",
  credentials: tensor_rpc.ChannelCredentials | None = None,
  max_message_size: int = tensor_rpc.DEFAULT_MAX_MESSAGE_SIZE,
  name: str | None = None,
) -> tuple[tf.Tensor, tf.Tensor, list[tf.Tensor]]:
  """(gRPC status code, message, outputs): a failed call returns its code and message with zero scalar
  outputs instead of raising."""
  out = _call(
    input_tensor_alias, input_tensors, output_tensor_alias, target_address, model_name, model_version,
    max_rpc_deadline_millis, output_types, signature_name, credentials, max_message_size, False, name,
  )  # fmt: skip
  return out.status_code, out.status_error_message, list(out.output_tensors)
