"""V-trace off-policy targets and IMPALA loss terms, as pure functions.

Reference: L. Espeholt, H. Soyer, R. Munos et al., "IMPALA: Scalable
Distributed Deep-RL with Importance Weighted Actor-Learner Architectures",
ICML 2018, arXiv:1802.01561 (section 4.1 for V-trace, section 4.2 for the
actor-critic losses).

Everything is time-major: tensors are [T, B, ...] and the name suffix `_t`
marks a time-indexed argument. Index t of `discounts_t` and `rewards_t` belongs
to the transition x_t -> x_{t+1}; `bootstrap_value` is V(x_T).
"""

from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf

from seed.tf_utils import check_rank as _check_rank
from seed.tf_utils import check_same_shape as _check_same_shape
from seed.tf_utils import float_tensor as _float_tensor
from seed.tf_utils import masked_mean as _masked_mean

TensorLike = tf.types.experimental.TensorLike


class VTraceReturns(NamedTuple):
  """Outputs of `vtrace`, both [T, B] and gradient-free."""

  vs: tf.Tensor  # V-trace value targets v_s, s = 0..T-1.
  pg_advantages: tf.Tensor  # clipped_pg_rho_t * (r_t + discount_t * v_{t+1} - V(x_t)).


# ------------------------------------------------------------------ V-trace ---


def vtrace(
  log_rhos_t: TensorLike,
  discounts_t: TensorLike,
  rewards_t: TensorLike,
  values_t: TensorLike,
  bootstrap_value: TensorLike,
  *,
  clip_rho_threshold: float | None = 1.0,
  clip_pg_rho_threshold: float | None = 1.0,
  lambda_: float = 1.0,
) -> VTraceReturns:
  """V-trace targets and policy-gradient advantages (IMPALA, eqs. 1 and 4).

  With rho_t = pi(a_t|x_t) / mu(a_t|x_t), clipped_rho_t = min(rho_bar, rho_t),
  c_t = lambda_ * min(1, rho_t) and
  delta_t = clipped_rho_t * (r_t + discount_t * V(x_{t+1}) - V(x_t)),

    v_s = V(x_s) + sum_{t=s}^{T-1} (prod_{i=s}^{t-1} discount_i c_i) delta_t,

  computed by the backward recursion (Espeholt et al. 2018, section 4.1, remark 1)

    v_s - V(x_s) = delta_s + discount_s c_s (v_{s+1} - V(x_{s+1})),

  with v_T = V(x_T) = bootstrap_value. Uses `tf.scan`, so T may be dynamic
  inside a `tf.function`.

  Args:
    log_rhos_t: [T, B] log(pi(a_t|x_t) / mu(a_t|x_t)). A very negative value
      (e.g. -1e9) gives rho_t = 0, which masks the step and cuts the trace.
    discounts_t: [T, B] discount for x_t -> x_{t+1}; 0 at episode ends.
    rewards_t: [T, B] reward for x_t -> x_{t+1}.
    values_t: [T, B] baseline V(x_t).
    bootstrap_value: [B] V(x_T).
    clip_rho_threshold: rho_bar for the value targets; None disables clipping.
    clip_pg_rho_threshold: the clipping threshold for the policy-gradient
      importance weights; None disables clipping.
    lambda_: trace coefficient in [0, 1] (IMPALA section 4.1, remark 2).

  Returns:
    VTraceReturns(vs, pg_advantages), both [T, B], wrapped in stop_gradient.

  Raises:
    ValueError: on wrong ranks or mismatched shapes.
  """
  values_t = _float_tensor(values_t)
  dtype = values_t.dtype
  log_rhos_t = _float_tensor(log_rhos_t, dtype)
  discounts_t = _float_tensor(discounts_t, dtype)
  rewards_t = _float_tensor(rewards_t, dtype)
  bootstrap_value = _float_tensor(bootstrap_value, dtype)

  for name, x in [
    ("log_rhos_t", log_rhos_t),
    ("discounts_t", discounts_t),
    ("rewards_t", rewards_t),
    ("values_t", values_t),
  ]:
    _check_rank(name, x, 2)
  _check_rank("bootstrap_value", bootstrap_value, 1)
  _check_same_shape(
    "values_t", values_t.shape, [("log_rhos_t", log_rhos_t), ("discounts_t", discounts_t), ("rewards_t", rewards_t)]
  )
  if not bootstrap_value.shape.is_compatible_with(values_t.shape[1:]):
    raise ValueError(
      f"bootstrap_value has shape {bootstrap_value.shape}, expected [B] = {values_t.shape[1:]} from values_t"
    )

  with tf.name_scope("vtrace"):
    rhos_t = tf.exp(log_rhos_t)  # exp(-1e9) == 0 exactly, no NaN.
    clipped_rhos_t = rhos_t if clip_rho_threshold is None else tf.minimum(tf.cast(clip_rho_threshold, dtype), rhos_t)
    cs_t = lambda_ * tf.minimum(tf.ones([], dtype), rhos_t)

    # V(x_{t+1}) for t = 0..T-1, the last one being the bootstrap value.
    values_tp1 = tf.concat([values_t[1:], bootstrap_value[None]], axis=0)
    deltas_t = clipped_rhos_t * (rewards_t + discounts_t * values_tp1 - values_t)

    # acc_s = v_s - V(x_s), scanned from s = T-1 down to 0 starting at acc_T = 0.
    def step(acc, elems):
      discount_c, delta = elems
      return delta + discount_c * acc

    vs_minus_v_t = tf.scan(
      step, (discounts_t * cs_t, deltas_t), initializer=tf.zeros_like(bootstrap_value), reverse=True
    )
    vs_t = values_t + vs_minus_v_t

    # Policy-gradient advantage uses v_{t+1} (IMPALA section 4.2).
    vs_tp1 = tf.concat([vs_t[1:], bootstrap_value[None]], axis=0)
    clipped_pg_rhos_t = (
      rhos_t if clip_pg_rho_threshold is None else tf.minimum(tf.cast(clip_pg_rho_threshold, dtype), rhos_t)
    )
    pg_advantages_t = clipped_pg_rhos_t * (rewards_t + discounts_t * vs_tp1 - values_t)

    return VTraceReturns(vs=tf.stop_gradient(vs_t), pg_advantages=tf.stop_gradient(pg_advantages_t))


