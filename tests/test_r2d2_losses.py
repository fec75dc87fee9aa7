"""Value rescaling, n-step double-Q targets and priorities (agents.r2d2.losses).

The numpy references are independent of the implementation: h^{-1} is found by
bisection on h (not the closed form), and targets are built with explicit
per-(t, b) loops over the n-step window.
"""

import numpy as np
import pytest
import tensorflow as tf

from agents.r2d2 import losses as r2d2

# ---------------------------------------------------------------- reference ---


def np_h(x, eps=1e-3):
  x = np.asarray(x, np.float64)
  return np.sign(x) * (np.sqrt(np.abs(x) + 1.0) - 1.0) + eps * x


def np_h_inv_bisect(y, eps=1e-3):
  """Inverts the strictly increasing h by bisection on [-(|y|+1)^2, (|y|+1)^2]."""
  y = np.asarray(y, np.float64)
  bound = (np.abs(y) + 1.0) ** 2  # h(x) >= sqrt(x + 1) - 1 for x >= 0
  lo, hi = -bound, bound.copy()
  for _ in range(200):
    mid = 0.5 * (lo + hi)
    below = np_h(mid, eps) < y
    lo = np.where(below, mid, lo)
    hi = np.where(below, hi, mid)
  return 0.5 * (lo + hi)


def reference_targets(q_target, q_online, rewards, discounts, n, rescale, eps=1e-3):
  T, B = rewards.shape
  out = np.zeros((T, B))
  for b in range(B):
    for t in range(T):
      ret, disc, s = 0.0, 1.0, t
      for k in range(n):
        if t + k >= T:  # window truncated at the sequence end
          break
        ret += disc * rewards[t + k, b]
        disc *= discounts[t + k, b]
        s = t + k + 1
      a_star = int(np.argmax(q_online[s, b]))
      boot = float(q_target[s, b, a_star])
      if rescale:
        boot = float(np_h_inv_bisect(boot, eps))
      y = ret + disc * boot
      out[t, b] = np_h(y, eps) if rescale else y
  return out


def random_inputs(T, B, A, seed=0, terminal_prob=0.2):
  rng = np.random.default_rng(seed)
  f32 = lambda x: np.asarray(x, np.float32)
  q_target = f32(rng.normal(0.0, 3.0, (T + 1, B, A)))
  q_online = f32(rng.normal(0.0, 3.0, (T + 1, B, A)))
  rewards = f32(rng.normal(size=(T, B)))
  discounts = f32(0.97 * (rng.uniform(size=(T, B)) > terminal_prob))
  return q_target, q_online, rewards, discounts


def assert_close(actual, expected, tol=1e-4):
  np.testing.assert_allclose(np.asarray(actual), expected, rtol=tol, atol=tol)


# ---------------------------------------------------------- value rescaling ---


def test_h_hand_values():
  x = np.array([0.0, 3.0, -8.0, 0.25], np.float32)
  # sqrt(4) - 1 + 0.003; -(sqrt(9) - 1) - 0.008; sqrt(1.25) - 1 + 0.00025.
  expected = [0.0, 1.003, -2.008, 1.118033988749895 - 1.0 + 0.00025]
  assert_close(r2d2.signed_hyperbolic(x), expected, tol=1e-6)
  assert_close(r2d2.signed_parabolic(np.float32(1.003)), 3.0, tol=1e-4)
  assert float(r2d2.signed_parabolic(0.0)) == 0.0


