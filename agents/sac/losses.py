"""Soft actor-critic loss terms and the tanh-squashed Gaussian policy.

References:
  T. Haarnoja, A. Zhou, P. Abbeel, S. Levine, "Soft Actor-Critic: Off-Policy
  Maximum Entropy Deep Reinforcement Learning with a Stochastic Actor", ICML
  2018, arXiv:1801.01290 (section 4.2, eqs. 5-7 for the soft Q and policy
  losses; appendix C for the tanh squashing and its log-likelihood, eq. 21).
  T. Haarnoja, A. Zhou, K. Hartikainen et al., "Soft Actor-Critic Algorithms
  and Applications", 2018, arXiv:1812.05905 (section 5 for the automatic
  temperature loss, eq. 18; section 6 for clipped double-Q).

All loss inputs are batch tensors of shape [B] (one entry per transition);
`alpha` and `log_alpha` are scalars. `discounts` include gamma and are 0 at
episode ends.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from seed.tf_utils import check_rank as _check_rank
from seed.tf_utils import check_same_shape as _check_same_shape
from seed.tf_utils import float_tensor as _float_tensor

TensorLike = tf.types.experimental.TensorLike

tfd = tfp.distributions
tfb = tfp.bijectors


# ------------------------------------------------------------------ checks ---


def _batch_tensors(named: Sequence[tuple[str, TensorLike]]) -> list[tf.Tensor]:
  """Converts [B] inputs to the first one's float dtype and checks shapes."""
  first = _float_tensor(named[0][1])
  tensors = [first] + [_float_tensor(x, first.dtype) for _, x in named[1:]]
  for (name, _), x in zip(named, tensors):
    _check_rank(name, x, 1)
  _check_same_shape(named[0][0], first.shape, [(name, x) for (name, _), x in zip(named[1:], tensors[1:])])
  return tensors


def _scalar(name: str, x: TensorLike, dtype: tf.DType) -> tf.Tensor:
  x = _float_tensor(x, dtype)
  _check_rank(name, x, 0)
  return x


# ------------------------------------------------------------------ losses ---


def critic_loss(
  q1: TensorLike,
  q2: TensorLike,
  rewards: TensorLike,
  discounts: TensorLike,
  next_q1_target: TensorLike,
  next_q2_target: TensorLike,
  next_log_prob: TensorLike,
  alpha: TensorLike,
) -> tf.Tensor:
  """Soft Q loss for twin critics (Haarnoja et al. 2018, arXiv:1801.01290, eq. 5-6).

  With a' ~ pi(.|s') and clipped double-Q (arXiv:1812.05905, section 6),

    y = r + discount * (min(Q1_targ(s', a'), Q2_targ(s', a')) - alpha * log pi(a'|s')),
    loss = mean(0.5 * (Q1(s, a) - y)^2 + 0.5 * (Q2(s, a) - y)^2).

  The target y is wrapped in stop_gradient, so only q1 and q2 get gradients.

  Args:
    q1, q2: [B] online critics' Q(s, a).
    rewards: [B] rewards r.
    discounts: [B] gamma * (1 - terminal).
    next_q1_target, next_q2_target: [B] target critics' Q(s', a').
    next_log_prob: [B] log pi(a'|s') of the sampled next action.
    alpha: scalar entropy temperature.

  Returns:
    Scalar loss.

  Raises:
    ValueError: on wrong ranks or mismatched shapes.
  """
  (q1, q2, rewards, discounts, next_q1_target, next_q2_target, next_log_prob) = _batch_tensors(
    [
      ("q1", q1),
      ("q2", q2),
      ("rewards", rewards),
      ("discounts", discounts),
      ("next_q1_target", next_q1_target),
      ("next_q2_target", next_q2_target),
      ("next_log_prob", next_log_prob),
    ]
  )
  alpha = _scalar("alpha", alpha, q1.dtype)
  next_soft_value = tf.minimum(next_q1_target, next_q2_target) - alpha * next_log_prob
  targets = tf.stop_gradient(rewards + discounts * next_soft_value)
  return tf.reduce_mean(0.5 * tf.square(q1 - targets) + 0.5 * tf.square(q2 - targets))


