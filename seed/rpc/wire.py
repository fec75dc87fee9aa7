"""The tensor framing of grpc/wire.cc, in numpy, for the direct eager path.

Layout: b"SEDT", u32 count, then per tensor: u32 TF DataType enum, u32 rank,
i64 dims[rank], data (raw little-endian elements; for strings u64 lengths then
the bytes).
"""

from __future__ import annotations

import math
import struct

import numpy as np
import tensorflow as tf

MAGIC = b"SEDT"
_STRING = tf.string.as_datatype_enum
_DTYPES = [
  tf.float16,
  tf.bfloat16,
  tf.float32,
  tf.float64,
  tf.int8,
  tf.int16,
  tf.int32,
  tf.int64,
  tf.uint8,
  tf.uint16,
  tf.uint32,
  tf.uint64,
  tf.complex64,
  tf.complex128,
  tf.bool,
]
_TO_ENUM = {np.dtype(d.as_numpy_dtype): d.as_datatype_enum for d in _DTYPES}
_FROM_ENUM = {d.as_datatype_enum: np.dtype(d.as_numpy_dtype) for d in _DTYPES}


def _encode_strings(arr: np.ndarray) -> np.ndarray:
  """An object array of bytes (str elements UTF-8 encoded)."""
  if not arr.size:
    return arr.astype(object)
  return np.vectorize(lambda v: v.encode() if isinstance(v, str) else v, otypes=[object])(arr)


def as_array(value, dtype: tf.DType) -> np.ndarray:
  """Converts a call argument like tf.convert_to_tensor(value, dtype_hint) would.

  Tensors and arrays keep their dtype (a mismatch is reported by the server);
  Python values take `dtype` when that is a same-kind conversion.
  """
  if isinstance(value, (tf.Tensor, tf.Variable)):
    value = np.asarray(value.numpy())  # scalars come back as numpy scalars
  if isinstance(value, np.ndarray):
    return _encode_strings(value) if value.dtype.kind in "US" else value
  arr = np.asarray(value, dtype=object if dtype == tf.string else None)
  if dtype == tf.string or arr.dtype.kind in "US":
    return _encode_strings(arr)
  want = np.dtype(dtype.as_numpy_dtype)
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
    enum = _TO_ENUM.get(a.dtype)
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
    dtype = _FROM_ENUM[enum]
    out.append(np.frombuffer(data, dtype, n, pos).reshape(shape))
    pos += n * dtype.itemsize
  return out