def scale_by_std(advantages_t: TensorLike, mask_t: TensorLike | None = None, epsilon: float = 1e-8) -> tf.Tensor:
  """advantages_t / (std + epsilon), the std over the counted steps; not re-centred.

  The policy term's scale then no longer follows the reward scale (as CleanRL's and
  Baselines' PPO normalise per batch). V-trace advantages are already centred by the
  baseline, and subtracting their batch mean would bias an off-policy estimate, so only
  the scale changes.

  Args:
    advantages_t: [T, B] advantages.
    mask_t: optional [T, B] weights (1 = step counts, 0 = ignored).
    epsilon: added to the std (a batch of equal advantages stays finite).

  Returns:
    [T, B] scaled advantages, gradient-free.
  """
  advantages_t = _float_tensor(advantages_t)
  _check_rank("advantages_t", advantages_t, 2)
  if mask_t is None:
    mask_t = tf.ones_like(advantages_t)
  mean = _masked_mean(advantages_t, mask_t)
  std = tf.sqrt(_masked_mean(tf.square(advantages_t - mean), mask_t))
  return tf.stop_gradient(advantages_t / (std + epsilon))


# -------------------------------------------------------------- loss terms ---


def _check_logits(logits_t: tf.Tensor) -> None:
  _check_rank("logits_t", logits_t, 3)


def policy_gradient_loss(
  logits_t: TensorLike, actions_t: TensorLike, advantages_t: TensorLike, mask_t: TensorLike | None = None
) -> tf.Tensor:
  """Mean of -log pi(a_t|x_t) * stop_gradient(A_t) (IMPALA section 4.2).

  Args:
    logits_t: [T, B, A] unnormalised categorical policy logits.
    actions_t: [T, B] integer actions a_t.
    advantages_t: [T, B] advantages, e.g. `vtrace(...).pg_advantages`.
    mask_t: optional [T, B] weights (1 = step counts, 0 = ignored).

  Returns:
    Scalar loss, averaged over the counted steps.
  """
  logits_t = _float_tensor(logits_t)
  actions_t = tf.convert_to_tensor(actions_t)
  advantages_t = _float_tensor(advantages_t, logits_t.dtype)
  _check_logits(logits_t)
  _check_rank("actions_t", actions_t, 2)
  _check_rank("advantages_t", advantages_t, 2)
  if not actions_t.dtype.is_integer:
    raise ValueError(f"actions_t must be integer, got {actions_t.dtype}")
  _check_same_shape("logits_t[:2]", logits_t.shape[:2], [("actions_t", actions_t), ("advantages_t", advantages_t)])

  neg_log_pi_t = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=actions_t, logits=logits_t)
  return _masked_mean(neg_log_pi_t * tf.stop_gradient(advantages_t), mask_t)


def baseline_loss(values_t: TensorLike, targets_t: TensorLike, mask_t: TensorLike | None = None) -> tf.Tensor:
  """Mean of 0.5 * (stop_gradient(targets_t) - values_t)^2 (IMPALA section 4.2).

  Args:
    values_t: [T, B] baseline V(x_t).
    targets_t: [T, B] value targets, e.g. `vtrace(...).vs`.
    mask_t: optional [T, B] weights (1 = step counts, 0 = ignored).

  Returns:
    Scalar loss, averaged over the counted steps.
  """
  values_t = _float_tensor(values_t)
  targets_t = _float_tensor(targets_t, values_t.dtype)
  _check_rank("values_t", values_t, 2)
  _check_same_shape("values_t", values_t.shape, [("targets_t", targets_t)])
  return _masked_mean(0.5 * tf.square(tf.stop_gradient(targets_t) - values_t), mask_t)


def entropy_loss(logits_t: TensorLike, mask_t: TensorLike | None = None) -> tf.Tensor:
  """Mean negative entropy sum_a pi(a|x_t) log pi(a|x_t) (IMPALA section 4.2).

  Minimising it raises the policy's entropy.

  Args:
    logits_t: [T, B, A] unnormalised categorical policy logits.
    mask_t: optional [T, B] weights (1 = step counts, 0 = ignored).

  Returns:
    Scalar loss, averaged over the counted steps.
  """
  logits_t = _float_tensor(logits_t)
  _check_logits(logits_t)
  log_pi_t = tf.nn.log_softmax(logits_t, axis=-1)
  # 0 * log 0 := 0, so -inf logits (impossible actions) stay finite.
  neg_entropy_t = tf.reduce_sum(tf.math.multiply_no_nan(log_pi_t, tf.exp(log_pi_t)), axis=-1)
  return _masked_mean(neg_entropy_t, mask_t)
