"""tests/netns.py: hosts reach each other by name and nothing else, and everything goes away on close.

Needs root and iproute2; without them these tests fail (CI has both) with netns.available()'s reason.
Traffic stays on loopback or between namespaces the tests create.
"""

import json
import os
import socket
import subprocess
import sys
import time

import netns
import pytest

pytestmark = pytest.mark.multihost  # left out by ./scripts/test.sh --quick

TESTS = os.path.dirname(os.path.abspath(__file__))
PORT = 8765  # every host is a fresh namespace: nothing else listens there

# Accepts one connection, answers with the peer's address.
SERVER = """
import socket, sys
s = socket.create_server((sys.argv[1], int(sys.argv[2])))
print("ready", flush=True)
c, peer = s.accept()
c.sendall(peer[0].encode())
c.close()
"""
# Prints "ok <answer>" or the errno name of the failure.
CLIENT = """
import errno, socket, sys
try:
  with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3) as c:
    print("ok", c.recv(100).decode())
except OSError as e:
  print(errno.errorcode.get(e.errno, repr(e)))
"""


def require_netns() -> None:
  reason = netns.available()
  if reason:
    pytest.fail(f"network namespaces are needed here: {reason}")


@pytest.fixture
def hosts():
  require_netns()
  with netns.Hosts(["alpha", "beta"], stop_timeout=1.0) as h:
    yield h


def serve(hosts: netns.Hosts, name: str, bind: str) -> subprocess.Popen:
  p = hosts.popen(name, [sys.executable, "-c", SERVER, bind, str(PORT)], stdout=subprocess.PIPE, text=True)
  assert p.stdout.readline().strip() == "ready"
  return p


def connect(hosts: netns.Hosts, name: str, target: str, port: int = PORT) -> str:
  r = hosts.run(name, [sys.executable, "-c", CLIENT, target, str(port)], capture_output=True, text=True, timeout=20)
  assert r.returncode == 0, r.stderr
  return r.stdout.strip()


def gone(pid: int) -> bool:
  """No such process, or only a zombie left (not ours to reap)."""
  try:
    with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
      return f.read().rsplit(")", 1)[1].split()[0] == "Z"
  except FileNotFoundError:
    return True


def wait_gone(pids, timeout: float = 5.0) -> list[int]:
  """The pids still alive after `timeout` seconds."""
  deadline = time.monotonic() + timeout
  while (alive := [p for p in pids if not gone(p)]) and time.monotonic() < deadline:
    time.sleep(0.02)
  return alive


def leftovers(namespaces) -> list[str]:
  listed = set(netns.list_netns())
  return [ns for ns in namespaces if ns in listed or os.path.exists(os.path.join(netns.ETC_NETNS, ns))]


def root_links() -> set[str]:
  out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
  return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()}


def test_network_namespaces_are_available():
  require_netns()


def test_names_resolve_to_each_hosts_address_and_dns_stays_inside(hosts):
  code = """
import json, socket, time
names = {n: socket.gethostbyname(n) for n in ("alpha", "beta", "localhost")}
t = time.monotonic()
try:
  socket.gethostbyname("no-such-host.example")
  names["dns"] = "resolved"
except socket.gaierror:
  names["dns"] = "failed"
names["dns_seconds"] = time.monotonic() - t
print(json.dumps(names))
"""
  for name in ("alpha", "beta"):
    r = hosts.run(name, [sys.executable, "-c", code], capture_output=True, text=True, timeout=20, check=True)
    got = json.loads(r.stdout)
    assert got["alpha"] == hosts.address("alpha") and got["beta"] == hosts.address("beta"), got
    assert got["localhost"] == "127.0.0.1", got
    # resolv.conf points at the namespace's own loopback: an unknown name fails at once, nothing is sent out.
    assert got["dns"] == "failed" and got["dns_seconds"] < 2, got
  a, b = hosts.address("alpha"), hosts.address("beta")
  assert a != b and {a, b} <= {str(ip) for ip in hosts.subnet.hosts()}
  assert not any(hosts.subnet.overlaps(n) for n in netns._root_networks())
  assert hosts.netns("alpha").startswith(f"seedt-{os.getpid()}-") and hosts.netns("alpha") in netns.list_netns()


def test_tcp_between_hosts_by_name(hosts):
  server = serve(hosts, "beta", "0.0.0.0")
  assert connect(hosts, "alpha", "beta") == f"ok {hosts.address('alpha')}"
  assert server.wait(5) == 0


def test_loopback_is_per_namespace(hosts):
  server = serve(hosts, "alpha", "127.0.0.1")
  assert connect(hosts, "beta", "127.0.0.1") == "ECONNREFUSED"  # beta's own loopback: nobody listens
  assert connect(hosts, "beta", "alpha") == "ECONNREFUSED"  # alpha's server is on its loopback only
  assert connect(hosts, "alpha", "127.0.0.1") == "ok 127.0.0.1"
  assert server.wait(5) == 0
  # Nor is the root namespace's loopback reachable.
  with socket.create_server(("127.0.0.1", 0)) as root_server:
    assert connect(hosts, "alpha", "127.0.0.1", root_server.getsockname()[1]) == "ECONNREFUSED"


def test_root_namespace_and_outside_addresses_are_unreachable(hosts):
  out = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True, check=True).stdout
  root_ips = [line.split()[3].split("/")[0] for line in out.splitlines()]
  targets = [ip for ip in root_ips if not ip.startswith("127.")] + ["198.51.100.1"]  # + a TEST-NET-2 address
  for ip in targets:
    # No route at all: connect fails before any packet is sent.
    assert connect(hosts, "alpha", ip, 9) == "ENETUNREACH", ip
  r = hosts.run("alpha", ["ip", "-4", "route", "show"], capture_output=True, text=True, check=True)
  routes = r.stdout.splitlines()
  assert len(routes) == 1 and routes[0].startswith(f"{hosts.subnet} dev eth0"), r.stdout  # no default route


