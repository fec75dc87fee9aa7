"""Real hosts on one machine, for tests: one Linux network namespace per logical host, joined by a bridge.

    with netns.Hosts(["learner", "actor"]) as hosts:
      server = hosts.popen("learner", [sys.executable, "-m", "http.server", "8000"])
      hosts.run("actor", [sys.executable, "client.py", "http://learner:8000/"], timeout=10, check=True)

Layout: a hub namespace holds bridge `br0`; each host namespace gets a veth pair (`eth0` inside the host, `h<i>`
enslaved to the bridge in the hub, so nothing is ever created in the root namespace), an address in a private
10.213.x.0/24 that no root-namespace route overlaps, and `lo` up. `/etc/netns/<ns>/hosts` maps every logical host
name to its address and `/etc/netns/<ns>/resolv.conf` points at 127.0.0.1, so processes started with
`ip netns exec` resolve "learner" locally and never send DNS queries anywhere. Hosts have no default route: they
reach each other and their own loopback, not the root namespace or beyond.

Rules kept here: names are unique per run (`seedt-<pid>-<rand>-...`), so parallel or leftover runs never collide;
processes are only ever signalled by PIDs this module started, or PIDs found inside namespaces it created;
everything is torn down on close, on exceptions in the with-body, on constructor failure, and (as a fallback) at
interpreter exit. A SIGKILLed test process cannot clean up: its children still die (PR_SET_PDEATHSIG), but its
namespaces stay until `remove_netns` is called on them.
"""

from __future__ import annotations

import atexit
import ctypes
import functools
import ipaddress
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Sequence

from helpers import signal_group

PREFIX = "seedt-"  # every namespace this module creates; remove_netns refuses anything else
ETC_NETNS = "/etc/netns"
_PR_SET_PDEATHSIG = 1
_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


class NetnsError(RuntimeError):
  """An `ip` command failed, or teardown left something behind."""


def _ip_binary() -> str | None:
  return shutil.which("ip") or next((p for p in ("/usr/sbin/ip", "/sbin/ip") if os.access(p, os.X_OK)), None)


