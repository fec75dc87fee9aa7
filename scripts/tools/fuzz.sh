#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60) and prints its executions; exits non-zero on a finding.
#   scripts/tools/fuzz.sh [SECONDS]
# Targets: grpc/fuzz_wire.cc (libFuzzer, clang with ASan + UBSan: the wire parser and call validation),
# grpc/fuzz_stream.cc (libFuzzer, ASan + UBSan: the stream framing),
# grpc/fuzz_predict.cc (libFuzzer, ASan + UBSan: TF Serving's Predict messages as the C++ server reads them),
# tests/fuzz/fuzz_rest.py and fuzz_config.py (atheris: REST body decoding, the model config parser).
# Seed corpora are in tests/fuzz/corpus/<target> (read only); new inputs go to a temp dir, findings
# (crash-*, timeout-*) to tests/fuzz/findings/ for a regression test and a fix.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-60}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p tests/fuzz/findings
export PYTHONPATH=$PWD TF_CPP_MIN_LOG_LEVEL=3 ASAN_OPTIONS=detect_leaks=0
wire=$(.venv/bin/python -c "from seed.rpc import build_op; print(build_op.fuzz_target_path())" 2>/dev/null)
stream=$(.venv/bin/python -c "from seed.rpc import build_op; print(build_op.fuzz_stream_path())" 2>/dev/null)
predict=$(.venv/bin/python -c "from seed.rpc import build_op; print(build_op.fuzz_predict_path())" 2>/dev/null)
status=0
for target in wire stream predict rest config; do
  case $target in
    wire) cmd=("$wire") ;;
    stream) cmd=("$stream") ;;
    predict) cmd=("$predict") ;;
    *) cmd=(.venv/bin/python "tests/fuzz/fuzz_$target.py") ;;
  esac
  mkdir -p "$work/$target"
  log="$work/$target.log"
  if "${cmd[@]}" -max_total_time="$seconds" -timeout=10 -max_len=4096 -print_final_stats=1 \
      -artifact_prefix="tests/fuzz/findings/$target-" "$work/$target" "tests/fuzz/corpus/$target" >"$log" 2>&1; then
    result="clean"
  else
    result="FINDING (see tests/fuzz/findings/)"; status=1
  fi
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  printf '%-7s %8s s  %12s executions  %s\n' "$target" "$seconds" "$runs" "$result"
  [ "$result" = clean ] || tail -30 "$log"
done
exit $status
