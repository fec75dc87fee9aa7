"""The C++ batcher's unit test binary: built through build_op, every case passes."""

import subprocess

from seed.rpc import build_op

CASES = [
  "partial_flush",
  "spanning_call",
  "overflow",
  "whole_batch",
  "run_error",
  "run_error_spanning",
  "cancel_while_waiting",
  "shutdown_with_pending",
]


def test_batcher_cases_pass():
  binary = build_op.batcher_test_path()
  assert build_op.batcher_test_path() == binary  # cached
  proc = subprocess.run([str(binary)], capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
  passed = {line.split()[1] for line in proc.stdout.splitlines() if line.startswith("PASS ")}
  assert passed >= set(CASES), proc.stdout
