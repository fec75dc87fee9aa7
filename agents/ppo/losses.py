"""PPO loss terms and generalized advantage estimation, as pure functions.

References:
  J. Schulman, P. Moritz, S. Levine, M. Jordan, P. Abbeel, "High-Dimensional
  Continuous Control Using Generalized Advantage Estimation", ICLR 2016,
  arXiv:1506.02438 (section 3, eq. 16 for GAE(gamma, lambda)).
  J. Schulman, F. Wolski, P. Dhariwal, A. Radford, O. Klimov, "Proximal Policy
  Optimization Algorithms", 2017, arXiv:1707.06347 (section 3, eq. 7 for the
  clipped surrogate objective; section 5 for the value-function loss).

Everything is time-major: tensors are [T, B] and the name suffix `_t` marks a
time-indexed argument. Index t of `discounts_t` and `rewards_t` belongs to the
transition x_t -> x_{t+1}; `bootstrap_value` is V(x_T) (as in V-trace).
"""

from __future__ import annotations

import tensorflow as tf

from seed.tf_utils import check_rank as _check_rank
from seed.tf_utils import check_same_shape as _check_same_shape
from seed.tf_utils import float_tensor as _float_tensor
from seed.tf_utils import masked_mean as _masked_mean

TensorLike = tf.types.experimental.TensorLike


# --------------------------------------------------------------------- GAE ---


def gae(
  rewards_t: TensorLike,
  discounts_t: TensorLike,
  values_t: TensorLike,
  bootstrap_value: TensorLike,
  lambda_: float = 0.95,
) -> tf.Tensor:
  """Generalized advantage estimates (Schulman et al. 2016, arXiv:1506.02438, eq. 16).

  With delta_t = r_t + discount_t * V(x_{t+1}) - V(x_t) and V(x_T) = bootstrap_value,

    A_t = sum_{k=0}^{T-1-t} (prod_{i=t}^{t+k-1} lambda_ * discount_i) delta_{t+k},

  computed by the backward recursion A_t = delta_t + lambda_ * discount_t * A_{t+1},
  A_T = 0. lambda_ = 1 gives discounted returns minus V(x_t); lambda_ = 0 gives
  the one-step TD errors. The matching value targets are A_t + V(x_t).

  Args:
    rewards_t: [T, B] reward for x_t -> x_{t+1}.
    discounts_t: [T, B] discount for x_t -> x_{t+1} (gamma included); 0 at
      episode ends.
    values_t: [T, B] baseline V(x_t).
    bootstrap_value: [B] V(x_T).
    lambda_: GAE lambda in [0, 1].

  Returns:
    [T, B] advantages, wrapped in stop_gradient.

  Raises:
    ValueError: on wrong ranks or mismatched shapes.
  """
  values_t = _float_tensor(values_t)
  dtype = values_t.dtype
  rewards_t = _float_tensor(rewards_t, dtype)
  discounts_t = _float_tensor(discounts_t, dtype)
  bootstrap_value = _float_tensor(bootstrap_value, dtype)

  for name, x in [("rewards_t", rewards_t), ("discounts_t", discounts_t), ("values_t", values_t)]:
    _check_rank(name, x, 2)
  _check_rank("bootstrap_value", bootstrap_value, 1)
  _check_same_shape("values_t", values_t.shape, [("rewards_t", rewards_t), ("discounts_t", discounts_t)])
  if not bootstrap_value.shape.is_compatible_with(values_t.shape[1:]):
    raise ValueError(
      f"bootstrap_value has shape {bootstrap_value.shape}, expected [B] = {values_t.shape[1:]} from values_t"
    )

  with tf.name_scope("gae"):
    values_tp1 = tf.concat([values_t[1:], bootstrap_value[None]], axis=0)
    deltas_t = rewards_t + discounts_t * values_tp1 - values_t

    def step(acc, elems):
      discount_lambda, delta = elems
      return delta + discount_lambda * acc

    advantages_t = tf.scan(
      step, (lambda_ * discounts_t, deltas_t), initializer=tf.zeros_like(bootstrap_value), reverse=True
    )
    return tf.stop_gradient(advantages_t)


# -------------------------------------------------------------- loss terms ---


