"""The C++ unit test of the stream framing and the in-flight table: built through build_op, every case passes."""

import subprocess

from seed.rpc import build_op

CASES = ["round_trip", "malformed", "garbage", "each_call_ends_once", "bound_and_close", "races"]


def test_stream_cases_pass():
  binary = build_op.stream_test_path()
  assert build_op.stream_test_path() == binary  # cached
  proc = subprocess.run([str(binary)], capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
  passed = {line.split()[1] for line in proc.stdout.splitlines() if line.startswith("PASS ")}
  assert passed >= set(CASES), proc.stdout
