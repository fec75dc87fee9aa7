"""The op build: cached, and a missing system library names its package."""

import pytest

from seed.rpc import build_op


def test_build_is_cached_and_keyed():
  first = build_op.op_library_path()
  assert first.exists() and first.name == "seed_rpc.so"
  assert build_op.op_library_path() == first  # cache hit, no rebuild
  assert first.stat().st_mtime == build_op.op_library_path().stat().st_mtime


def test_missing_grpc_archives_name_the_package(monkeypatch, tmp_path):
  monkeypatch.setattr(build_op, "_lib_dir", lambda: tmp_path)
  with pytest.raises(build_op.BuildError, match="libgrpc\\+\\+-dev"):
    build_op.op_library_path()


def test_missing_compiler_names_the_package(monkeypatch):
  monkeypatch.setattr(build_op.shutil, "which", lambda name: None)
  with pytest.raises(build_op.BuildError, match="apt-get install"):
    build_op.op_library_path()
