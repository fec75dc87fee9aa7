"""Replay buffers for off-policy agents (numpy, used from the Python training loop).

`PrioritizedReplay` implements proportional prioritized experience replay:
T. Schaul, J. Quan, I. Antonoglou, D. Silver, "Prioritized Experience Replay",
ICLR 2016, arXiv:1511.05952 (section 3.3 for P(i) = p_i^alpha / sum_k p_k^alpha,
section 3.4 and Algorithm 1 for the importance-sampling weights
w_i = (N * P(i))^-beta / max_j w_j, appendix B.2.1 for the sum tree and
stratified sampling).

Items are nests (dicts, tuples, lists, namedtuples) of numpy arrays whose
leading dimension indexes the items being added. Storage is a fixed-capacity
ring, preallocated from the shapes and dtypes of the first `add`; once full,
each new item overwrites the oldest one (and, for `PrioritizedReplay`, its
priority).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from seed.replay.sum_tree import SumTree, check_indices
from seed.tf_utils import Nest

# -------------------------------------------------------------------- nests ---


def _flatten(nest: Nest) -> tuple[list[np.ndarray], Callable[[list], Nest]]:
  """Leaves in a fixed order (dict keys sorted) and a function rebuilding the nest."""
  if isinstance(nest, dict):
    keys = sorted(nest)
    parts = [_flatten(nest[k]) for k in keys]
    leaves = [leaf for part, _ in parts for leaf in part]
    sizes = [len(part) for part, _ in parts]

    def unflatten(flat):
      out, i = {}, 0
      for k, (_, rebuild), size in zip(keys, parts, sizes):
        out[k] = rebuild(flat[i : i + size])
        i += size
      return out

    return leaves, unflatten

  if isinstance(nest, (tuple, list)):
    parts = [_flatten(x) for x in nest]
    leaves = [leaf for part, _ in parts for leaf in part]
    sizes = [len(part) for part, _ in parts]
    is_namedtuple = isinstance(nest, tuple) and hasattr(nest, "_fields")

    def unflatten(flat):
      values, i = [], 0
      for (_, rebuild), size in zip(parts, sizes):
        values.append(rebuild(flat[i : i + size]))
        i += size
      if is_namedtuple:
        return type(nest)(*values)
      return type(nest)(values)

    return leaves, unflatten

  return [nest], lambda flat: flat[0]


def _structure_key(nest: Nest) -> Any:
  """A hashable description of the nest's structure (not of its leaves)."""
  if isinstance(nest, dict):
    return ("dict", tuple((k, _structure_key(nest[k])) for k in sorted(nest)))
  if isinstance(nest, (tuple, list)):
    return (type(nest).__name__, tuple(_structure_key(x) for x in nest))
  return "leaf"


# ------------------------------------------------------------------ storage ---


class _RingStorage:
  """Preallocated ring of nests of numpy arrays."""

  def __init__(self, capacity: int):
    if int(capacity) != capacity or capacity < 1:
      raise ValueError(f"capacity must be a positive int, got {capacity!r}")
    self._capacity = int(capacity)
    self._arrays: list[np.ndarray] | None = None
    self._unflatten: Callable[[list], Nest] | None = None
    self._structure = None
    self._next = 0  # slot the next item goes to
    self._size = 0

  @property
  def capacity(self) -> int:
    return self._capacity

  def __len__(self) -> int:
    return self._size

  @property
  def nbytes(self) -> int:
    """Bytes held by the storage arrays (0 before the first add)."""
    return 0 if self._arrays is None else sum(a.nbytes for a in self._arrays)

  def _write(self, items: Nest) -> tuple[np.ndarray, slice]:
    """Stores the items; returns their slots and which input rows were kept."""
    leaves, unflatten = _flatten(items)
    leaves = [np.asarray(x) for x in leaves]
    structure = _structure_key(items)
    if not leaves:
      raise ValueError("items contain no arrays")
    if any(x.ndim == 0 for x in leaves):
      raise ValueError("every array in items needs a leading (item) dimension")
    count = leaves[0].shape[0]
    if any(x.shape[0] != count for x in leaves):
      raise ValueError(f"arrays in items have different leading dimensions: {[x.shape[0] for x in leaves]}")

    if self._arrays is None:
      self._arrays = [np.zeros((self._capacity,) + x.shape[1:], x.dtype) for x in leaves]
      self._unflatten = unflatten
      self._structure = structure
    else:
      if structure != self._structure:
        raise ValueError("items have a different nest structure than the first add")
      for i, (x, a) in enumerate(zip(leaves, self._arrays)):
        if x.shape[1:] != a.shape[1:]:
          raise ValueError(f"item array {i} has per-item shape {x.shape[1:]}, expected {a.shape[1:]}")
        if not np.can_cast(x.dtype, a.dtype, "same_kind"):
          raise ValueError(f"item array {i} has dtype {x.dtype}, cannot store it as {a.dtype}")

    # Only the newest `capacity` items can survive.
    kept = slice(max(0, count - self._capacity), count)
    count = kept.stop - kept.start
    slots = (self._next + np.arange(count)) % self._capacity
    for x, a in zip(leaves, self._arrays):
      a[slots] = x[kept]
    self._next = (self._next + count) % self._capacity
    self._size = min(self._size + count, self._capacity)
    return slots, kept

  def _gather(self, indices: np.ndarray) -> Nest:
    return self._unflatten([a[indices] for a in self._arrays])


