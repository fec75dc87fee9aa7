"""scripts/tools/make_certs.sh: a CA, learner and actor certificates and a token that openssl and Python's ssl accept.

Every TLS connection here stays on loopback.
"""

import os
import queue
import re
import socket
import ssl
import stat
import subprocess
import threading

import pytest
from helpers import REPO

SCRIPT = os.path.join(REPO, "scripts", "tools", "make_certs.sh")
FILES = {"ca.crt", "ca.key", "learner.crt", "learner.key", "actor.crt", "actor.key", "token"}


def make(*args: str) -> subprocess.CompletedProcess:
  return subprocess.run([SCRIPT, *map(str, args)], capture_output=True, text=True, timeout=60, check=False)


def openssl(*args: str) -> str:
  return subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True, check=True, timeout=30).stdout


def ext(cert, name: str) -> str:
  """One extension's value, as `openssl x509 -ext` prints it (one line)."""
  out = openssl("x509", "-in", cert, "-noout", "-ext", name)
  return " ".join(out.splitlines()[1:]).strip()


def fingerprint(cert) -> str:
  return openssl("x509", "-in", cert, "-noout", "-fingerprint", "-sha256")


def contents(d) -> dict:
  return {f: (d / f).read_bytes() for f in FILES}


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
  d = tmp_path_factory.mktemp("certs") / "pki"
  r = make(d, "learner", "learner.example.org", "10.213.0.1")
  assert r.returncode == 0, r.stderr
  return d


def test_certificates_verify_against_the_ca(pki):
  for cert, purpose in (("learner.crt", "sslserver"), ("actor.crt", "sslclient")):
    out = openssl("verify", "-CAfile", pki / "ca.crt", "-purpose", purpose, pki / cert)
    assert out.strip() == f"{pki / cert}: OK"
  # The actor certificate is no server's, nor either leaf a CA.
  args = ["openssl", "verify", "-CAfile", pki / "ca.crt", "-purpose", "sslserver", pki / "actor.crt"]
  r = subprocess.run(args, capture_output=True, text=True, check=False)
  assert r.returncode != 0
  assert ext(pki / "ca.crt", "basicConstraints") == "CA:TRUE"
  assert ext(pki / "ca.crt", "keyUsage") == "Certificate Sign, CRL Sign"
  assert ext(pki / "learner.crt", "basicConstraints") == ext(pki / "actor.crt", "basicConstraints") == "CA:FALSE"
  assert "ASN1 OID: prime256v1" in openssl("pkey", "-in", pki / "learner.key", "-noout", "-text")
  for cert in ("ca.crt", "learner.crt", "actor.crt"):
    assert "Signature Algorithm: ecdsa-with-SHA256" in openssl("x509", "-in", pki / cert, "-noout", "-text"), cert


def test_learner_names_and_key_usages(pki):
  sans = ext(pki / "learner.crt", "subjectAltName")
  assert sans == "DNS:learner, DNS:learner.example.org, IP Address:10.213.0.1, DNS:localhost, IP Address:127.0.0.1"
  assert ext(pki / "learner.crt", "extendedKeyUsage") == "TLS Web Server Authentication"
  assert ext(pki / "actor.crt", "extendedKeyUsage") == "TLS Web Client Authentication"
  assert "CN = learner" in openssl("x509", "-in", pki / "learner.crt", "-noout", "-subject")


def test_default_hostname_is_localhost(tmp_path):
  r = make(tmp_path / "pki")
  assert r.returncode == 0, r.stderr
  assert ext(tmp_path / "pki" / "learner.crt", "subjectAltName") == "DNS:localhost, IP Address:127.0.0.1"


def test_modes_token_and_nothing_else_left(pki):
  assert stat.S_IMODE(os.stat(pki).st_mode) == 0o700
  for f in ("ca.key", "learner.key", "actor.key", "token"):
    assert stat.S_IMODE(os.stat(pki / f).st_mode) == 0o600, f
  assert re.fullmatch(r"[0-9a-f]{64}\n?", (pki / "token").read_text())
  assert set(os.listdir(pki)) == FILES  # no scratch dir, CSR or serial file


def test_complete_set_is_kept(pki):
  before = contents(pki)
  r = make(pki, "learner", "10.213.0.1")  # a subset of the names it was made for
  assert r.returncode == 0, r.stderr
  assert "certificates already in" in r.stdout and "--force" in r.stdout
  assert contents(pki) == before


def test_complete_set_lacking_a_name_is_refused(pki):
  before = contents(pki)
  r = make(pki, "learner", "actors-a")
  assert r.returncode == 2 and "actors-a" in r.stderr and "--force" in r.stderr, r.stderr
  assert contents(pki) == before