def _ip(*args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
  """Runs `ip ARGS`; raises NetnsError with its stderr on failure when `check`."""
  binary = _ip_binary()
  if binary is None:
    raise NetnsError("the `ip` command (iproute2) is not installed")
  r = subprocess.run([binary, *args], input=stdin, capture_output=True, text=True, timeout=30, check=False)
  if check and r.returncode != 0:
    command = " ".join(("ip", *args)) + (f" <<< {stdin!r}" if stdin else "")
    raise NetnsError(f"`{command}` failed ({r.returncode}): {r.stderr.strip()}")
  return r


def _ip_batch(ns: str, *commands: str) -> None:
  """Several `ip -n NS ...` commands in one process (stops at the first failure)."""
  _ip("-n", ns, "-batch", "-", stdin="".join(c + "\n" for c in commands))


def list_netns() -> list[str]:
  """Names of every named network namespace (`ip netns list`)."""
  out = _ip("netns", "list").stdout
  return [line.split()[0] for line in out.splitlines() if line.strip()]


def netns_pids(ns: str) -> list[int]:
  """PIDs of the processes inside namespace `ns` (none if it is gone)."""
  r = _ip("netns", "pids", ns, check=False)
  return [int(tok) for tok in r.stdout.split() if tok.isdigit()]


def remove_netns(ns: str, timeout: float = 5.0) -> None:
  """SIGKILLs every process inside `ns`, deletes it and /etc/netns/<ns>. Missing pieces are fine.

  Only for namespaces made by this module (name starts with "seedt-"): the processes killed are the ones found
  inside that namespace, by PID. Also for tests to clear namespaces a SIGKILLed process left behind.
  """
  if not ns.startswith(PREFIX) or "/" in ns:
    raise ValueError(f"not a namespace made by tests/netns.py: {ns!r}")
  deadline = time.monotonic() + timeout
  while pids := netns_pids(ns):
    for pid in pids:
      try:
        os.kill(pid, signal.SIGKILL)
      except ProcessLookupError:
        pass
    if time.monotonic() > deadline:
      raise NetnsError(f"processes {pids} in {ns} survived SIGKILL for {timeout}s")
    time.sleep(0.02)
  if ns in list_netns():
    _ip("netns", "delete", ns)
  shutil.rmtree(os.path.join(ETC_NETNS, ns), ignore_errors=True)


@functools.cache
def available() -> str | None:
  """None if network namespaces work here, else why not. Probes once: a scratch namespace with a bridge, a veth
  and a /etc/netns/<ns>/hosts that `ip netns exec` must see; everything is removed again."""
  if not sys.platform.startswith("linux"):
    return f"network namespaces are Linux-only (this is {sys.platform})"
  if os.geteuid() != 0:
    return "network namespaces need root (euid is not 0)"
  if _ip_binary() is None:
    return "the `ip` command (iproute2) is not installed"
  ns = f"{PREFIX}{os.getpid()}-{secrets.token_hex(3)}-probe"
  reason = None
  try:
    _ip("netns", "add", ns)
    _ip_batch(ns, "link add pb0 type bridge", "link add pv0 type veth peer name pv1", "link set pv1 master pb0")
    marker = f"# {ns}"
    os.makedirs(os.path.join(ETC_NETNS, ns))
    with open(os.path.join(ETC_NETNS, ns, "hosts"), "w", encoding="utf-8") as f:
      f.write(marker + "\n")
    if marker not in _ip("netns", "exec", ns, "cat", "/etc/hosts").stdout:
      reason = "`ip netns exec` does not bind-mount /etc/netns/<ns>/hosts over /etc/hosts"
  except (OSError, NetnsError, subprocess.SubprocessError) as e:
    reason = f"cannot set up a scratch network namespace: {e}"
  try:
    remove_netns(ns)
  except (OSError, NetnsError, subprocess.SubprocessError) as e:
    reason = reason or f"cannot remove a scratch network namespace: {e}"
  return reason


def _root_networks() -> list[ipaddress.IPv4Network]:
  """Every IPv4 prefix the root namespace routes or owns, to keep our subnet clear of them."""
  route_types = {"unicast", "local", "broadcast", "multicast", "anycast", "blackhole", "unreachable", "prohibit"}
  nets = []
  for line in _ip("-4", "-o", "route", "show", "table", "all").stdout.splitlines():
    tokens = line.split()
    if tokens and tokens[0] in route_types:
      tokens = tokens[1:]
    if tokens and tokens[0] != "default":
      try:
        nets.append(ipaddress.IPv4Network(tokens[0], strict=False))
      except ValueError:
        pass
  for line in _ip("-4", "-o", "addr", "show").stdout.splitlines():
    m = re.search(r"\binet (\S+)", line)
    if m:
      nets.append(ipaddress.IPv4Interface(m.group(1)).network)
  return nets


def _pick_subnet() -> ipaddress.IPv4Network:
  taken = _root_networks()
  for x in range(256):
    net = ipaddress.IPv4Network(f"10.213.{x}.0/24")
    if not any(net.overlaps(t) for t in taken):
      return net
  raise NetnsError("every 10.213.x.0/24 overlaps a route in the root namespace")


def _check_host_name(name: str) -> None:
  labels = name.split(".")
  if name == "localhost" or not all(_LABEL.match(label) for label in labels) or len(name) > 253:
    raise ValueError(f"not a usable host name: {name!r}")


@functools.cache
def _prctl_pdeathsig() -> Callable[[int], int]:
  libc = ctypes.CDLL(None, use_errno=True)
  return lambda sig: libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)