@pytest.mark.parametrize("eps", [1e-3, 1e-2, 0.0])
def test_h_inverse_round_trip_float64(eps):
  x = tf.constant([0.0, 1e-6, -1e-3, 0.5, -1.0, 7.0, -123.4, 1e4, -1e5, 1e6, 1e8], tf.float64)
  y = r2d2.signed_hyperbolic(x, eps)
  assert y.dtype == tf.float64
  assert_close(y, np_h(x, eps), tol=1e-12)
  np.testing.assert_allclose(r2d2.signed_parabolic(y, eps), x, rtol=1e-10, atol=1e-12)
  np.testing.assert_allclose(r2d2.signed_hyperbolic(r2d2.signed_parabolic(x, eps), eps), x, rtol=1e-10, atol=1e-12)
  # The implementation agrees with bisection on h.
  np.testing.assert_allclose(r2d2.signed_parabolic(x, eps), np_h_inv_bisect(x, eps), rtol=1e-9, atol=1e-12)


def test_h_inverse_matches_paper_closed_form():
  eps = 1e-3
  x = np.array([0.0, 0.3, -2.0, 55.0, -4e3, 2e6])
  paper = np.sign(x) * (((np.sqrt(1 + 4 * eps * (np.abs(x) + 1 + eps)) - 1) / (2 * eps)) ** 2 - 1)
  np.testing.assert_allclose(r2d2.signed_parabolic(tf.constant(x, tf.float64), eps), paper, rtol=1e-9, atol=1e-9)


def test_h_inverse_round_trip_float32():
  x = np.array([0.0, 1e-6, -1e-3, 0.1, -2.5, 40.0, -1e3, 1e5, -1e6], np.float32)
  back = r2d2.signed_parabolic(r2d2.signed_hyperbolic(x))
  assert back.dtype == tf.float32
  # Relative accuracy holds down to tiny values (no cancellation near 0).
  np.testing.assert_allclose(back, x, rtol=1e-5, atol=0)
  assert float(r2d2.signed_parabolic(np.float32(-1e-7))) < 0


def test_h_gradient_at_zero():
  x = tf.Variable([0.0, 3.0])
  with tf.GradientTape() as tape:
    y = tf.reduce_sum(r2d2.signed_hyperbolic(x))
  # h'(x) = 1 / (2 sqrt(|x| + 1)) + eps: 0.5 + eps at 0, 0.25 + eps at 3.
  assert_close(tape.gradient(y, x), [0.501, 0.251], tol=1e-6)


def test_h_inverse_rejects_negative_eps():
  with pytest.raises(ValueError, match="eps must be >= 0"):
    r2d2.signed_parabolic(1.0, eps=-1e-3)


# ----------------------------------------------------------- n-step targets ---

# T=3, B=1, A=2. The online net picks a* = (., 0, 1, 0) at s_0..s_3, so the
# bootstrap values at s_1..s_3 are 2, 30, 4 (not the target argmax 20, 30, 40).
HAND_Q_TARGET = np.array([[[0.0, 0.0]], [[2.0, 20.0]], [[3.0, 30.0]], [[4.0, 40.0]]], np.float32)
HAND_Q_ONLINE = np.array([[[0.0, 0.0]], [[1.0, 0.0]], [[0.0, 1.0]], [[1.0, 0.0]]], np.float32)
HAND_REWARDS = np.array([[1.0], [2.0], [3.0]], np.float32)


def test_hand_fixture_two_step():
  discounts = np.full((3, 1), 0.5, np.float32)
  out = r2d2.n_step_double_q_targets(HAND_Q_TARGET, HAND_Q_ONLINE, HAND_REWARDS, discounts, n=2, rescale=False)
  # t=0: 1 + .5*2 + .25*30 = 9.5;  t=1: 2 + .5*3 + .25*4 = 4.5;
  # t=2 (truncated to one step): 3 + .5*4 = 5.
  assert out.shape == (3, 1)
  assert_close(out, [[9.5], [4.5], [5.0]], tol=1e-6)


def test_hand_fixture_terminal():
  discounts = np.array([[0.5], [0.0], [0.5]], np.float32)
  out = r2d2.n_step_double_q_targets(HAND_Q_TARGET, HAND_Q_ONLINE, HAND_REWARDS, discounts, n=2, rescale=False)
  # t=0: 1 + .5*2 + 0;  t=1: 2 + 0;  t=2: 3 + .5*4.
  assert_close(out, [[2.0], [2.0], [5.0]], tol=1e-6)


