"""R2D2 value rescaling, n-step double-Q targets and replay priorities.

References:
  T. Pohlen, B. Piot, T. Hester et al., "Observe and Look Further: Achieving
  Consistent Performance on Atari", 2018, arXiv:1805.11593 (section 3.2 and
  proposition A.2 for the value-rescaling function h and its inverse).
  S. Kapturowski, G. Ostrovski, J. Quan, R. Munos, W. Dabney, "Recurrent
  Experience Replay in Distributed Reinforcement Learning" (R2D2), ICLR 2019
  (section 2 for the rescaled n-step double-Q target and the priority mix).
  H. van Hasselt, A. Guez, D. Silver, "Deep Reinforcement Learning with Double
  Q-learning", AAAI 2016, arXiv:1509.06461 (double-Q action selection).

Everything is time-major: tensors are [T, B, ...] and the name suffix `_t`
marks a time-indexed argument. Index t of `rewards_t` and `discounts_t` belongs
to the transition s_t -> s_{t+1}; Q-values cover s_0..s_T ([T + 1, B, A]).
"""

from __future__ import annotations

import numbers

import tensorflow as tf

from seed.tf_utils import check_rank as _check_rank
from seed.tf_utils import check_same_shape as _check_same_shape
from seed.tf_utils import float_tensor as _float_tensor

TensorLike = tf.types.experimental.TensorLike


# --------------------------------------------------------- value rescaling ---


def signed_hyperbolic(x: TensorLike, eps: float = 1e-3) -> tf.Tensor:
  """Value-rescaling function h (Pohlen et al. 2018, arXiv:1805.11593, sec. 3.2).

    h(x) = sign(x) * (sqrt(|x| + 1) - 1) + eps * x.

  Computed as x / (sqrt(|x| + 1) + 1) + eps * x (the same value, since
  sqrt(z + 1) - 1 = z / (sqrt(z + 1) + 1)), which avoids cancellation for small
  |x| and has the right gradient 1/2 + eps at x = 0.

  Args:
    x: tensor of any shape.
    eps: the small linear term that keeps h invertible with a Lipschitz inverse.

  Returns:
    h(x), same shape and dtype as x.
  """
  x = _float_tensor(x)
  return x / (tf.sqrt(tf.abs(x) + 1.0) + 1.0) + eps * x


def signed_parabolic(x: TensorLike, eps: float = 1e-3) -> tf.Tensor:
  """Inverse of `signed_hyperbolic` (Pohlen et al. 2018, proposition A.2).

  The paper's closed form is

    h^{-1}(x) = sign(x) * (((sqrt(1 + 4 eps (|x| + 1 + eps)) - 1) / (2 eps))^2 - 1).

  Evaluated literally it cancels catastrophically near x = 0 (in float32 the
  absolute error is ~1e-4 for eps = 1e-3). Using sqrt(1 + 4 eps (1 + eps)) =
  1 + 2 eps, the same value is computed here as

    h^{-1}(x) = sign(x) * d * (2 + d),  d = 2 |x| / (1 + 2 eps + sqrt(1 + 4 eps (|x| + 1 + eps))),

  which has no cancellation and also covers eps = 0 ((|x| + 1)^2 - 1).

  Args:
    x: tensor of any shape.
    eps: must equal the eps used with `signed_hyperbolic`; must be >= 0.

  Returns:
    h^{-1}(x), same shape and dtype as x.
  """
  if eps < 0:
    raise ValueError(f"eps must be >= 0, got {eps}")
  x = _float_tensor(x)
  abs_x = tf.abs(x)
  d = 2.0 * abs_x / (1.0 + 2.0 * eps + tf.sqrt(1.0 + 4.0 * eps * (abs_x + 1.0 + eps)))
  return tf.sign(x) * d * (2.0 + d)


# ---------------------------------------------------------- n-step targets ---


