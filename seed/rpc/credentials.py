"""Credentials of tensor-RPC servers and channels: file paths, checked early, read by C++ at run time.

TensorFlow-free: an actor builds ChannelCredentials without importing it.
Only paths (and an environment variable's name) become op attributes or C
arguments; no key or token is ever held in a graph, a log or Python memory.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any


def _check_readable(path: str | None, what: str) -> str:
  """'' for None; else the path, once it is known to be a readable, non-empty file."""
  if path is None:
    return ""
  path = os.fspath(path)
  try:
    with open(path, "rb") as f:
      if not f.read(1):
        raise ValueError(f"{what} file {path!r} is empty")
  except OSError as e:
    raise FileNotFoundError(f"cannot read {what} file {path!r}: {e.strerror}") from e
  return path


def _check_token_env(name: str | None) -> str:
  if name is None:
    return ""
  if not os.environ.get(name, "").strip():
    raise ValueError(f"environment variable {name} (the auth token) is not set or empty")
  return name


@dataclasses.dataclass(frozen=True)
class ServerCredentials:
  """TLS (and optionally mutual TLS and a bearer token) for a server's TCP addresses.

  Args:
    cert_file, key_file: the server's PEM certificate (chain) and private key.
    client_ca_file: set: mutual TLS; clients must present a certificate it signed.
    token_file: set: every TCP call must carry `authorization: Bearer <token>`,
      the token being this file's content (surrounding whitespace ignored).
    token_env: alternatively, the name of an environment variable holding the token.
  Files are checked now and read when the server starts; the token is compared
  in constant time and never logged.
  """

  cert_file: str | None = None
  key_file: str | None = None
  client_ca_file: str | None = None
  token_file: str | None = None
  token_env: str | None = None

  def __post_init__(self):
    if (self.cert_file is None) != (self.key_file is None):
      raise ValueError("ServerCredentials needs both cert_file and key_file for TLS (or neither)")
    if self.client_ca_file is not None and self.cert_file is None:
      raise ValueError("client_ca_file (mutual TLS) needs the server's own cert_file and key_file")
    if self.token_file is not None and self.token_env is not None:
      raise ValueError("give the token as token_file or token_env, not both")
    if self.cert_file is None and self.token_file is None and self.token_env is None:
      raise ValueError("ServerCredentials needs a certificate and key, a token, or both")

  def attrs(self) -> dict[str, str]:
    """The server-create op's attributes: paths and a variable name, never the secrets."""
    return dict(
      cert_file=_check_readable(self.cert_file, "TLS certificate"),
      key_file=_check_readable(self.key_file, "TLS private key"),
      client_ca_file=_check_readable(self.client_ca_file, "client CA"),
      token_file=_check_readable(self.token_file, "auth token"),
      token_env=_check_token_env(self.token_env),
    )


@dataclasses.dataclass(frozen=True)
class ChannelCredentials:
  """How a client reaches a TLS server (and authenticates).

  Args:
    ca_file: PEM certificates that must have signed the server's certificate
      (None: gRPC's default roots).
    cert_file, key_file: the client's own certificate and key (mutual TLS).
    token_file / token_env: a bearer token sent with every call, from a file
      or an environment variable.
    server_name: the name the server's certificate must carry (default: the
      host part of the address).
    tls: False sends the token over plaintext (only for a server run with
      --insecure on a trusted network).
  """

  ca_file: str | None = None
  cert_file: str | None = None
  key_file: str | None = None
  token_file: str | None = None
  token_env: str | None = None
  server_name: str | None = None
  tls: bool = True

  def __post_init__(self):
    if (self.cert_file is None) != (self.key_file is None):
      raise ValueError("a client certificate (mutual TLS) needs both cert_file and key_file")
    if self.token_file is not None and self.token_env is not None:
      raise ValueError("give the token as token_file or token_env, not both")
    if not self.tls and (self.ca_file or self.cert_file):
      raise ValueError("certificate files given with tls=False")

  def attrs(self) -> dict[str, Any]:
    """The client op's attributes: paths and a variable name, never the secrets."""
    return dict(
      tls=self.tls,
      ca_file=_check_readable(self.ca_file, "CA certificate"),
      cert_file=_check_readable(self.cert_file, "client certificate"),
      key_file=_check_readable(self.key_file, "client private key"),
      token_file=_check_readable(self.token_file, "auth token"),
      token_env=_check_token_env(self.token_env),
      server_name=self.server_name or "",
    )


_INSECURE_ATTRS = dict(tls=False, ca_file="", cert_file="", key_file="", token_file="", token_env="", server_name="")


def channel_attrs(credentials: ChannelCredentials | None) -> dict[str, Any]:
  """A client op's channel attributes for these credentials (None: plaintext, no token)."""
  return credentials.attrs() if credentials else dict(_INSECURE_ATTRS)