def test_hand_fixture_one_step_rescaled():
  discounts = np.full((3, 1), 0.5, np.float32)
  q_target = np_h(HAND_Q_TARGET).astype(np.float32)  # networks output h(Q)
  out = r2d2.n_step_double_q_targets(q_target, HAND_Q_ONLINE, HAND_REWARDS, discounts, n=1, rescale=True)
  # h(r_t + 0.5 * Q(s_{t+1}, a*)) with Q = 2, 30, 4.
  assert_close(out, np_h([[1.0 + 1.0], [2.0 + 15.0], [3.0 + 2.0]]), tol=1e-5)


@pytest.mark.parametrize("n", [1, 3, 5])
@pytest.mark.parametrize("rescale", [False, True])
@pytest.mark.parametrize("T,B,A", [(1, 1, 2), (4, 3, 4), (9, 5, 3)])
def test_matches_reference(n, rescale, T, B, A):
  inputs = random_inputs(T, B, A, seed=100 * T + 10 * n + rescale)
  out = r2d2.n_step_double_q_targets(*inputs, n=n, rescale=rescale)
  assert out.shape == (T, B) and out.dtype == tf.float32
  assert_close(out, reference_targets(*inputs, n=n, rescale=rescale))


def test_n_longer_than_sequence_is_full_truncated_return():
  T, B, A = 4, 2, 3
  q_target, q_online, rewards, discounts = random_inputs(T, B, A, seed=7, terminal_prob=0.0)
  long = r2d2.n_step_double_q_targets(q_target, q_online, rewards, discounts, n=50, rescale=False)
  exact = r2d2.n_step_double_q_targets(q_target, q_online, rewards, discounts, n=T, rescale=False)
  # Every window reaches s_T when n >= T, so n = T and n = 50 agree.
  assert_close(long, np.asarray(exact), tol=1e-6)
  assert_close(long, reference_targets(q_target, q_online, rewards, discounts, n=50, rescale=False))


def test_terminal_cuts_later_rewards_and_bootstrap():
  q_target, q_online, rewards, discounts = random_inputs(6, 3, 2, seed=8, terminal_prob=0.0)
  discounts[2] = 0.0  # episode ends at s_3
  out_a = r2d2.n_step_double_q_targets(q_target, q_online, rewards, discounts, n=5)
  rewards2, q_target2 = rewards.copy(), q_target.copy()
  rewards2[3:] += 10.0
  q_target2[3:] -= 5.0
  out_b = r2d2.n_step_double_q_targets(q_target2, q_online, rewards2, discounts, n=5)
  assert_close(out_a[:3], np.asarray(out_b[:3]), tol=1e-6)


def test_works_in_tf_function_with_unknown_time():
  spec3 = tf.TensorSpec([None, None, None], tf.float32)
  spec2 = tf.TensorSpec([None, None], tf.float32)

  @tf.function(input_signature=[spec3, spec3, spec2, spec2])
  def fn(q_target, q_online, rewards, discounts):
    return r2d2.n_step_double_q_targets(q_target, q_online, rewards, discounts, n=3)

  for T, B in [(2, 2), (7, 3), (1, 1)]:
    inputs = random_inputs(T, B, 4, seed=T)
    assert_close(fn(*inputs), reference_targets(*inputs, n=3, rescale=True))
  assert fn.experimental_get_tracing_count() == 1


def test_targets_carry_no_gradient():
  inputs = [tf.Variable(x) for x in random_inputs(4, 2, 3, seed=9)]
  with tf.GradientTape() as tape:
    total = tf.reduce_sum(r2d2.n_step_double_q_targets(*inputs, n=2))
  assert all(g is None for g in tape.gradient(total, inputs))