def clipped_surrogate_loss(
  log_prob_t: TensorLike,
  old_log_prob_t: TensorLike,
  advantages_t: TensorLike,
  epsilon: float = 0.2,
  mask_t: TensorLike | None = None,
) -> tf.Tensor:
  """PPO clipped surrogate loss (Schulman et al. 2017, arXiv:1707.06347, eq. 7).

  With ratio_t = exp(log_prob_t - old_log_prob_t),

    loss = mean_t -min(ratio_t A_t, clip(ratio_t, 1 - epsilon, 1 + epsilon) A_t).

  Gradients flow only into `log_prob_t`; `old_log_prob_t` and `advantages_t`
  are treated as constants.

  Args:
    log_prob_t: [T, B] log pi(a_t|x_t) under the policy being optimised.
    old_log_prob_t: [T, B] log pi_old(a_t|x_t) under the behaviour policy.
    advantages_t: [T, B] advantages, e.g. from `gae`.
    epsilon: clipping range, > 0.
    mask_t: optional [T, B] weights (1 = step counts, 0 = ignored).

  Returns:
    Scalar loss, averaged over the counted steps.

  Raises:
    ValueError: on wrong ranks or mismatched shapes.
  """
  log_prob_t = _float_tensor(log_prob_t)
  dtype = log_prob_t.dtype
  old_log_prob_t = _float_tensor(old_log_prob_t, dtype)
  advantages_t = _float_tensor(advantages_t, dtype)
  for name, x in [("log_prob_t", log_prob_t), ("old_log_prob_t", old_log_prob_t), ("advantages_t", advantages_t)]:
    _check_rank(name, x, 2)
  _check_same_shape(
    "log_prob_t", log_prob_t.shape, [("old_log_prob_t", old_log_prob_t), ("advantages_t", advantages_t)]
  )

  advantages_t = tf.stop_gradient(advantages_t)
  ratio_t = tf.exp(log_prob_t - tf.stop_gradient(old_log_prob_t))
  clipped_ratio_t = tf.clip_by_value(ratio_t, 1.0 - epsilon, 1.0 + epsilon)
  surrogate_t = tf.minimum(ratio_t * advantages_t, clipped_ratio_t * advantages_t)
  return _masked_mean(-surrogate_t, mask_t)


def value_loss(
  values_t: TensorLike,
  old_values_t: TensorLike,
  returns_t: TensorLike,
  clip_epsilon: float | None = None,
  mask_t: TensorLike | None = None,
) -> tf.Tensor:
  """PPO value loss, optionally clipped around the old values.

  Unclipped: 0.5 * (V_t - R_t)^2 (Schulman et al. 2017, arXiv:1707.06347, sec. 5).
  Clipped (as in the PPO reference implementation, OpenAI baselines ppo2):

    0.5 * max((V_t - R_t)^2, (V_old_t + clip(V_t - V_old_t, -eps, eps) - R_t)^2).

  Gradients flow only into `values_t`.

  Args:
    values_t: [T, B] current value predictions V(x_t).
    old_values_t: [T, B] value predictions when the data was collected.
    returns_t: [T, B] value targets, e.g. gae(...) + old values.
    clip_epsilon: clipping range for the value change; None disables clipping.
    mask_t: optional [T, B] weights (1 = step counts, 0 = ignored).

  Returns:
    Scalar loss, averaged over the counted steps.

  Raises:
    ValueError: on wrong ranks or mismatched shapes.
  """
  values_t = _float_tensor(values_t)
  dtype = values_t.dtype
  old_values_t = tf.stop_gradient(_float_tensor(old_values_t, dtype))
  returns_t = tf.stop_gradient(_float_tensor(returns_t, dtype))
  for name, x in [("values_t", values_t), ("old_values_t", old_values_t), ("returns_t", returns_t)]:
    _check_rank(name, x, 2)
  _check_same_shape("values_t", values_t.shape, [("old_values_t", old_values_t), ("returns_t", returns_t)])

  squared_t = tf.square(values_t - returns_t)
  if clip_epsilon is not None:
    clipped_values_t = old_values_t + tf.clip_by_value(values_t - old_values_t, -clip_epsilon, clip_epsilon)
    squared_t = tf.maximum(squared_t, tf.square(clipped_values_t - returns_t))
  return _masked_mean(0.5 * squared_t, mask_t)