def n_step_double_q_targets(
  q_target_t: TensorLike,
  q_online_t: TensorLike,
  rewards_t: TensorLike,
  discounts_t: TensorLike,
  n: int,
  rescale: bool = True,
  eps: float = 1e-3,
) -> tf.Tensor:
  """(Rescaled) n-step double-Q targets for Q(s_t, a_t), t = 0..T-1 (R2D2, sec. 2).

  With a*_s = argmax_a Q_online(s_s, a) (van Hasselt et al. 2016) and
  m = min(n, T - t) (the n-step window truncated at the sequence end),

    y_t = sum_{k=0}^{m-1} (prod_{j<k} d_{t+j}) r_{t+k}
          + (prod_{j<m} d_{t+j}) * Q_target(s_{t+m}, a*_{t+m}).

  With `rescale`, R2D2's target (Kapturowski et al. 2019; Pohlen et al. 2018) is

    y_t = h( sum_k (...) r_{t+k} + (prod_j d_{t+j}) * h^{-1}(Q_target(s_{t+m}, a*_{t+m})) ),

  i.e. the networks output h-rescaled values.

  Args:
    q_target_t: [T + 1, B, A] target-network Q-values for s_0..s_T.
    q_online_t: [T + 1, B, A] online-network Q-values for s_0..s_T (only used
      for the argmax).
    rewards_t: [T, B] reward for s_t -> s_{t+1}.
    discounts_t: [T, B] discount for s_t -> s_{t+1}, gamma included, 0 at
      episode ends (which cuts both later rewards and the bootstrap).
    n: number of steps, a Python int >= 1.
    rescale: whether to apply h / h^{-1} as above.
    eps: the eps of h.

  Returns:
    [T, B] targets, wrapped in stop_gradient.

  Raises:
    ValueError: on n < 1, wrong ranks or mismatched shapes.
  """
  if not isinstance(n, numbers.Integral) or isinstance(n, bool) or n < 1:
    raise ValueError(f"n must be an int >= 1, got {n!r}")
  n = int(n)
  q_target_t = _float_tensor(q_target_t)
  dtype = q_target_t.dtype
  q_online_t = _float_tensor(q_online_t, dtype)
  rewards_t = _float_tensor(rewards_t, dtype)
  discounts_t = _float_tensor(discounts_t, dtype)

  _check_rank("q_target_t", q_target_t, 3)
  _check_rank("q_online_t", q_online_t, 3)
  _check_rank("rewards_t", rewards_t, 2)
  _check_rank("discounts_t", discounts_t, 2)
  _check_same_shape("q_target_t", q_target_t.shape, [("q_online_t", q_online_t)])
  _check_same_shape("rewards_t", rewards_t.shape, [("discounts_t", discounts_t)])
  t_plus_1, batch = q_target_t.shape[0], q_target_t.shape[1]
  t_len = rewards_t.shape[0]
  if (t_plus_1 is not None and t_len is not None and t_plus_1 != t_len + 1) or (
    not tf.TensorShape([batch]).is_compatible_with(rewards_t.shape[1:])
  ):
    raise ValueError(
      f"rewards_t has shape {rewards_t.shape}, expected [T, B] = "
      f"[{None if t_plus_1 is None else t_plus_1 - 1}, {batch}] "
      f"from q_target_t shape {q_target_t.shape}"
    )

  with tf.name_scope("n_step_double_q_targets"):
    # Double Q: the online net picks the action, the target net evaluates it.
    best_actions = tf.argmax(q_online_t, axis=-1, output_type=tf.int32)
    bootstrap_s = tf.gather(q_target_t, best_actions, axis=-1, batch_dims=2)
    if rescale:
      bootstrap_s = signed_parabolic(bootstrap_s, eps)  # [T + 1, B]

    T = tf.shape(rewards_t)[0]
    # Past the sequence end, rewards are 0 and discounts 1, so the window is
    # truncated and the bootstrap comes from s_T.
    pad = tf.zeros([n - 1, tf.shape(rewards_t)[1]], dtype)
    rewards_pad = tf.concat([rewards_t, pad], axis=0)
    discounts_pad = tf.concat([discounts_t, pad + 1.0], axis=0)

    returns = tf.zeros_like(rewards_t)
    discount_prod = tf.ones_like(discounts_t)
    for k in range(n):
      returns += discount_prod * rewards_pad[k : k + T]
      discount_prod *= discounts_pad[k : k + T]
    bootstrap_idx = tf.minimum(tf.range(T) + n, T)
    targets = returns + discount_prod * tf.gather(bootstrap_s, bootstrap_idx)
    if rescale:
      targets = signed_hyperbolic(targets, eps)
    return tf.stop_gradient(targets)


# -------------------------------------------------------------- priorities ---


def r2d2_priorities(td_errors_t: TensorLike, eta: float = 0.9, mask_t: TensorLike | None = None) -> tf.Tensor:
  """Sequence priorities eta * max_t |delta_t| + (1 - eta) * mean_t |delta_t|.

  (Kapturowski et al. 2019, R2D2, section 2.)

  Args:
    td_errors_t: [T, B] TD errors of one sequence per batch column.
    eta: weight of the max term, in [0, 1].
    mask_t: optional [T, B] weights; the max runs over the steps with
      mask > 0 and the mean is sum(|delta| * mask) / max(sum(mask), 1). A fully
      masked column gets priority 0.

  Returns:
    [B] non-negative priorities, wrapped in stop_gradient.

  Raises:
    ValueError: on wrong ranks or mismatched shapes.
  """
  td_errors_t = _float_tensor(td_errors_t)
  _check_rank("td_errors_t", td_errors_t, 2)
  abs_td_t = tf.abs(td_errors_t)
  if mask_t is None:
    max_td = tf.reduce_max(abs_td_t, axis=0)
    mean_td = tf.reduce_mean(abs_td_t, axis=0)
  else:
    mask_t = _float_tensor(mask_t, abs_td_t.dtype)
    _check_rank("mask_t", mask_t, 2)
    _check_same_shape("td_errors_t", td_errors_t.shape, [("mask_t", mask_t)])
    max_td = tf.reduce_max(tf.where(mask_t > 0, abs_td_t, tf.zeros_like(abs_td_t)), axis=0)
    mean_td = tf.reduce_sum(tf.math.multiply_no_nan(abs_td_t, mask_t), axis=0) / tf.maximum(
      tf.reduce_sum(mask_t, axis=0), 1.0
    )
  return tf.stop_gradient(eta * max_td + (1.0 - eta) * mean_td)
