"""Training steps on every replica of a tf.distribute strategy, equal to one step on one device.

An agent captures `tf.distribute.get_strategy()` when it is built (inside the
learner's `strategy.scope()`, or the default strategy outside any), and runs
its gradient step through `run`: the global batch is split into contiguous
row blocks, one per replica, and each replica runs the step on its block.

Inside the step, `mean_gradients` turns each replica's gradients of its local
loss into the gradients of the loss over the global batch: a loss that is a
(masked) mean over its rows is weighted by its share of the rows (or of the
mask), then the gradients are summed over replicas. With those, the step gives
the same parameters on R replicas as on one device (float tolerance), clipping
by global norm included. `mean_logs` reduces scalar logs the same way.
Optimizers get the reduced gradients with `skip_gradients_aggregation=True`.
With one replica every function here is the identity.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import tensorflow as tf

from seed.tf_utils import Nest


def _rows(x: tf.Tensor, i: int, n: int) -> tf.Tensor:
  size = tf.shape(x)[0] // n
  return x[i * size : (i + 1) * size]


def run(strategy: tf.distribute.Strategy, fn: Callable[..., Any], batch: Nest, *args) -> Any:
  """fn(rows, *args) on every replica, `rows` its block of batch's leading dim.

  Returns fn's outputs: scalars as the first replica has them (fn reduces them
  with `mean_logs`), batched outputs concatenated in row order (e.g. R2D2's
  per-sequence priorities). Usable inside tf.function.
  """
  n = strategy.num_replicas_in_sync
  parts = strategy.experimental_distribute_values_from_function(
    lambda ctx: tf.nest.map_structure(lambda x: _rows(x, ctx.replica_id_in_sync_group, n), batch)
  )
  out = strategy.run(fn, args=(parts, *args))

  def gather(value):
    local = strategy.experimental_local_results(value)
    return local[0] if local[0].shape.rank == 0 else tf.concat(local, 0)

  return tf.nest.map_structure(gather, out)


def _share(weight) -> tuple[tf.distribute.ReplicaContext | None, tf.Tensor | None]:
  ctx = tf.distribute.get_replica_context()
  if ctx is None or ctx.num_replicas_in_sync == 1:
    return None, None
  weight = tf.cast(weight, tf.float32)
  total = ctx.all_reduce(tf.distribute.ReduceOp.SUM, weight)
  return ctx, weight / tf.maximum(total, 1e-12)


def mean_gradients(grads: list[tf.Tensor], weight) -> list[tf.Tensor]:
  """Gradients of the global-batch loss from this replica's gradients of its local mean loss.

  `weight`: what the local mean divides by (rows, or the mask's sum for a
  masked mean). The result is the same on every replica.
  """
  ctx, share = _share(weight)
  if ctx is None:
    return grads
  return ctx.all_reduce(tf.distribute.ReduceOp.SUM, [g * tf.cast(share, g.dtype) for g in grads])


def mean_logs(logs: dict[str, tf.Tensor], weight) -> dict[str, tf.Tensor]:
  """Scalar logs over the global batch: local means weighted like `mean_gradients`."""
  ctx, share = _share(weight)
  if ctx is None:
    return logs
  return ctx.all_reduce(tf.distribute.ReduceOp.SUM, {k: tf.cast(v, tf.float32) * share for k, v in logs.items()})
