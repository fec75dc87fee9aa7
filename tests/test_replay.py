"""Sum tree and replay buffers (seed.replay).

Sampling is checked against the target distribution with a chi-square
statistic over many draws (fixed seeds, so the tests are deterministic), and
the sum-tree descent against an independent cumsum + searchsorted lookup.
"""

import collections

import numpy as np
import pytest

from seed import replay


def chi_square(counts, probs):
  """Pearson's statistic over the cells with nonzero expected count."""
  counts = np.asarray(counts, np.float64)
  expected = counts.sum() * np.asarray(probs, np.float64)
  cells = expected > 0
  return float(np.sum((counts[cells] - expected[cells]) ** 2 / expected[cells]))


def chi_square_ok(counts, probs):
  """Statistic below df + 6 sqrt(2 df): a ~6-sigma bound, far from flaky."""
  df = int(np.sum(np.asarray(probs) > 0)) - 1
  return chi_square(counts, probs) < df + 6 * np.sqrt(2 * max(df, 1))


def draw_counts(sample_fn, capacity, draws, batch_size=250):
  counts = np.zeros(capacity, np.int64)
  for _ in range(draws // batch_size):
    counts += np.bincount(sample_fn(batch_size), minlength=capacity)
  return counts


# ----------------------------------------------------------------- SumTree ---


@pytest.mark.parametrize("capacity", [1, 2, 5, 7, 8, 1000])
def test_sum_tree_update_total_get(capacity):
  tree = replay.SumTree(capacity)
  assert tree.total() == 0.0
  rng = np.random.default_rng(capacity)
  priorities = rng.uniform(0.0, 3.0, size=capacity)
  tree.update(np.arange(capacity), priorities)
  assert tree.total() == pytest.approx(priorities.sum(), rel=1e-12)
  np.testing.assert_array_equal(tree.get(np.arange(capacity)), priorities)
  # Update a subset; totals follow.
  idx = np.arange(0, capacity, 2)
  priorities[idx] = 0.5
  tree.update(idx, np.full(idx.shape, 0.5))
  assert tree.total() == pytest.approx(priorities.sum(), rel=1e-12)
  np.testing.assert_array_equal(tree.get(np.arange(capacity)), priorities)


def test_sum_tree_repeated_indices_last_wins():
  tree = replay.SumTree(4)
  tree.update(np.array([1, 1, 2, 1]), np.array([5.0, 6.0, 1.0, 2.0]))
  np.testing.assert_array_equal(tree.get(np.arange(4)), [0.0, 2.0, 1.0, 0.0])
  assert tree.total() == 3.0


def test_sum_tree_find_against_searchsorted():
  capacity = 1003  # not a power of two
  rng = np.random.default_rng(0)
  priorities = rng.exponential(size=capacity)
  priorities[rng.uniform(size=capacity) < 0.3] = 0.0
  tree = replay.SumTree(capacity)
  tree.update(np.arange(capacity), priorities)
  masses = rng.uniform(0.0, priorities.sum(), size=5000)
  expected = np.searchsorted(np.cumsum(priorities), masses, side="right")
  np.testing.assert_array_equal(tree.find(masses), expected)


def test_sum_tree_find_boundaries_skip_zero_leaves():
  tree = replay.SumTree(5)
  tree.update(np.arange(5), np.array([1.0, 0.0, 2.0, 0.0, 0.0]))
  # Leaf 0 owns [0, 1), leaf 2 owns [1, 3); out-of-range masses are clipped and
  # never land on the zero leaves at the end.
  np.testing.assert_array_equal(tree.find(np.array([0.0, 0.999, 1.0, 2.999, 3.0, 7.0, -1.0])), [0, 0, 2, 2, 2, 2, 0])


def test_sum_tree_stratified_sampling_covers_every_stratum():
  tree = replay.SumTree(6)
  tree.update(np.arange(6), np.ones(6))
  rng = np.random.default_rng(1)
  for _ in range(20):
    # One draw per 1/6 of the mass: each index exactly once, in order.
    np.testing.assert_array_equal(tree.sample(6, rng), np.arange(6))


@pytest.mark.parametrize("capacity", [7, 16])
def test_sum_tree_sampling_proportions(capacity):
  rng = np.random.default_rng(2)
  priorities = rng.uniform(0.0, 5.0, size=capacity)
  priorities[[1, 4]] = 0.0
  tree = replay.SumTree(capacity)
  tree.update(np.arange(capacity), priorities)
  counts = draw_counts(lambda n: tree.sample(n, rng), capacity, 50_000)
  assert counts[1] == 0 and counts[4] == 0
  assert chi_square_ok(counts, priorities / priorities.sum())

  # Updates change the proportions.
  priorities[[0, 1]] = [20.0, 3.0]
  tree.update(np.array([0, 1]), priorities[[0, 1]])
  counts = draw_counts(lambda n: tree.sample(n, rng), capacity, 50_000)
  assert counts[4] == 0 and counts[1] > 0
  assert chi_square_ok(counts, priorities / priorities.sum())
  # ... and the old proportions no longer fit.
  old = priorities.copy()
  old[[0, 1]] = 0.0
  assert chi_square(counts, old / old.sum() * 0.999 + 0.001 / capacity) > 1000


def test_sum_tree_sampling_is_vectorised_and_fast_enough():
  capacity = (1 << 17) + 3
  tree = replay.SumTree(capacity)
  tree.update(np.arange(capacity), np.ones(capacity))
  rng = np.random.default_rng(3)
  indices = tree.sample(100_000, rng)
  assert indices.shape == (100_000,) and indices.dtype == np.int64
  assert indices.min() >= 0 and indices.max() < capacity


def test_sum_tree_errors():
  with pytest.raises(ValueError, match="capacity"):
    replay.SumTree(0)
  tree = replay.SumTree(3)
  with pytest.raises(ValueError, match=">= 0"):
    tree.update(np.array([0]), np.array([-1.0]))
  with pytest.raises(ValueError, match=">= 0"):
    tree.update(np.array([0]), np.array([np.nan]))
  with pytest.raises(ValueError, match="indices must be in"):
    tree.update(np.array([3]), np.array([1.0]))
  with pytest.raises(ValueError, match="priorities has shape"):
    tree.update(np.array([0, 1]), np.array([1.0]))
  with pytest.raises(ValueError, match="total priority is 0"):
    tree.sample(4, np.random.default_rng(0))
  assert tree.total() == 0.0  # failed updates changed nothing


# ------------------------------------------------------- PrioritizedReplay ---


def make_items(ids, obs_shape=(2, 3)):
  ids = np.asarray(ids)
  return {
    "obs": np.broadcast_to(ids[:, None, None], (len(ids),) + obs_shape).astype(np.uint8),
    "id": ids.astype(np.int64),
    "extra": (ids.astype(np.float32) * 0.5, np.stack([ids, -ids], axis=1)),
  }


def test_prioritized_roundtrip_structure_and_dtypes():
  buf = replay.PrioritizedReplay(10, alpha=0.6)
  assert len(buf) == 0 and buf.nbytes == 0
  slots = buf.add(make_items([3, 4, 5]), priorities=np.array([1.0, 2.0, 3.0]))
  np.testing.assert_array_equal(slots, [0, 1, 2])
  assert len(buf) == 3
  items, indices, weights = buf.sample(32, np.random.default_rng(0), beta=0.4)
  assert set(items) == {"obs", "id", "extra"}
  assert items["obs"].shape == (32, 2, 3) and items["obs"].dtype == np.uint8
  assert isinstance(items["extra"], tuple) and items["extra"][1].shape == (32, 2)
  assert indices.shape == (32,) and weights.shape == (32,) and weights.dtype == np.float32
  # Items come from the sampled slots.
  np.testing.assert_array_equal(items["id"], indices + 3)
  np.testing.assert_array_equal(items["obs"][:, 1, 2], indices + 3)
  np.testing.assert_allclose(items["extra"][0], (indices + 3) * 0.5)


def test_prioritized_namedtuple_items():
  Step = collections.namedtuple("Step", ["obs", "reward"])
  buf = replay.PrioritizedReplay(4)
  buf.add(Step(np.zeros((2, 3), np.float32), np.ones(2, np.float32)))
  items, _, _ = buf.sample(5, np.random.default_rng(0), beta=1.0)
  assert isinstance(items, Step) and items.obs.shape == (5, 3)


def test_prioritized_proportions_follow_alpha():
  rng = np.random.default_rng(4)
  priorities = np.array([1.0, 4.0, 9.0, 0.0, 16.0])
  for alpha in (1.0, 0.5, 0.0):
    buf = replay.PrioritizedReplay(5, alpha=alpha)
    buf.add(make_items(range(5)), priorities)
    counts = draw_counts(lambda n: buf.sample(n, rng, beta=0.5)[1], 5, 40_000)
    assert counts[3] == 0  # zero priority is never sampled, even with alpha = 0
    target = np.where(priorities > 0, priorities**alpha, 0.0)
    assert chi_square_ok(counts, target / target.sum()), alpha


def test_prioritized_default_priority_is_max_seen():
  rng = np.random.default_rng(5)
  buf = replay.PrioritizedReplay(6, alpha=1.0)
  assert buf.max_priority == 1.0
  buf.add(make_items([0, 1]))  # priority 1 each
  buf.add(make_items([2]), np.array([4.0]))
  assert buf.max_priority == 4.0
  buf.add(make_items([3]))  # gets 4
  buf.update_priorities(np.array([0]), np.array([6.0]))
  buf.add(make_items([4]))  # gets 6
  assert buf.max_priority == 6.0
  expected = np.array([6.0, 1.0, 4.0, 4.0, 6.0, 0.0])
  counts = draw_counts(lambda n: buf.sample(n, rng, beta=0.5)[1], 6, 40_000)
  assert counts[5] == 0
  assert chi_square_ok(counts, expected / expected.sum())


def test_prioritized_update_priorities_changes_proportions():
  rng = np.random.default_rng(6)
  buf = replay.PrioritizedReplay(4, alpha=1.0)
  buf.add(make_items(range(4)), np.ones(4))
  buf.update_priorities(np.array([0, 2]), np.array([0.0, 7.0]))
  counts = draw_counts(lambda n: buf.sample(n, rng, beta=0.5)[1], 4, 20_000)
  assert counts[0] == 0
  assert chi_square_ok(counts, np.array([0.0, 1.0, 7.0, 1.0]) / 9.0)
  with pytest.raises(ValueError, match=">= 0"):
    buf.update_priorities(np.array([1]), np.array([-0.5]))
  with pytest.raises(ValueError, match="indices must be in"):
    buf.update_priorities(np.array([4]), np.array([1.0]))


def test_prioritized_importance_weights_formula():
  alpha, beta = 0.7, 0.4
  priorities = np.array([0.5, 2.0, 3.0, 0.1, 1.5, 4.0, 0.0])
  buf = replay.PrioritizedReplay(10, alpha=alpha)  # only 7 of 10 slots used
  buf.add(make_items(range(7)), priorities)
  _, indices, weights = buf.sample(64, np.random.default_rng(7), beta=beta)
  probs = priorities**alpha / np.sum(priorities**alpha)
  direct = np.array([(7 * probs[i]) ** -beta for i in indices])
  direct /= direct.max()
  np.testing.assert_allclose(weights, direct, rtol=1e-6)
  assert weights.max() == pytest.approx(1.0)
  # beta = 0: all weights are 1.
  _, _, weights = buf.sample(16, np.random.default_rng(8), beta=0.0)
  np.testing.assert_array_equal(weights, np.ones(16, np.float32))


def test_prioritized_wrap_around_overwrites_items_and_priorities():
  rng = np.random.default_rng(9)
  buf = replay.PrioritizedReplay(5, alpha=1.0)
  buf.add(make_items([0, 1, 2]), np.array([100.0, 1.0, 1.0]))
  slots = buf.add(make_items([3, 4, 5, 6]), np.array([1.0, 1.0, 1.0, 1.0]))
  np.testing.assert_array_equal(slots, [3, 4, 0, 1])
  assert len(buf) == 5
  # Item 0 (priority 100) was overwritten by item 5 (priority 1): uniform now.
  items, indices, _ = buf.sample(20_000, rng, beta=0.5)
  ids = items["id"]
  assert set(np.unique(ids)) == {2, 3, 4, 5, 6}
  np.testing.assert_array_equal(ids, np.array([5, 6, 2, 3, 4])[indices])
  assert chi_square_ok(np.bincount(indices, minlength=5), np.full(5, 0.2))


def test_prioritized_add_more_than_capacity_keeps_newest():
  buf = replay.PrioritizedReplay(3, alpha=1.0)
  buf.add(make_items([10]))
  slots = buf.add(make_items(range(7)), np.array([5.0, 5.0, 5.0, 5.0, 0.0, 1.0, 2.0]))
  np.testing.assert_array_equal(slots, [1, 2, 0])
  items, indices, _ = buf.sample(3000, np.random.default_rng(10), beta=1.0)
  # Items 4, 5, 6 in slots 1, 2, 0 with priorities 0, 1, 2.
  assert set(np.unique(items["id"])) == {5, 6}
  assert buf.max_priority == 2.0
  assert chi_square_ok(np.bincount(indices, minlength=3), [2 / 3, 0.0, 1 / 3])


def test_prioritized_nbytes():
  buf = replay.PrioritizedReplay(10)
  buf.add({"obs": np.zeros((2, 3, 4), np.float32), "act": np.zeros(2, np.int64)})
  assert buf.nbytes == 10 * 12 * 4 + 10 * 8
  buf.add({"obs": np.zeros((20, 3, 4), np.float32), "act": np.zeros(20, np.int64)})
  assert buf.nbytes == 560  # preallocated, does not grow


def test_prioritized_errors():
  rng = np.random.default_rng(0)
  buf = replay.PrioritizedReplay(4)
  with pytest.raises(ValueError, match="empty"):
    buf.sample(2, rng, beta=0.5)
  buf.add(make_items([0, 1]))
  with pytest.raises(ValueError, match="priorities has length"):
    buf.add(make_items([2, 3]), np.array([1.0]))
  with pytest.raises(ValueError, match=">= 0"):
    buf.add(make_items([2]), np.array([-1.0]))
  with pytest.raises(ValueError, match="structure"):
    buf.add({"obs": np.zeros((1, 2, 3), np.uint8)})
  with pytest.raises(ValueError, match="per-item shape"):
    buf.add(make_items([2], obs_shape=(3, 3)))
  with pytest.raises(ValueError, match="leading dimensions"):
    buf.add(
      {
        "obs": np.zeros((2, 2, 3), np.uint8),
        "id": np.zeros(1, np.int64),
        "extra": (np.zeros(2, np.float32), np.zeros((2, 2), np.int64)),
      }
    )
  assert len(buf) == 2  # rejected adds changed nothing
  with pytest.raises(ValueError, match="alpha"):
    replay.PrioritizedReplay(4, alpha=-1.0)


# ------------------------------------------------------------ UniformReplay ---


def test_uniform_replay_ring_and_sampling():
  rng = np.random.default_rng(11)
  buf = replay.UniformReplay(5)
  with pytest.raises(ValueError, match="empty"):
    buf.sample(2, rng)
  buf.add(make_items([0, 1, 2]))
  assert len(buf) == 3
  items = buf.sample(30_000, rng)
  assert set(np.unique(items["id"])) == {0, 1, 2}
  assert chi_square_ok(np.bincount(items["id"], minlength=3), np.full(3, 1 / 3))

  slots = buf.add(make_items([3, 4, 5, 6]))
  np.testing.assert_array_equal(slots, [3, 4, 0, 1])
  assert len(buf) == 5
  items = buf.sample(30_000, rng)
  assert items["obs"].shape == (30_000, 2, 3) and isinstance(items["extra"], tuple)
  counts = np.bincount(items["id"], minlength=7)
  assert counts[0] == 0 and counts[1] == 0
  assert chi_square_ok(counts[2:], np.full(5, 0.2))


def test_uniform_replay_nbytes_and_errors():
  buf = replay.UniformReplay(8)
  assert buf.nbytes == 0
  buf.add((np.zeros((3, 5), np.float64), np.zeros(3, np.uint8)))
  assert buf.nbytes == 8 * 5 * 8 + 8
  with pytest.raises(ValueError, match="cannot store"):
    buf.add((np.zeros((1, 5), np.complex64), np.zeros(1, np.uint8)))
  with pytest.raises(ValueError, match="capacity"):
    replay.UniformReplay(0)
