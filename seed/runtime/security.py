"""Credentials of a multi-host run, from the command line's files, and what a learner may listen on.

A learner listening beyond loopback must use TLS and authenticate its clients
(a bearer token, mutual TLS or both): anyone who reaches the port could
otherwise run inference, inject episodes and read the policy's outputs. The
files are only checked here; the op reads them itself when the server starts
or the channel is made, so no key or token passes through a graph or a log.
"""

from __future__ import annotations

import ipaddress
import socket

from seed.rpc.credentials import ChannelCredentials, ServerCredentials


def server_credentials(
  tls_cert: str | None, tls_key: str | None, tls_ca: str | None, token_file: str | None
) -> ServerCredentials | None:
  """The learner's credentials: its certificate and key, a client CA for mutual TLS, a token."""
  if not (tls_cert or tls_key or tls_ca or token_file):
    return None
  if bool(tls_cert) != bool(tls_key):
    raise ValueError("--tls_cert and --tls_key go together: the learner's certificate and its private key")
  if tls_ca and not tls_cert:
    raise ValueError("--tls_ca on the learner (mutual TLS: actors must show a certificate it signed) needs --tls_cert")
  creds = ServerCredentials(
    cert_file=tls_cert or None, key_file=tls_key or None, client_ca_file=tls_ca or None, token_file=token_file or None
  )
  creds.attrs()  # checks every file now: a bad path fails before anything starts
  return creds


def channel_credentials(
  tls_ca: str | None,
  tls_cert: str | None,
  tls_key: str | None,
  token_file: str | None,
  server_name: str | None = None,
) -> ChannelCredentials | None:
  """An actor's credentials: the CA that signed the learner's certificate, a client certificate, a token,
  and the name the learner's certificate carries (default: the host dialled)."""
  if not (tls_ca or tls_cert or tls_key or token_file):
    return None
  if bool(tls_cert) != bool(tls_key):
    raise ValueError("--tls_cert and --tls_key go together: the actor's client certificate and its private key")
  if tls_cert and not tls_ca:
    raise ValueError("--tls_cert on an actor (mutual TLS) needs --tls_ca, the CA that signed the learner's certificate")
  creds = ChannelCredentials(
    ca_file=tls_ca or None,
    cert_file=tls_cert or None,
    key_file=tls_key or None,
    token_file=token_file or None,
    server_name=server_name or None,
    tls=bool(tls_ca),
  )
  creds.attrs()
  return creds


def is_loopback(address: str) -> bool:
  """True for unix sockets and for TCP hosts that resolve only to loopback addresses."""
  if address.startswith("unix:"):
    return True
  host = address.rpartition(":")[0].strip("[]")
  if not host:
    return False
  try:
    infos = socket.getaddrinfo(host, None)
  except OSError:
    return False  # unknown now: cannot prove it stays on this machine
  return bool(infos) and all(ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback for info in infos)


def check_learner_address(address: str, credentials: ServerCredentials | None, insecure: bool) -> None:
  """Raises ValueError (why, and how to fix it) for a learner that would serve beyond loopback unprotected."""
  if insecure or is_loopback(address):
    return
  tls = credentials is not None and credentials.cert_file is not None
  client_auth = credentials is not None and (credentials.token_file or credentials.client_ca_file) is not None
  if tls and client_auth:
    return
  missing = "TLS and client authentication" if not tls and not client_auth else "TLS" if not tls else "client auth"
  raise ValueError(
    f"refusing to serve on {address} without {missing}: that address is reachable beyond this machine, and "
    "anyone who reaches it could run the learner's inference and feed it episodes. Give --tls_cert and --tls_key "
    "(the learner's certificate) and --auth_token_file (and/or --tls_ca for mutual TLS); see "
    "scripts/tools/make_certs.sh and docs/multihost.md. On a network you trust, --insecure serves plaintext."
  )


def check_actor_address(address: str, credentials: ChannelCredentials | None, insecure: bool) -> None:
  """Raises ValueError for an actor that would talk plaintext to a learner beyond loopback."""
  if insecure or is_loopback(address) or (credentials is not None and credentials.tls):
    return
  raise ValueError(
    f"refusing to connect to {address} without TLS: give --tls_ca (the CA that signed the learner's certificate) "
    "and --auth_token_file; --insecure connects in plaintext to a learner run with --insecure."
  )
