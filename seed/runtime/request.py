"""What an actor sends the learner each step: one named structure both sides use.

The learner binds `inference(*InferenceRequest, mask)`; an actor calls
`client.inference(*request)`. Every field is batched over the actor's envs.
TensorFlow-free, as the actor is: only `specs` (the learner's) imports it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
  import tensorflow as tf

METHOD = "inference"


class InferenceRequest(NamedTuple):
  """One step of a batch of envs. Conventions: seed.runtime.env_store.Step."""

  env_id: Any  # int32 [n]: global env index, in [0, num_actors * env_batch_size)
  run_id: Any  # int64 [n]: random per env and actor start; a new one drops the env's partial unroll
  reward: Any  # float32 [n]: reward of the transition into `observation`
  terminated: Any  # bool [n]: `observation` is terminal
  truncated: Any  # bool [n]: the episode was cut at `observation` (time limit): bootstrap from it
  first: Any  # bool [n]: `observation` starts an episode (the previous action was ignored)
  observation: Any  # [n, *observation_shape]


def specs(observation_spec: tf.TensorSpec, batch_size: int | None) -> InferenceRequest:
  """TensorSpecs of a request carrying `batch_size` envs, named after the fields (the learner's signature)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top  (the actor imports this module: no TF at import)

  dtypes = InferenceRequest(tf.int32, tf.int64, tf.float32, tf.bool, tf.bool, tf.bool, observation_spec.dtype)
  shapes = InferenceRequest(*([[]] * 6), observation_spec.shape)
  return InferenceRequest(
    *(
      tf.TensorSpec([batch_size, *shape], dtype, name=name)
      for name, shape, dtype in zip(InferenceRequest._fields, shapes, dtypes)
    )
  )
