"""The fuzz targets run clean for a few seconds from their seed corpora (longer: scripts/tools/fuzz.sh).

Each run uses a fixed seed and a private work corpus; the kept corpora in tests/fuzz/corpus are only read.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from seed.rpc import build_op
from tests.helpers import REPO

pytestmark = pytest.mark.soak  # left out by ./scripts/test.sh --quick

CORPUS = os.path.join(REPO, "tests", "fuzz", "corpus")


def _command(target: str) -> list[str]:
  if target == "wire":
    return [str(build_op.fuzz_target_path())]
  if target == "stream":
    return [str(build_op.fuzz_stream_path())]
  if target == "predict":
    return [str(build_op.fuzz_predict_path())]
  return [sys.executable, os.path.join(REPO, "tests", "fuzz", f"fuzz_{target}.py")]


@pytest.mark.parametrize("target", ["wire", "stream", "predict", "rest", "config"])
def test_fuzz_target_runs_clean(target, tmp_path):
  if target in ("wire", "stream", "predict") and not shutil.which("clang++"):
    pytest.fail("clang++ is missing: scripts/setup.sh installs it (the libFuzzer target needs clang)")
  work = tmp_path / "corpus"
  work.mkdir()
  env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3", ASAN_OPTIONS="detect_leaks=0")
  r = subprocess.run(
    [
      *_command(target),
      "-seed=1",
      "-max_total_time=4",
      "-timeout=10",
      "-max_len=4096",
      # The RSS check once tripped at 2.1 GB on the empty input (ASan's allocator growing over the
      # run, not one input): the process gets 4 GB, a single allocation still at most 2 GB.
      "-rss_limit_mb=4096",
      "-malloc_limit_mb=2048",
      "-print_final_stats=1",
      f"-artifact_prefix={tmp_path}/",
      str(work),
      os.path.join(CORPUS, target),
    ],
    capture_output=True,
    text=True,
    timeout=240,
    env=env,
    cwd=tmp_path,
  )
  out = r.stdout + r.stderr
  assert r.returncode == 0, out[-4000:]
  runs = int(re.search(r"stat::number_of_executed_units:\s*(\d+)", out)[1])
  assert runs > 1000, out[-2000:]
  assert not list(tmp_path.glob("crash-*")) and not list(tmp_path.glob("timeout-*"))