def test_partial_set_is_refused_and_force_replaces_it(tmp_path):
  d = tmp_path / "pki"
  assert make(d).returncode == 0
  old_ca = fingerprint(d / "ca.crt")
  (d / "token").unlink()
  r = make(d)
  assert r.returncode == 2 and "token" in r.stderr and "--force" in r.stderr, r.stderr
  assert not (d / "token").exists() and fingerprint(d / "ca.crt") == old_ca  # refused: nothing touched
  r = make("--force", d, "learner")
  assert r.returncode == 0, r.stderr
  assert set(os.listdir(d)) == FILES and fingerprint(d / "ca.crt") != old_ca
  out = openssl("verify", "-CAfile", d / "ca.crt", d / "learner.crt", d / "actor.crt")
  assert out.count(": OK") == 2


def test_force_replaces_a_complete_set(tmp_path):
  d = tmp_path / "pki"
  assert make(d).returncode == 0
  before = contents(d)
  r = make(d, "--force")
  assert r.returncode == 0, r.stderr
  after = contents(d)
  assert all(after[f] != before[f] for f in FILES)
  # What goes where is spelled out.
  assert "learner host: learner.crt learner.key token" in r.stdout and "actor hosts:  ca.crt token" in r.stdout


@pytest.mark.parametrize(
  "args",
  [[], ["-x", "{d}"], ["--forse", "{d}"], ["{d}", "bad name"], ["{d}", "300.1.1.1"], ["{d}", "::1"], ["{d}", "a_b"]],
  ids=["no-outdir", "short-option", "long-option", "space", "bad-ipv4", "ipv6", "underscore"],
)
def test_usage_errors_exit_2_and_make_nothing(tmp_path, args):
  d = tmp_path / "pki"
  r = make(*(a.format(d=d) for a in args))
  assert r.returncode == 2, (r.stdout, r.stderr)
  assert "make_certs.sh: " in r.stderr and "--help" in r.stderr
  assert not d.exists()


def test_help():
  for flag in ("-h", "--help"):
    r = make(flag)
    assert r.returncode == 0 and r.stdout.startswith("Usage: make_certs.sh [--force] OUTDIR [HOSTNAME ...]")


def _tls_server(pki, require_client_cert: bool):
  """A loopback TLS server on learner.crt; each accepted connection's outcome goes to the returned queue."""
  ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
  ctx.load_cert_chain(pki / "learner.crt", pki / "learner.key")
  if require_client_cert:
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(pki / "ca.crt")
  listener = socket.create_server(("127.0.0.1", 0))
  listener.settimeout(10)
  outcomes = queue.Queue()

  def serve():
    with listener:
      while True:
        try:
          conn, _ = listener.accept()
        except OSError:
          return
        conn.settimeout(10)
        try:
          with ctx.wrap_socket(conn, server_side=True) as tls:
            peer = tls.getpeercert()
            tls.sendall(b"hello")
            outcomes.put(("ok", dict(x[0] for x in peer["subject"])["commonName"] if peer else None))
        except (OSError, ssl.SSLError) as e:
          outcomes.put(("error", str(e)))

  threading.Thread(target=serve, daemon=True).start()
  return listener, outcomes


def _client(pki, port: int, server_hostname: str = "localhost", client_cert: bool = True) -> bytes:
  ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
  if client_cert:
    ctx.load_cert_chain(pki / "actor.crt", pki / "actor.key")
  with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
    with ctx.wrap_socket(sock, server_hostname=server_hostname) as tls:
      return tls.recv(5)  # TLS 1.3: a refused client certificate shows up here, after the handshake


def test_mutual_tls_handshake_on_loopback(pki):
  listener, outcomes = _tls_server(pki, require_client_cert=True)
  port = listener.getsockname()[1]
  try:
    assert _client(pki, port) == b"hello"
    assert outcomes.get(timeout=10) == ("ok", "actor")
    with pytest.raises((ssl.SSLError, ConnectionError)):
      if _client(pki, port, client_cert=False) != b"hello":
        raise ConnectionError("closed by the server")
    status, why = outcomes.get(timeout=10)
    assert status == "error" and "CERTIFICATE" in why.upper(), why
  finally:
    listener.close()


def test_server_names_are_checked(pki):
  listener, outcomes = _tls_server(pki, require_client_cert=False)
  port = listener.getsockname()[1]
  try:
    for name in ("localhost", "learner", "learner.example.org", "10.213.0.1", "127.0.0.1"):
      assert _client(pki, port, server_hostname=name, client_cert=False) == b"hello", name
      assert outcomes.get(timeout=10) == ("ok", None)
    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch|match"):
      _client(pki, port, server_hostname="intruder", client_cert=False)
  finally:
    listener.close()
