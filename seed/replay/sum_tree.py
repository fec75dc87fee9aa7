"""A binary sum tree over priorities: O(log n) updates and proportional sampling, vectorised in numpy.

Schaul et al. 2016, "Prioritized Experience Replay", arXiv:1511.05952, appendix B.2.1.
"""

from __future__ import annotations

import numpy as np


def check_indices(indices: np.ndarray, size: int, what: str) -> np.ndarray:
  """`indices` as int64 after checking they are 1-D integers in [0, size)."""
  indices = np.asarray(indices)
  if indices.ndim != 1:
    raise ValueError(f"indices must be 1-D, got shape {indices.shape}")
  if indices.size and not np.issubdtype(indices.dtype, np.integer):
    raise ValueError(f"indices must be integers, got dtype {indices.dtype}")
  indices = indices.astype(np.int64)
  if indices.size and (indices.min() < 0 or indices.max() >= size):
    raise ValueError(f"indices must be in [0, {size}) ({what}), got range [{indices.min()}, {indices.max()}]")
  return indices


class SumTree:
  """Binary sum tree over `capacity` non-negative priorities.

  Stored as one float64 array of size 2P (P = next power of two >= capacity):
  node 1 is the root, node i has children 2i and 2i + 1, and leaf j lives at
  P + j (leaves j >= capacity stay 0). Updates and sampling are vectorised over
  a batch, one numpy step per tree level, so both cost O(batch * log capacity).
  """

  def __init__(self, capacity: int):
    if int(capacity) != capacity or capacity < 1:
      raise ValueError(f"capacity must be a positive int, got {capacity!r}")
    self._capacity = int(capacity)
    self._num_leaves = 1 << (self._capacity - 1).bit_length()  # P
    self._depth = self._num_leaves.bit_length() - 1  # log2(P)
    self._nodes = np.zeros(2 * self._num_leaves, np.float64)

  @property
  def capacity(self) -> int:
    return self._capacity

  def total(self) -> float:
    """Sum of all priorities."""
    return float(self._nodes[1])

  def get(self, indices: np.ndarray) -> np.ndarray:
    """Priorities at `indices` (float64, same shape)."""
    indices = check_indices(indices, self._capacity, "capacity")
    return self._nodes[self._num_leaves + indices].copy()

  def update(self, indices: np.ndarray, priorities: np.ndarray) -> None:
    """Sets priorities[i] at indices[i]; with repeated indices the last one wins.

    Raises:
      ValueError: on out-of-range indices, mismatched lengths, or priorities
        that are negative or not finite.
    """
    indices = check_indices(indices, self._capacity, "capacity")
    priorities = np.asarray(priorities, np.float64).reshape(-1)
    if priorities.shape != indices.shape:
      raise ValueError(f"priorities has shape {priorities.shape}, expected {indices.shape} to match indices")
    if not np.all(np.isfinite(priorities) & (priorities >= 0)):
      raise ValueError("priorities must be finite and >= 0")
    if indices.size == 0:
      return
    nodes = self._num_leaves + indices
    self._nodes[nodes] = priorities  # numpy keeps the last of repeated indices.
    # Recompute (never increment) the parents, level by level, so sums stay
    # exactly consistent with the leaves.
    for _ in range(self._depth):
      nodes = np.unique(nodes >> 1)
      self._nodes[nodes] = self._nodes[2 * nodes] + self._nodes[2 * nodes + 1]

  def find(self, masses: np.ndarray) -> np.ndarray:
    """Leaf indices whose cumulative-priority interval contains each mass.

    Leaf j owns [sum_{i<j} p_i, sum_{i<=j} p_i). Masses outside [0, total) are
    clipped into it, and a descent never enters a zero-mass subtree, so a leaf
    with priority 0 is never returned.
    """
    if self.total() <= 0:
      raise ValueError("cannot sample from a SumTree whose total priority is 0")
    masses = np.clip(np.asarray(masses, np.float64).reshape(-1), 0.0, self.total())
    nodes = np.ones(masses.shape, np.int64)
    for _ in range(self._depth):
      left = 2 * nodes
      left_mass = self._nodes[left]
      go_right = (masses >= left_mass) & (self._nodes[left + 1] > 0)
      masses = np.where(go_right, masses - left_mass, masses)
      nodes = np.where(go_right, left + 1, left)
    return nodes - self._num_leaves

  def sample(self, batch_size: int, rng: np.random.Generator) -> np.ndarray:
    """Stratified sample: one index from each of `batch_size` equal mass slices.

    Index i is drawn with probability p_i / total() per draw (marginally), with
    lower variance than independent draws (Schaul et al. 2016, appendix B.2.1).

    Returns:
      int64 indices of shape [batch_size].
    """
    if batch_size < 1:
      raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    total = self.total()
    if total <= 0:
      raise ValueError("cannot sample from a SumTree whose total priority is 0")
    masses = (np.arange(batch_size) + rng.uniform(size=batch_size)) * (total / batch_size)
    return self.find(masses)
