"""Shared fixtures: private socket dirs, free ports, throwaway TLS certificates, quiet TF logs."""

import datetime
import os
import shutil
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Before grpcio or the op initialize gRPC: its fork support crashes children that the tests
# spawn with close_fds (grpc/grpc#43055; seed/grpc.py sets the same for every process).
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import portpicker
import pytest
import trustme
from helpers import TLS_TOKEN

# tests/multidevice/ needs a process whose CPU is split into logical devices before TF starts:
# tests/test_multidevice.py runs it in its own pytest process (SEED_MULTIDEVICE=1).
collect_ignore = [] if os.environ.get("SEED_MULTIDEVICE") else ["multidevice"]


@pytest.fixture
def sock_dir():
  """A private (0700) directory for unix sockets, removed afterwards."""
  d = tempfile.mkdtemp(prefix="seedt-")
  yield d
  shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def address(sock_dir):
  return f"unix:{sock_dir}/rpc.sock"


@pytest.fixture
def tcp_address():
  return f"localhost:{portpicker.pick_unused_port()}"


@pytest.fixture
def serve(address):
  """serve(*fns, **bind_kwargs) -> Client; servers are shut down after the test."""
  from seed import grpc  # pylint: disable=g-import-not-at-top

  servers = []

  def _serve(*fns, **kwargs):
    server = grpc.Server([address])
    for fn in fns:
      server.bind(fn, **kwargs)
    server.start()
    servers.append(server)
    return grpc.Client(address)

  yield _serve
  for s in servers:
    s.shutdown()


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory):
  """Files from a throwaway CA (trustme): ca, other_ca (another CA), and (cert, key) pairs server
  (localhost + 127.0.0.1), expired, client (actor-0), stranger (actor-0, signed by other_ca); token
  (TLS_TOKEN) and wrong_token."""
  d = tmp_path_factory.mktemp("pki")
  ca, other = trustme.CA(), trustme.CA()
  files = {}

  def leaf(name, issuer, *names, **kwargs):
    cert = issuer.issue_cert(*names, **kwargs)
    cert.cert_chain_pems[0].write_to_path(str(d / f"{name}.crt"))
    cert.private_key_pem.write_to_path(str(d / f"{name}.key"))
    files[name] = (str(d / f"{name}.crt"), str(d / f"{name}.key"))

  ca.cert_pem.write_to_path(str(d / "ca.crt"))
  other.cert_pem.write_to_path(str(d / "other_ca.crt"))
  files["ca"], files["other_ca"] = str(d / "ca.crt"), str(d / "other_ca.crt")
  leaf("server", ca, "localhost", "127.0.0.1")
  leaf("expired", ca, "localhost", not_before=datetime.datetime(2020, 1, 1), not_after=datetime.datetime(2021, 1, 1))
  leaf("client", ca, "actor-0")
  leaf("stranger", other, "actor-0")
  for name, text in [("token", TLS_TOKEN), ("wrong_token", "not-the-token")]:
    (d / name).write_text(text + "\n")
    files[name] = str(d / name)
  return files
