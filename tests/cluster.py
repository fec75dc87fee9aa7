"""A SEED run spread over network-namespace hosts (tests/netns.py): learner and actors over TLS + token.

Used by tests/test_multihost.py and scripts/bench/bench_multihost.py. The learner
serves on 0.0.0.0 in its namespace (beyond loopback, so it insists on TLS and
client auth); actors reach it by its host name. Certificates come from
scripts/tools/make_certs.sh, as a user makes them.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import time

import netns

from seed import run_files

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PORT = 8686  # each host is a fresh network namespace: nothing else listens there


def make_certs(directory: os.PathLike, *hostnames: str) -> pathlib.Path:
  """CA, learner and actor certificates and a token in `directory`, via scripts/tools/make_certs.sh."""
  r = subprocess.run(
    [os.path.join(REPO, "scripts", "tools", "make_certs.sh"), str(directory), *hostnames],
    capture_output=True,
    text=True,
    check=False,
  )
  if r.returncode != 0:
    raise RuntimeError(f"scripts/tools/make_certs.sh failed ({r.returncode}):\n{r.stdout}{r.stderr}")
  return pathlib.Path(directory)


read_metrics = run_files.read_metrics  # the run's metrics.jsonl rows (none yet: [])


def namespace_hosts(names) -> netns.Hosts:
  """netns.Hosts for `names` (a context manager); fails, never skips, where namespaces are unavailable."""
  reason = netns.available()
  if reason:
    raise AssertionError(f"network namespaces are needed here: {reason}")
  return netns.Hosts(names, stop_timeout=10.0)


class Cluster:
  """The processes of one run, each in its host's namespace, logging to workdir/<name>.log."""

  def __init__(self, hosts, workdir: os.PathLike, pki: os.PathLike, config: str, learner_host: str = "learner"):
    self.hosts, self.workdir, self.pki, self.config = hosts, pathlib.Path(workdir), pathlib.Path(pki), config
    self.learner_host = learner_host
    self.logdir = self.workdir / "run"
    self.logs: dict[str, str] = {}

  def _start(self, host: str, name: str, args: list[str], log_level: str = "2") -> subprocess.Popen:
    path = str(self.workdir / f"{name}.log")
    self.logs[name] = path
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL=log_level)
    with open(path, "ab") as log:
      return self.hosts.popen(
        host,
        [sys.executable, "-m", "seed.train", f"--config={self.config}", f"--logdir={self.logdir}", *args],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
      )

  def learner(self, name: str, *extra: str) -> subprocess.Popen:
    # TF_CPP_MIN_LOG_LEVEL=1: the op's warnings (refused calls) reach the log.
    return self._start(
      self.learner_host,
      name,
      [
        "--mode=learner",
        f"--server_address=0.0.0.0:{PORT}",
        f"--tls_cert={self.pki}/learner.crt",
        f"--tls_key={self.pki}/learner.key",
        f"--auth_token_file={self.pki}/token",
        *extra,
      ],
      log_level="1",
    )

  def actor(self, host: str, name: str, task: int, *extra: str) -> subprocess.Popen:
    return self._start(
      host,
      name,
      [
        "--mode=actor",
        f"--task={task}",
        f"--server_address={self.learner_host}:{PORT}",
        f"--tls_ca={self.pki}/ca.crt",
        f"--auth_token_file={self.pki}/token",
        *extra,
      ],
    )

  def log(self, name: str) -> str:
    with open(self.logs[name], "rb") as f:
      return f.read().decode(errors="replace")

  def metrics(self) -> list[dict]:
    return read_metrics(self.logdir)

  def frames(self) -> list[int]:
    return [m["frames"] for m in self.metrics()]

  def wait_until(self, predicate, timeout: float, what: str, *alive: subprocess.Popen) -> None:
    """Polls predicate; fails with every log's tail on timeout or when a process in `alive` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
      if predicate():
        return
      for p in alive:
        if p.poll() is not None:
          raise AssertionError(f"a process exited ({p.returncode}) before {what}\n{self.tails()}")
      time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{self.tails()}")

  def tails(self, chars: int = 2500) -> str:
    return "\n".join(f"--- {name}:\n{self.log(name)[-chars:]}" for name in self.logs)