# ------------------------------------------------------------------ buffers ---


class UniformReplay(_RingStorage):
  """Fixed-capacity ring buffer sampled uniformly with replacement."""

  def add(self, items: Nest) -> np.ndarray:
    """Stores a batch of items (leading dim = items); returns their slots.

    If more than `capacity` items are given, only the last `capacity` are kept.
    """
    slots, _ = self._write(items)
    return slots

  def sample(self, batch_size: int, rng: np.random.Generator) -> Nest:
    """A nest of arrays with leading dim batch_size, drawn uniformly."""
    if self._size == 0:
      raise ValueError("cannot sample from an empty replay")
    if batch_size < 1:
      raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return self._gather(rng.integers(0, self._size, size=batch_size))


class PrioritizedReplay(_RingStorage):
  """Proportional prioritized replay (Schaul et al. 2016, arXiv:1511.05952).

  Item i is sampled with probability P(i) = p_i^alpha / sum_k p_k^alpha. The
  tree stores p_i^alpha (and 0 for p_i = 0, even when alpha = 0, so a zero
  priority always means "never sample").
  """

  def __init__(self, capacity: int, alpha: float = 0.6):
    super().__init__(capacity)
    if alpha < 0:
      raise ValueError(f"alpha must be >= 0, got {alpha}")
    self._alpha = float(alpha)
    self._tree = SumTree(self._capacity)
    self._max_priority = 1.0

  @property
  def alpha(self) -> float:
    return self._alpha

  @property
  def max_priority(self) -> float:
    """Largest priority seen so far (1.0 initially); used for new items."""
    return self._max_priority

  def _tree_values(self, priorities: np.ndarray) -> np.ndarray:
    powered = np.power(priorities, self._alpha)
    return np.where(priorities > 0, powered, 0.0)

  @staticmethod
  def _check_priorities(priorities: Any) -> np.ndarray:
    priorities = np.asarray(priorities, np.float64).reshape(-1)
    if not np.all(np.isfinite(priorities) & (priorities >= 0)):
      raise ValueError("priorities must be finite and >= 0")
    return priorities

  def add(self, items: Nest, priorities: np.ndarray | None = None) -> np.ndarray:
    """Stores a batch of items with their (raw, pre-alpha) priorities.

    Args:
      items: nest of arrays, leading dim = number of items N.
      priorities: [N] priorities >= 0, or None for the max priority seen so far.

    Returns:
      The slots the items went to (only the last `capacity` if N > capacity).
    """
    if priorities is not None:
      priorities = self._check_priorities(priorities)
      leaves = _flatten(items)[0]
      count = np.shape(leaves[0])[0] if leaves and np.ndim(leaves[0]) else None
      if count is not None and priorities.shape[0] != count:
        raise ValueError(f"priorities has length {priorities.shape[0]}, expected {count} (one per item)")
    slots, kept = self._write(items)
    if priorities is None:
      priorities = np.full(slots.shape, self._max_priority)
    else:
      priorities = priorities[kept]
      if priorities.size:
        self._max_priority = max(self._max_priority, float(priorities.max()))
    self._tree.update(slots, self._tree_values(priorities))
    return slots

  def sample(self, batch_size: int, rng: np.random.Generator, beta: float) -> tuple[Nest, np.ndarray, np.ndarray]:
    """Stratified prioritized sample.

    Args:
      batch_size: number of items to draw (with replacement).
      rng: numpy random Generator.
      beta: importance-sampling exponent in [0, 1].

    Returns:
      (items, indices, weights): the sampled nest (leading dim batch_size),
      their int64 slots, and float32 weights (N * P(i))^-beta / max_j w_j with
      N = len(self) and the max over the sampled batch.

    Raises:
      ValueError: if the buffer is empty or all priorities are 0.
    """
    if self._size == 0:
      raise ValueError("cannot sample from an empty replay")
    indices = self._tree.sample(batch_size, rng)
    probs = self._tree.get(indices) / self._tree.total()
    weights = np.power(self._size * probs, -beta)
    weights /= weights.max()
    return self._gather(indices), indices, weights.astype(np.float32)

  def update_priorities(self, indices: np.ndarray, priorities: np.ndarray) -> None:
    """Sets new raw priorities (e.g. |TD errors|) for previously sampled slots."""
    indices = check_indices(indices, self._size, "stored items")
    priorities = self._check_priorities(priorities)
    if priorities.shape != indices.shape:
      raise ValueError(f"priorities has shape {priorities.shape}, expected {indices.shape} to match indices")
    if priorities.size:
      self._max_priority = max(self._max_priority, float(priorities.max()))
    self._tree.update(indices, self._tree_values(priorities))
