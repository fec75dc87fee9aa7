"""The C++ unit test of the stream framing and the in-flight table: built through build_op, every case passes."""

from helpers import cc_cases_pass

from seed.rpc import build_op

CASES = ["round_trip", "detached_payload", "malformed", "garbage", "each_call_ends_once", "bound_and_close", "races"]


def test_stream_cases_pass():
  cc_cases_pass(build_op.stream_test_path, CASES)
