"""Call cancellation under load: scripts/tools/stress_cancel.py, 20 rounds in a row."""

import subprocess
import sys

import pytest
from helpers import REPO

pytestmark = pytest.mark.soak  # left out by ./scripts/test.sh --quick


def test_deadlines_cancel_blocked_runs_20_rounds_in_a_row():
  """10,000 calls with 1-50 ms deadlines against functions blocked on queues, a CPU hog beside them.

  Before runs got managers whose tokens never repeat (grpc/run_cancellation.cc), the first round
  already left runs uncancelled: they took later queue items and shutdown waited forever.
  """
  out = subprocess.run(
    [sys.executable, "scripts/tools/stress_cancel.py", "--rounds=20", "--calls=500", "--threads=16", "--timeout=240"],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
  assert out.stdout.count("\nok   ") + out.stdout.startswith("ok   ") == 20
  assert "PASSED: 20/20 rounds clean, 10000 calls" in out.stdout
