"""The C++ batcher's unit test binary: built through build_op, every case passes."""

from helpers import cc_cases_pass

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
  cc_cases_pass(build_op.batcher_test_path, CASES)