class Hosts:
  """Logical hosts, each a network namespace on one bridge; a context manager that tears everything down.

  Hosts(["learner", "actor-0"]).address("learner") -> "10.213.0.1"; .netns("learner") -> the namespace's name;
  .popen/.run start processes inside a host. close() (also __exit__ and an atexit fallback) SIGTERMs every
  process started here (their whole process groups), SIGKILLs what is left after `stop_timeout` seconds,
  SIGKILLs anything still inside our namespaces, then deletes links, namespaces and /etc/netns dirs.
  """

  def __init__(self, names: Sequence[str], stop_timeout: float = 3.0):
    if isinstance(names, str) or not names:
      raise ValueError("give a non-empty sequence of host names")
    names = list(names)
    for name in names:
      _check_host_name(name)
    if len(set(names)) != len(names):
      raise ValueError(f"duplicate host names in {names}")
    if len(names) > 254:
      raise ValueError("at most 254 hosts fit one /24")
    reason = available()
    if reason:
      raise NetnsError(reason)
    self.stop_timeout = stop_timeout
    self.prefix = f"{PREFIX}{os.getpid()}-{secrets.token_hex(3)}"
    self._owner = os.getpid()  # a forked child must not tear down its parent's hosts
    self._lock = threading.Lock()
    self._procs: list[subprocess.Popen] = []
    self._created: list[str] = []  # namespaces, in creation order
    self._closed = False
    self._hub = f"{self.prefix}-hub"
    self._ns = {name: f"{self.prefix}-{i}-{name}" for i, name in enumerate(names)}
    self._set_pdeathsig = _prctl_pdeathsig()
    atexit.register(self.close)
    try:
      self.subnet = _pick_subnet()
      hosts_ips = list(self.subnet.hosts())
      self._addr = {name: str(hosts_ips[i]) for i, name in enumerate(names)}
      self._build(names)
    except BaseException:
      try:
        self.close()
      except Exception as e:  # pylint: disable=broad-except
        warnings.warn(f"cleaning up after a failed Hosts(): {e}", stacklevel=2)
      raise

  def _build(self, names: list[str]) -> None:
    _ip("netns", "add", self._hub)
    self._created.append(self._hub)
    _ip_batch(self._hub, "link add br0 type bridge", "link set br0 up")
    etc_hosts = "".join(
      [
        f"# Written by tests/netns.py for {self.prefix}; removed when its Hosts close.\n",
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
        *(f"{self._addr[n]}\t{n}\n" for n in names),
      ]
    )
    for i, name in enumerate(names):
      ns = self._ns[name]
      _ip("netns", "add", ns)
      self._created.append(ns)
      # Made in the hub with its peer sent straight into the host: no name ever appears in the root namespace.
      _ip_batch(self._hub, f"link add h{i} type veth peer name eth0 netns {ns}", f"link set h{i} master br0 up")
      cidr = f"{self._addr[name]}/{self.subnet.prefixlen}"
      _ip_batch(ns, "link set lo up", f"addr add {cidr} dev eth0", "link set eth0 up")
      etc = os.path.join(ETC_NETNS, ns)
      os.makedirs(etc)
      with open(os.path.join(etc, "hosts"), "w", encoding="utf-8") as f:
        f.write(etc_hosts)
      with open(os.path.join(etc, "resolv.conf"), "w", encoding="utf-8") as f:
        f.write("# Names come from /etc/hosts; nothing leaves the namespace for DNS.\nnameserver 127.0.0.1\n")

  @property
  def names(self) -> list[str]:
    return list(self._ns)

  def address(self, name: str) -> str:
    """The IPv4 address of host `name`."""
    self._check(name)
    return self._addr[name]

  def netns(self, name: str) -> str:
    """The real namespace name of host `name` (for `ip netns exec`, `ip -n`)."""
    self._check(name)
    return self._ns[name]

  def all_netns(self) -> list[str]:
    """Every namespace this object created (hub included) and has not yet removed."""
    return list(self._created)

  def _check(self, name: str) -> None:
    if name not in self._ns:
      raise KeyError(f"no host {name!r}; hosts are {list(self._ns)}")

  def popen(self, name: str, argv: Sequence[str], death_signal: int = signal.SIGKILL, **kwargs) -> subprocess.Popen:
    """Starts argv inside host `name` (via `ip netns exec`, which execs it: Popen.pid is argv's PID).

    The child leads its own process group (os.killpg(p.pid, sig) reaches its children too) and gets
    `death_signal` when its parent dies. PR_SET_PDEATHSIG is tied to the *thread* that started the child,
    not the process: call popen from a thread that outlives the child (e.g. the main thread), or the child
    is killed when that thread exits. kwargs go to subprocess.Popen; a given preexec_fn runs after ours.
    """
    self._check(name)
    if isinstance(argv, str):
      raise TypeError("argv must be a sequence of arguments, not a string")
    user_preexec = kwargs.pop("preexec_fn", None)
    parent, set_pdeathsig = os.getpid(), self._set_pdeathsig

    def preexec() -> None:
      if os.getpgrp() != os.getpid():  # start_new_session=True already made us a group (and session) leader
        os.setpgid(0, 0)
      set_pdeathsig(death_signal)
      if os.getppid() != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), death_signal)
      if user_preexec is not None:
        user_preexec()

    with self._lock:
      if self._closed:
        raise NetnsError("these Hosts are closed")
      p = subprocess.Popen([_ip_binary(), "netns", "exec", self._ns[name], *argv], preexec_fn=preexec, **kwargs)
      self._procs.append(p)
    return p

  def run(
    self,
    name: str,
    argv: Sequence[str],
    *,
    timeout: float = 60.0,
    input: str | bytes | None = None,
    capture_output: bool = False,
    check: bool = False,
    **kwargs,
  ) -> subprocess.CompletedProcess:
    """Like subprocess.run inside host `name`; on timeout its process group is SIGKILLed, then TimeoutExpired."""
    if capture_output:
      if "stdout" in kwargs or "stderr" in kwargs:
        raise ValueError("stdout and stderr may not be used with capture_output")
      kwargs["stdout"] = kwargs["stderr"] = subprocess.PIPE
    if input is not None:
      kwargs["stdin"] = subprocess.PIPE
    with self.popen(name, argv, **kwargs) as p:
      try:
        out, err = p.communicate(input, timeout=timeout)
      except subprocess.TimeoutExpired:
        signal_group(p, signal.SIGKILL)
        try:
          out, err = p.communicate(timeout=self.stop_timeout)
        except subprocess.TimeoutExpired:  # someone outside the group holds the pipes open
          out = err = None
        raise subprocess.TimeoutExpired(list(argv), timeout, output=out, stderr=err) from None
      except BaseException:
        signal_group(p, signal.SIGKILL)
        raise
    r = subprocess.CompletedProcess(list(argv), p.returncode, out, err)
    if check:
      r.check_returncode()
    return r

  def close(self) -> None:
    """Stops every process, removes every link, namespace and /etc/netns dir. Idempotent; raises NetnsError
    if something could not be removed (after trying everything)."""
    with self._lock:
      if self._closed or os.getpid() != self._owner:
        return
      self._closed = True
      procs = list(self._procs)
    atexit.unregister(self.close)
    errors = []
    try:
      self._stop(procs)
    except Exception as e:  # pylint: disable=broad-except
      errors.append(f"stopping processes: {e}")
    # Links, then namespaces (remove_netns first kills what is left inside: a namespace outlives its name
    # while any process is in it).
    if self._hub in self._created:
      hub_links = [f"h{i}" for i, n in enumerate(self._ns) if self._ns[n] in self._created] + ["br0"]
      for link in hub_links:
        _ip("-n", self._hub, "link", "delete", link, check=False)  # already gone after a half-built setup: fine
    for ns in reversed(self._created):
      try:
        remove_netns(ns)
      except (OSError, NetnsError, subprocess.SubprocessError) as e:
        errors.append(f"{ns}: {e}")
    for ns in self._ns.values():  # also dirs of a host whose namespace was never made
      shutil.rmtree(os.path.join(ETC_NETNS, ns), ignore_errors=True)
    left = [ns for ns in self._created if ns in list_netns() or os.path.exists(os.path.join(ETC_NETNS, ns))]
    self._created = left
    if errors or left:
      raise NetnsError(f"teardown of {self.prefix} failed: {'; '.join(errors) or 'left ' + ', '.join(left)}")

  def _stop(self, procs: list[subprocess.Popen]) -> None:
    live = [p for p in procs if p.returncode is None]
    for p in live:
      signal_group(p, signal.SIGTERM)
    deadline = time.monotonic() + self.stop_timeout
    pending = list(live)
    while pending and time.monotonic() < deadline:
      pending = [p for p in pending if not _exited(p)]
      if pending:
        time.sleep(0.02)
    # SIGKILL every group whose leader is still unreaped (its PID, hence the group ID, cannot be reused yet):
    # catches group members that outlived a leader that did exit on SIGTERM.
    for p in live:
      signal_group(p, signal.SIGKILL)
    for p in live:
      p.wait(timeout=10)

  def __enter__(self) -> Hosts:
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  def __repr__(self) -> str:
    return f"Hosts({self.prefix}, {self._addr if hasattr(self, '_addr') else '?'}, closed={self._closed})"


def _exited(p: subprocess.Popen) -> bool:
  """Whether p has exited, without reaping it (a zombie leader keeps its group ID from being reused)."""
  if p.returncode is not None:
    return True
  try:
    return os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
  except ChildProcessError:  # reaped behind Popen's back
    p.poll()
    return True
