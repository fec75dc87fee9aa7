"""Errors of a tensor-RPC call without TensorFlow: one class per gRPC status code.

`seed.rpc.client` raises these; `seed.grpc.Client` (where TensorFlow is loaded)
raises the matching `tf.errors` class instead, as it always has. Each carries
`code` (the gRPC/TF status code) and `message` (the server's text).
"""

from __future__ import annotations

# Status message of every call to a server after `Server.complete()` (code OUT_OF_RANGE).
RUN_COMPLETE = "run complete"


class RpcError(Exception):
  """A call failed with a gRPC status: `code` (1..16) and `message`."""

  code = 2

  def __init__(self, message: str):
    super().__init__(message)
    self.message = message


class Cancelled(RpcError):
  code = 1


class Unknown(RpcError):
  code = 2


class InvalidArgument(RpcError):
  code = 3


class DeadlineExceeded(RpcError):
  code = 4


class NotFound(RpcError):
  code = 5


class AlreadyExists(RpcError):
  code = 6


class PermissionDenied(RpcError):
  code = 7


class ResourceExhausted(RpcError):
  code = 8


class FailedPrecondition(RpcError):
  code = 9


class Aborted(RpcError):
  code = 10


class OutOfRange(RpcError):
  code = 11


class Unimplemented(RpcError):
  code = 12


class Internal(RpcError):
  code = 13


class Unavailable(RpcError):
  code = 14


class DataLoss(RpcError):
  code = 15


class Unauthenticated(RpcError):
  code = 16


BY_CODE: dict[int, type[RpcError]] = {
  cls.code: cls
  for cls in (
    Cancelled,
    Unknown,
    InvalidArgument,
    DeadlineExceeded,
    NotFound,
    AlreadyExists,
    PermissionDenied,
    ResourceExhausted,
    FailedPrecondition,
    Aborted,
    OutOfRange,
    Unimplemented,
    Internal,
    Unavailable,
    DataLoss,
    Unauthenticated,
  )
}


def from_code(code: int, message: str) -> RpcError:
  """The error for a failed call's status (an unknown code gives Unknown)."""
  return BY_CODE.get(code, Unknown)(message)


def is_run_complete(error: BaseException) -> bool:
  """True for the error of a call to a server that said its run is complete (an RpcError or a tf.errors one)."""
  code = getattr(error, "error_code", getattr(error, "code", None))  # tf.errors.OpError: error_code
  return code == OutOfRange.code and RUN_COMPLETE in str(error)