def actor_loss(q1_pi: TensorLike, q2_pi: TensorLike, log_prob_pi: TensorLike, alpha: TensorLike) -> tf.Tensor:
  """Policy loss mean(alpha * log pi(a|s) - min(Q1(s, a), Q2(s, a))), a ~ pi.

  (Haarnoja et al. 2018, arXiv:1801.01290, eq. 7 with the reparameterised
  action; min over two critics from arXiv:1812.05905, section 6.) alpha is
  wrapped in stop_gradient; gradients reach the policy through log_prob_pi and
  through the sampled action inside q1_pi / q2_pi.

  Args:
    q1_pi, q2_pi: [B] critics evaluated at a freshly sampled action a ~ pi(.|s).
    log_prob_pi: [B] log pi(a|s) of that action.
    alpha: scalar entropy temperature.

  Returns:
    Scalar loss.

  Raises:
    ValueError: on wrong ranks or mismatched shapes.
  """
  q1_pi, q2_pi, log_prob_pi = _batch_tensors([("q1_pi", q1_pi), ("q2_pi", q2_pi), ("log_prob_pi", log_prob_pi)])
  alpha = tf.stop_gradient(_scalar("alpha", alpha, q1_pi.dtype))
  return tf.reduce_mean(alpha * log_prob_pi - tf.minimum(q1_pi, q2_pi))


def temperature_loss(log_alpha: TensorLike, log_prob: TensorLike, target_entropy: float | TensorLike) -> tf.Tensor:
  """Temperature loss mean(-log_alpha * stop_gradient(log pi(a|s) + H_target)).

  (Haarnoja et al. 2018, arXiv:1812.05905, eq. 18, parameterised by log alpha
  as in the authors' implementation.) Only `log_alpha` receives a gradient:
  alpha grows when the policy's entropy -log pi falls below the target.

  Args:
    log_alpha: scalar log of the temperature (usually a tf.Variable).
    log_prob: [B] log pi(a|s) of actions sampled from the current policy.
    target_entropy: scalar target entropy, e.g. -action_dim.

  Returns:
    Scalar loss.

  Raises:
    ValueError: on wrong ranks.
  """
  (log_prob,) = _batch_tensors([("log_prob", log_prob)])
  log_alpha = _scalar("log_alpha", log_alpha, log_prob.dtype)
  target_entropy = _scalar("target_entropy", target_entropy, log_prob.dtype)
  return tf.reduce_mean(-log_alpha * tf.stop_gradient(log_prob + target_entropy))


# ------------------------------------------------------------------ policy ---


class _ClippedTanh(tfb.Tanh):
  """tanh bijector whose inverse clips y into [-1 + tiny, 1 - tiny] first.

  tanh rounds to exactly +-1 for |x| above ~9 in float32, where atanh would be
  +-inf and the log-density NaN. Clipping by the dtype's machine epsilon keeps
  the inverse finite (|x| <= ~8.3 in float32, ~18.7 in float64); the log-det
  term is then the parent's stable 2 * (log 2 - x - softplus(-2x)).
  """

  def __init__(self, validate_args: bool = False, name: str = "clipped_tanh"):
    super().__init__(validate_args=validate_args, name=name)

  def _inverse(self, y):
    tiny = np.finfo(y.dtype.as_numpy_dtype).eps
    return tf.atanh(tf.clip_by_value(y, -1.0 + tiny, 1.0 - tiny))


def tanh_gaussian(mean: TensorLike, log_std: TensorLike) -> tfd.Distribution:
  """Diagonal Gaussian squashed by tanh (Haarnoja et al. 2018, arXiv:1801.01290, app. C).

  a = tanh(u), u ~ N(mean, diag(exp(log_std))^2), so

    log pi(a|s) = log N(u; mean, std) - sum_i log(1 - tanh(u_i)^2).

  The result is a `tfp.distributions.TransformedDistribution` of a
  `MultivariateNormalDiag` through a tanh bijector, with `sample` (a
  reparameterised sample in (-1, 1)^A) and `log_prob` (summed over the action
  dimension). Numerical stability of `log_prob` near the bounds:
    * the log-det term uses the stable form log(1 - tanh(u)^2) =
      2 * (log 2 - u - softplus(-2u)) instead of log1p(-a^2);
    * before atanh, `log_prob` clips a to [-1 + eps, 1 - eps] with eps the
      dtype's machine epsilon, so samples that rounded to exactly +-1 (|u| > ~9
      in float32) give a large but finite log-density instead of NaN/inf. For
      such clipped samples the density is that of the clipped point.

  Args:
    mean: [..., A] mean of u.
    log_std: [..., A] log standard deviation of u (clip it in the network if
      needed, e.g. to [-20, 2]).

  Returns:
    A distribution with batch shape [...] and event shape [A].
  """
  mean = _float_tensor(mean)
  log_std = _float_tensor(log_std, mean.dtype)
  _check_same_shape("mean", mean.shape, [("log_std", log_std)])
  if mean.shape.rank is not None and mean.shape.rank < 1:
    raise ValueError(f"mean must have rank >= 1 ([..., A]), got shape {mean.shape}")
  base = tfd.MultivariateNormalDiag(loc=mean, scale_diag=tf.exp(log_std))
  return tfd.TransformedDistribution(distribution=base, bijector=_ClippedTanh(), name="TanhGaussian")
