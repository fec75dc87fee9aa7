"""Nested structures of tensor specs, as a server describes its methods to clients; TensorFlow-free.

A bound function's inputs and outputs (tuples, lists, dicts, namedtuples of
TensorSpecs, None leaves) travel as JSON. `decode` rebuilds them with `Spec`
leaves; `flatten` and `pack` follow tf.nest's order (dict keys sorted, None a
leaf), so a TensorFlow process and a numpy-only one see the same flat list.
"""

from __future__ import annotations

import collections
from typing import Any, NamedTuple


class Spec(NamedTuple):
  """A tensor's declared shape (None: unknown rank; None dims: unknown), TF dtype name and name."""

  shape: tuple | None
  dtype: str
  name: str | None


def _is_namedtuple(value) -> bool:
  return isinstance(value, tuple) and hasattr(value, "_fields")


def decode(node: dict, leaf=Spec) -> Any:
  """The structure a server sent; `leaf(shape, dtype_name, name)` builds each spec (default: Spec)."""
  if "none" in node:
    return None
  if "spec" in node:
    shape, dtype, name = node["spec"]
    return leaf(None if shape is None else tuple(shape), dtype, name)
  if "namedtuple" in node:
    cls = collections.namedtuple(node["namedtuple"], node["fields"])
    return cls(*[decode(v, leaf) for v in node["values"]])
  if "tuple" in node:
    return tuple(decode(v, leaf) for v in node["tuple"])
  if "list" in node:
    return [decode(v, leaf) for v in node["list"]]
  return {k: decode(v, leaf) for k, v in node["dict"]}


def _is_leaf(value) -> bool:
  """None, a Spec, a tf.TensorSpec or any other non-container."""
  return isinstance(value, Spec) or not isinstance(value, (tuple, list, dict))


def flatten(structure) -> list:
  """The leaves in tf.nest order: sequences in order, dicts by sorted key; None and specs are leaves."""
  if _is_leaf(structure):
    return [structure]
  if isinstance(structure, dict):
    return [x for k in sorted(structure) for x in flatten(structure[k])]
  return [x for v in structure for x in flatten(v)]


def pack(structure, leaves: list) -> Any:
  """`leaves` (as many as flatten(structure) gives) put back into the shape of `structure`."""
  want = len(flatten(structure))
  if len(leaves) != want:
    raise ValueError(f"{len(leaves)} leaves for a structure of {want}")
  it = iter(leaves)

  def build(s):
    if _is_leaf(s):
      return next(it)
    if isinstance(s, dict):
      values = {k: build(s[k]) for k in sorted(s)}  # filled in sorted order, kept in the structure's
      return {k: values[k] for k in s}
    if _is_namedtuple(s):
      return type(s)(*[build(v) for v in s])
    return type(s)(build(v) for v in s)

  return build(structure)


def flatten_like(structure, value, where: str) -> list:
  """Flattens a call's `value` down to the leaves of `structure` (in tf.nest order).

  Unlike flatten, a Python list where the structure has a spec stays one value
  (it becomes one tensor). TypeError names the argument that does not match.
  """
  if _is_leaf(structure):
    return [value]
  if isinstance(structure, dict):
    if not isinstance(value, dict) or set(value) != set(structure):
      raise TypeError(
        f"{where}: expected a dict with keys {sorted(structure)}, got {value!r}; arguments do not match the signature"
      )
    return [x for k in sorted(structure) for x in flatten_like(structure[k], value[k], f"{where}[{k!r}]")]
  if not isinstance(value, (tuple, list)) or len(value) != len(structure):
    raise TypeError(
      f"{where}: expected a sequence of {len(structure)}, got {value!r}; arguments do not match the signature"
    )
  return [x for i, (s, v) in enumerate(zip(structure, value)) for x in flatten_like(s, v, f"{where}[{i}]")]
