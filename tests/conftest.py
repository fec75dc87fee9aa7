"""Shared fixtures: private socket dirs, free ports, quiet TF logs."""

import os
import shutil
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Before grpcio or the op initialize gRPC: its fork support crashes children that the tests
# spawn with close_fds (grpc/grpc#43055; seed/grpc.py sets the same for every process).
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import portpicker
import pytest

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
