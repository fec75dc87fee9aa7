"""The tensor framing of grpc/wire.cc, in numpy, for the direct eager path.

Layout: b"SEDT", u32 count, then per tensor: u32 TF DataType enum, u32 rank,
i64 dims[rank], data (raw little-endian elements; for strings u64 lengths then
the bytes).
"""

from __future__ import annotations

import functools
import math
import struct

import numpy as np

MAGIC = b"SEDT"
# TensorFlow's DataType enum (types.proto) and dtype names for what the wire carries; TensorFlow-free.
# bfloat16 is ml_dtypes' type (the numpy type TensorFlow itself uses), imported only when a bfloat16
# tensor comes up: the import takes ~0.5 s, a third of an actor's start. tests/test_rpc_client.py
# checks this table against tf.dtypes.
_STRING = 7
_BFLOAT16 = 14
_TYPES = {  # name: (enum, numpy dtype)
  "float32": (1, np.float32),
  "float64": (2, np.float64),
  "int32": (3, np.int32),
  "uint8": (4, np.uint8),
  "int16": (5, np.int16),
  "int8": (6, np.int8),
  "complex64": (8, np.complex64),
  "int64": (9, np.int64),
  "bool": (10, np.bool_),
  "uint16": (17, np.uint16),
  "complex128": (18, np.complex128),
  "float16": (19, np.float16),
  "uint32": (22, np.uint32),
  "uint64": (23, np.uint64),
}
_TO_ENUM = {np.dtype(t): enum for enum, t in _TYPES.values()}
_FROM_ENUM = {enum: np.dtype(t) for enum, t in _TYPES.values()}


@functools.cache
def _bfloat16() -> np.dtype:
  import ml_dtypes  # pylint: disable=g-import-not-at-top

  return np.dtype(ml_dtypes.bfloat16)


def _enum(dtype: np.dtype) -> int | None:
  enum = _TO_ENUM.get(dtype)
  return _BFLOAT16 if enum is None and dtype.name == "bfloat16" and dtype == _bfloat16() else enum


def _from_enum(enum: int) -> np.dtype:
  return _bfloat16() if enum == _BFLOAT16 else _FROM_ENUM[enum]


def numpy_dtype(name: str) -> np.dtype:
  """The numpy dtype of a TensorFlow dtype name ("float32", "bfloat16", "string": object)."""
  if name == "string":
    return np.dtype(object)
  if name == "bfloat16":
    return _bfloat16()
  if name not in _TYPES:
    raise TypeError(f"dtype {name} cannot be sent over RPC")
  return np.dtype(_TYPES[name][1])


def _encode_strings(arr: np.ndarray) -> np.ndarray:
  """An object array of bytes (str elements UTF-8 encoded)."""
  if not arr.size:
    return arr.astype(object)
  return np.vectorize(lambda v: v.encode() if isinstance(v, str) else v, otypes=[object])(arr)


def as_array(value, dtype: str) -> np.ndarray:
  """Converts a call argument like tf.convert_to_tensor(value, dtype_hint) would; `dtype` is a TF dtype name.

  Tensors and arrays keep their dtype (a mismatch is reported by the server);
  Python values take `dtype` when that is a same-kind conversion.
  """
  if not isinstance(value, np.ndarray) and hasattr(value, "numpy"):  # tf.Tensor, tf.Variable: no TF import
    value = np.asarray(value.numpy())  # scalars come back as numpy scalars
  if isinstance(value, np.ndarray):
    return _encode_strings(value) if value.dtype.kind in "US" else value
  string = dtype == "string"
  arr = np.asarray(value, dtype=object if string else None)
  if string or arr.dtype.kind in "US":
    return _encode_strings(arr)
  want = numpy_dtype(dtype)
  if arr.dtype != want and np.can_cast(arr.dtype, want, casting="same_kind"):
    arr = arr.astype(want)
  return arr


def serialize(arrays: list[np.ndarray]) -> bytes:
  parts = [MAGIC, struct.pack("<I", len(arrays))]
  for a in arrays:
    if a.dtype == object:
      items = [x if isinstance(x, bytes) else bytes(x) for x in a.reshape(-1)]
      parts.append(struct.pack(f"<II{a.ndim}q", _STRING, a.ndim, *a.shape))
      parts.append(np.array([len(x) for x in items], "<u8").tobytes())
      parts.extend(items)
      continue
    enum = _enum(a.dtype)
    if enum is None:
      raise TypeError(f"dtype {a.dtype} cannot be sent over RPC")
    parts.append(struct.pack(f"<II{a.ndim}q", enum, a.ndim, *a.shape))
    a = np.ascontiguousarray(a)
    parts.append(a.reshape(-1).view(np.uint8).data)  # a view: join copies each array's bytes once
  return b"".join(parts)


def parse(data: bytes) -> list[np.ndarray]:
  if data[:4] != MAGIC:
    raise ValueError("malformed tensor payload: bad magic")
  (count,), pos = struct.unpack_from("<I", data, 4), 8
  out = []
  for _ in range(count):
    enum, rank = struct.unpack_from("<II", data, pos)
    shape = struct.unpack_from(f"<{rank}q", data, pos + 8)
    pos += 8 + 8 * rank
    n = math.prod(shape)
    if enum == _STRING:
      lengths = np.frombuffer(data, "<u8", n, pos)
      pos += 8 * n
      items = np.empty(n, object)
      for i, length in enumerate(lengths.tolist()):
        items[i] = data[pos : pos + length]
        pos += length
      out.append(items.reshape(shape))
      continue
    dtype = _from_enum(enum)
    out.append(np.frombuffer(data, dtype, n, pos).reshape(shape))
    pos += n * dtype.itemsize
  return out
