#!/usr/bin/env bash
# Sets up everything SEED needs on Debian: system packages, a virtualenv at .venv with the
# project installed editable, and the compiled gRPC op. Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

# libssl-dev, libre2-dev, make, dpkg-dev: the op links static OpenSSL and a -fPIC re2 rebuilt from
# Debian's source package (seed/rpc/build_op.py); openssl: scripts/tools/make_certs.sh; clang: the libFuzzer
# target (grpc/fuzz_wire.cc, scripts/tools/fuzz.sh).
APT_PKGS=(libgrpc++-dev libssl-dev libre2-dev zlib1g-dev pkg-config g++ make dpkg-dev perl openssl python3-venv clang)
# One dpkg-query for all of them (a second run is only checks: it should take well under a second).
installed=$'\n'$(dpkg-query -W -f='${Package} ${Status}\n' "${APT_PKGS[@]}" 2>/dev/null || true)$'\n'
missing=()
for p in "${APT_PKGS[@]}"; do
  [[ $installed == *$'\n'"$p install ok installed"$'\n'* ]] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "[setup] installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.seed-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "[setup] installing Python packages (first time takes a few minutes)"
  .venv/bin/pip install -q --upgrade pip >/dev/null
  .venv/bin/pip install -q -e '.[test,gcp]'
  touch "$stamp"
fi
# Build (or reuse the cached) op so the first import is fast. When the op's sources, TensorFlow's
# install, the system archives and the build recipe are as the last check stamped them, this
# answers without importing TensorFlow (~0.2 s; seed/rpc/build_op.py, checked_op_library_path).
TF_CPP_MIN_LOG_LEVEL=2 .venv/bin/python -m seed.rpc.build_op >/dev/null
# And the actors' TensorFlow-free client library (seed/rpc/client.py), from the same sources.
.venv/bin/python -m seed.rpc.build_op --client >/dev/null
