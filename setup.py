"""Ships the op's C++ sources (top-level grpc/, which cannot be a Python package:
it would shadow grpcio) inside the wheel as seed/rpc/csrc/, so an installed
copy builds the op from them. Everything else is in pyproject.toml."""

import pathlib
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py

_CSRC = pathlib.Path("grpc")


class BuildPyWithOpSources(build_py):
  def run(self):
    super().run()
    target = pathlib.Path(self.build_lib) / "seed" / "rpc" / "csrc"
    target.mkdir(parents=True, exist_ok=True)
    for src in sorted(_CSRC.glob("*.cc")) + sorted(_CSRC.glob("*.h")):
      shutil.copy2(src, target / src.name)


setup(cmdclass={"build_py": BuildPyWithOpSources})