def test_close_removes_namespaces_dirs_links_and_processes():
  require_netns()
  links_before = root_links()
  # One child in its own session: outside every process group we signal, found by `ip netns pids`.
  escape = (
    "import subprocess as s; p = s.Popen(['sleep', '60'], start_new_session=True, stdout=s.DEVNULL, stderr=s.DEVNULL);"
    "print(p.pid)"
  )
  with netns.Hosts(["a", "b", "c"], stop_timeout=1.0) as h:
    namespaces = h.all_netns()
    assert len(namespaces) == 4 and not leftovers([]) and set(namespaces) <= set(netns.list_netns())
    sleeper = h.popen("a", ["sleep", "60"])
    r = h.run("b", [sys.executable, "-c", escape], capture_output=True, text=True, check=True)
    orphan = int(r.stdout)
    assert netns.netns_pids(h.netns("b")) == [orphan]
    assert all(os.path.isfile(os.path.join(netns.ETC_NETNS, h.netns(n), "hosts")) for n in "abc")
    assert root_links() == links_before  # veths live in the hub and host namespaces only
  assert leftovers(namespaces) == []
  assert root_links() == links_before
  assert sleeper.returncode == -15
  assert wait_gone([orphan]) == []


def test_close_after_exception_in_the_body():
  require_netns()
  with pytest.raises(ZeroDivisionError):
    with netns.Hosts(["a", "b"], stop_timeout=1.0) as h:
      namespaces = h.all_netns()
      sleeper = h.popen("b", ["sleep", "60"])
      1 / 0  # noqa: B018
  assert leftovers(namespaces) == []
  assert sleeper.returncode == -15


def test_close_is_idempotent_and_final():
  require_netns()
  h = netns.Hosts(["a"])
  namespaces = h.all_netns()
  h.close()
  h.close()
  with h:
    pass
  assert leftovers(namespaces) == [] and h.all_netns() == []
  with pytest.raises(netns.NetnsError, match="closed"):
    h.popen("a", ["true"])


def test_child_ignoring_sigterm_is_sigkilled_after_stop_timeout():
  require_netns()
  stubborn = "import signal as s, time; s.signal(s.SIGTERM, s.SIG_IGN); print('ready', flush=True); time.sleep(60)"
  with netns.Hosts(["a"], stop_timeout=0.5) as h:
    p = h.popen("a", [sys.executable, "-c", stubborn], stdout=subprocess.PIPE, text=True)
    polite = h.popen("a", ["sleep", "60"])
    assert p.stdout.readline().strip() == "ready"
    t = time.monotonic()
  elapsed = time.monotonic() - t
  assert p.returncode == -9 and polite.returncode == -15
  assert 0.5 <= elapsed < 3, elapsed


def test_run_timeout_kills_the_group_and_check_raises(hosts):
  t = time.monotonic()
  with pytest.raises(subprocess.TimeoutExpired):
    hosts.run("alpha", ["sh", "-c", "sleep 30; true"], timeout=0.3)
  assert time.monotonic() - t < 3
  assert wait_gone(netns.netns_pids(hosts.netns("alpha")), 2) == []  # sh and its sleep: the whole group
  with pytest.raises(subprocess.CalledProcessError):
    hosts.run("alpha", ["sh", "-c", "exit 3"], check=True)
  assert hosts.run("beta", ["cat"], input="hi", capture_output=True, text=True).stdout == "hi"


def test_child_dies_when_its_parent_dies():
  require_netns()
  parent_code = f"""
import json, sys, time
sys.path.insert(0, {TESTS!r})
import netns
h = netns.Hosts(["solo"])
child = h.popen("solo", ["sleep", "60"])
print(json.dumps({{"pid": child.pid, "netns": h.all_netns()}}), flush=True)
time.sleep(60)
"""
  parent = subprocess.Popen([sys.executable, "-c", parent_code], stdout=subprocess.PIPE, text=True)
  info = {"netns": []}
  try:
    info = json.loads(parent.stdout.readline())
    assert not gone(info["pid"])
    parent.kill()
    parent.wait(5)
    assert wait_gone([info["pid"]]) == [], "PR_SET_PDEATHSIG should have killed the child"
    assert leftovers(info["netns"]) == info["netns"]  # a SIGKILLed parent cannot clean up: we must
  finally:
    parent.kill()
    parent.wait(5)
    for ns in info["netns"]:
      netns.remove_netns(ns)
  assert leftovers(info["netns"]) == []


def test_bad_names_and_failed_construction_leave_nothing(monkeypatch):
  require_netns()
  for names in ("ab", [], ["a", "a"], ["bad name"], ["localhost"], ["-a"]):
    with pytest.raises(ValueError):
      netns.Hosts(names)
  prefix = f"seedt-{os.getpid()}-"
  mine = lambda: {ns for ns in netns.list_netns() + os.listdir(netns.ETC_NETNS) if ns.startswith(prefix)}
  before = mine()
  real, calls = netns._ip_batch, []

  def failing_batch(ns, *commands):
    calls.append(ns)
    if len(calls) == 4:  # hub bridge, host 0 hub side, host 0 itself, host 1 hub side: fail there
      raise netns.NetnsError("injected failure")
    real(ns, *commands)

  monkeypatch.setattr(netns, "_ip_batch", failing_batch)
  with pytest.raises(netns.NetnsError, match="injected"):
    netns.Hosts(["a", "b", "c"])
  assert len(calls) == 4
  assert mine() == before