@pytest.mark.parametrize(
  "which,shape,match",
  [
    (0, (5, 3), "q_target_t must have rank 3"),
    (1, (6, 3, 2), "q_online_t has shape"),
    (2, (5, 3, 1), "rewards_t must have rank 2"),
    (3, (5, 2), "discounts_t has shape"),
    (2, (6, 3), "discounts_t has shape"),
  ],
)
def test_shape_errors(which, shape, match):
  inputs = list(random_inputs(5, 3, 4, seed=10))
  inputs[which] = np.zeros(shape, np.float32)
  with pytest.raises(ValueError, match=match):
    r2d2.n_step_double_q_targets(*inputs, n=2)


def test_time_mismatch_and_bad_n():
  q_target, q_online, rewards, discounts = random_inputs(5, 3, 4, seed=11)
  with pytest.raises(ValueError, match="rewards_t has shape"):
    r2d2.n_step_double_q_targets(q_target[:-1], q_online[:-1], rewards, discounts, n=2)
  with pytest.raises(ValueError, match="rewards_t has shape"):
    r2d2.n_step_double_q_targets(q_target[:, :2], q_online[:, :2], rewards, discounts, n=2)
  for bad in (0, -1, 2.0):
    with pytest.raises(ValueError, match="n must be an int"):
      r2d2.n_step_double_q_targets(q_target, q_online, rewards, discounts, n=bad)


# --------------------------------------------------------------- priorities ---


def reference_priorities(td, eta, mask=None):
  T, B = td.shape
  mask = np.ones((T, B)) if mask is None else mask
  out = np.zeros(B)
  for b in range(B):
    biggest, total, count = 0.0, 0.0, 0.0
    for t in range(T):
      if mask[t, b] > 0:
        biggest = max(biggest, abs(td[t, b]))
      total += abs(td[t, b]) * mask[t, b]
      count += mask[t, b]
    out[b] = eta * biggest + (1 - eta) * total / max(count, 1.0)
  return out


def test_priorities_hand_fixture():
  td = np.array([[1.0, -2.0], [-3.0, 0.5]], np.float32)
  # Column 0: max 3, mean 2 -> 2.7 + 0.2. Column 1: max 2, mean 1.25 -> 1.8 + 0.125.
  assert_close(r2d2.r2d2_priorities(td), [2.9, 1.925], tol=1e-6)
  # eta = 0.5: (3 + 2) / 2, (2 + 1.25) / 2.
  assert_close(r2d2.r2d2_priorities(td, eta=0.5), [2.5, 1.625], tol=1e-6)
  # Masking step (1, 0) leaves |1| for column 0; a fully masked column gives 0.
  mask = np.array([[1.0, 0.0], [0.0, 0.0]], np.float32)
  assert_close(r2d2.r2d2_priorities(td, mask_t=mask), [1.0, 0.0], tol=1e-6)


@pytest.mark.parametrize("eta", [0.0, 0.9, 1.0])
def test_priorities_match_reference(eta):
  rng = np.random.default_rng(12)
  td = rng.normal(size=(8, 5)).astype(np.float32)
  mask = (rng.uniform(size=(8, 5)) > 0.3).astype(np.float32)
  out = r2d2.r2d2_priorities(td, eta=eta)
  assert out.shape == (5,)
  assert_close(out, reference_priorities(td, eta))
  td_nan = td.copy()
  td_nan[mask == 0] = np.nan  # masked-out steps never leak into the result
  assert_close(r2d2.r2d2_priorities(td_nan, eta=eta, mask_t=mask), reference_priorities(td, eta, mask))


def test_priority_shape_errors():
  with pytest.raises(ValueError, match="td_errors_t must have rank 2"):
    r2d2.r2d2_priorities(np.zeros(3, np.float32))
  with pytest.raises(ValueError, match="mask_t has shape"):
    r2d2.r2d2_priorities(np.zeros((3, 2), np.float32), mask_t=np.ones((3, 1)))
