"""`pip install .` gives a working install: the wheel carries the op's C++ sources and build_op builds
the op and the TF-free client library from them."""

import os
import pathlib
import subprocess
import sys
import zipfile

from helpers import REPO


def test_wheel_carries_the_op_sources_and_build_op_finds_them(tmp_path):
  subprocess.run(
    [
      sys.executable,
      "-m",
      "pip",
      "wheel",
      "--no-deps",
      "--no-build-isolation",
      "-q",
      "-w",
      str(tmp_path / "dist"),
      REPO,
    ],
    check=True,
    capture_output=True,
    timeout=300,
  )
  [wheel] = (tmp_path / "dist").glob("seed_rl-*.whl")
  with zipfile.ZipFile(wheel) as z:
    names = set(z.namelist())
    z.extractall(tmp_path / "site")
  sources = sorted(p.name for p in pathlib.Path(REPO, "grpc").iterdir() if p.suffix in (".cc", ".h"))
  assert sources and {f"seed/rpc/csrc/{s}" for s in sources} <= names
  for module in (
    "seed/grpc.py",
    "seed/train.py",
    "seed/runtime/learner.py",
    "agents/registry.py",
    "agents/vtrace/agent.py",
    "envs/factory.py",
    "configs/cartpole_vtrace.py",
  ):
    assert module in names, module
  assert not any(n.startswith("grpc/") for n in names), "a top-level grpc package would shadow grpcio"

  # From the unpacked wheel (not the checkout): sources found there, and they build the very
  # library a checkout builds (same cache key, so this reuses the cached build).
  code = (
    "from seed.rpc import build_op; print(build_op.SOURCE_DIR); print(build_op.op_library_path()); "
    "print(build_op.client_library_path())"
  )
  env = dict(os.environ, PYTHONPATH=str(tmp_path / "site"), TF_CPP_MIN_LOG_LEVEL="2")
  r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]
  source_dir, library, client_library = r.stdout.split()
  assert pathlib.Path(source_dir) == tmp_path / "site" / "seed" / "rpc" / "csrc"
  checkout = subprocess.run(
    [sys.executable, "-m", "seed.rpc.build_op"],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=600,
    env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
  )
  assert checkout.returncode == 0, checkout.stderr[-3000:]
  assert library == checkout.stdout.strip()
  client = subprocess.run(
    [sys.executable, "-m", "seed.rpc.build_op", "--client"], cwd=REPO, capture_output=True, text=True, timeout=600
  )
  assert client.returncode == 0, client.stderr[-3000:]
  assert client_library == client.stdout.strip() != library
