"""The op build: cached, a missing system library names its package, and a check with nothing changed
answers from a stamp without importing TensorFlow."""

import importlib.metadata
import os
import pathlib
import shutil
import subprocess
import sys
import types

import pytest
from helpers import REPO

from seed.rpc import build_op


def test_build_is_cached_and_keyed():
  first = build_op.op_library_path()
  assert first.exists() and first.name == "seed_rpc.so"
  assert build_op.op_library_path() == first  # cache hit, no rebuild
  assert first.stat().st_mtime == build_op.op_library_path().stat().st_mtime


def test_a_tensorflow_at_another_path_finds_the_op_built(monkeypatch):
  """CI's fresh clone (its own venv, the same TensorFlow) reuses the cached op instead of building it again."""
  built = build_op.op_library_path()
  cflags, lflags, version = build_op._tf_flags()
  [tf_dir] = build_op._lib_dirs(lflags)
  elsewhere = "/another/checkout/.venv/lib/python3.11/site-packages/tensorflow"
  moved = ([f.replace(tf_dir, elsewhere) for f in cflags], [f.replace(tf_dir, elsewhere) for f in lflags], version)
  assert moved[:2] != (cflags, lflags)
  monkeypatch.setattr(build_op, "_tf_flags", lambda: moved)
  assert build_op.op_library_path() == built


def test_missing_grpc_archives_name_the_package(monkeypatch, tmp_path):
  monkeypatch.setattr(build_op, "_lib_dir", lambda: tmp_path)
  with pytest.raises(build_op.BuildError, match="libgrpc\\+\\+-dev"):
    build_op.op_library_path()


def test_missing_compiler_names_the_package(monkeypatch):
  monkeypatch.setattr(build_op.shutil, "which", lambda name: None)
  with pytest.raises(build_op.BuildError, match="apt-get install"):
    build_op.op_library_path()


# The no-change path of `python -m seed.rpc.build_op` (scripts/setup.sh): a stamp, checked without TensorFlow.


def test_a_second_check_answers_from_the_stamp_without_importing_tensorflow():
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  first = subprocess.run(
    [sys.executable, "-m", "seed.rpc.build_op"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
  )
  assert first.returncode == 0, first.stderr[-3000:]
  code = (
    "import runpy, sys; runpy.run_module('seed.rpc.build_op', run_name='__main__'); "
    "assert 'tensorflow' not in sys.modules, 'the no-change check imported tensorflow'"
  )
  second = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
  assert second.returncode == 0, second.stderr[-3000:]
  assert second.stdout == first.stdout
  assert pathlib.Path(second.stdout.strip()) == build_op.op_library_path()  # what the full check says


@pytest.fixture
def stamped(monkeypatch, tmp_path):
  """build_op on a copy of the op's sources, stamps under tmp_path, and a stand-in full check that counts calls."""
  sources = tmp_path / "src"
  shutil.copytree(build_op.SOURCE_DIR, sources)
  monkeypatch.setattr(build_op, "SOURCE_DIR", sources)
  monkeypatch.setattr(build_op, "_stamp_dir", lambda: tmp_path / "stamps")
  library = tmp_path / "seed_rpc.so"
  library.write_bytes(b"")
  full_checks = []
  monkeypatch.setattr(build_op, "op_library_path", lambda: full_checks.append(1) or library)
  assert build_op.stamped_op_library_path() is None
  assert build_op.checked_op_library_path() == library and len(full_checks) == 1
  assert build_op.checked_op_library_path() == library and len(full_checks) == 1  # from the stamp
  return types.SimpleNamespace(sources=sources, library=library, full_checks=full_checks)


@pytest.mark.parametrize("name", ["server.cc", "transport.h"])
def test_a_changed_source_invalidates_the_stamp(stamped, name):
  source = stamped.sources / name
  original = source.read_bytes()
  source.write_bytes(original + b"\n// changed\n")
  assert build_op.stamped_op_library_path() is None
  assert build_op.checked_op_library_path() == stamped.library and len(stamped.full_checks) == 2
  assert build_op.stamped_op_library_path() == stamped.library  # stamped again, for the new sources
  source.write_bytes(original)
  assert build_op.stamped_op_library_path() == stamped.library  # the first stamp still holds for these


def test_a_changed_build_recipe_invalidates_the_stamp(stamped, monkeypatch, tmp_path):
  recipe = tmp_path / "build_op.py"
  recipe.write_text(pathlib.Path(build_op.__file__).read_text().replace('_BUILD_VERSION = "', '_BUILD_VERSION = "x'))
  monkeypatch.setattr(build_op, "__file__", str(recipe))
  assert build_op.stamped_op_library_path() is None


def test_another_tensorflow_version_invalidates_the_stamp(stamped, monkeypatch):
  real = importlib.metadata.distribution

  class Upgraded:
    def __init__(self, name):
      self._dist = real(name)
      self.version = self._dist.version + ".post1"

    def locate_file(self, path):
      return self._dist.locate_file(path)

  monkeypatch.setattr(build_op.importlib.metadata, "distribution", Upgraded)
  assert build_op.stamped_op_library_path() is None


def test_the_tensorflow_stamp_names_the_version_and_directory_tensorflow_reports():
  import tensorflow as tf

  stamp = build_op._tf_install_stamp()
  assert stamp is not None
  assert f"=={tf.__version__} " in stamp
  assert stamp.startswith(f"{pathlib.Path(tf.__file__).parent.resolve()} ")
  assert "libtensorflow_framework.so.2:" in stamp and "libtensorflow_cc.so.2:" in stamp


def test_a_missing_library_or_an_unknown_tensorflow_means_the_full_check(stamped, monkeypatch):
  stamped.library.unlink()
  assert build_op.stamped_op_library_path() is None
  stamped.library.write_bytes(b"")
  monkeypatch.setattr(build_op.importlib.util, "find_spec", lambda name: None)
  assert build_op.stamped_op_library_path() is None
  assert build_op.checked_op_library_path() == stamped.library and len(stamped.full_checks) == 2


def test_a_source_edited_during_the_full_check_is_not_stamped(stamped, monkeypatch):
  source = stamped.sources / "wire.cc"
  original = source.read_bytes()

  def edited_meanwhile():
    source.write_bytes(original + b"\n// edited during the build\n")
    return stamped.library

  source.write_bytes(original + b"\n// before the build\n")
  monkeypatch.setattr(build_op, "op_library_path", edited_meanwhile)
  assert build_op.checked_op_library_path() == stamped.library
  assert build_op.stamped_op_library_path() is None  # the edited sources: not stamped
  source.write_bytes(original + b"\n// before the build\n")
  assert build_op.stamped_op_library_path() is None  # nor the ones read before the build
