"""ServingError: a request failure as a gRPC status code and message.

Raised by the models, the batcher and the core; each front end reports it in
its own terms (gRPC status, HTTP status and JSON body).
"""

from __future__ import annotations

import grpc


class ServingError(Exception):
  """A request failure with its gRPC status code (REST maps it to an HTTP status)."""

  def __init__(self, code: grpc.StatusCode, message: str):
    super().__init__(message)
    self.code = code
    self.message = message


def invalid(message: str) -> ServingError:
  return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(message: str) -> ServingError:
  return ServingError(grpc.StatusCode.NOT_FOUND, message)


def braces(names) -> str:
  """Names as TF Serving's messages list them: {a, b}."""
  return "{" + ", ".join(sorted(names)) + "}"
