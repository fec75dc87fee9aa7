#!/usr/bin/env python3
"""Where a tensor-RPC call's CPU goes: one bench_rpc.py measurement under `perf`.

Runs one (a) row of scripts/bench/bench_rpc.py (64 callers, unix, 16 B by default)
while `perf record` samples the client (this process) and the server process,
then prints each side's CPU per call split by shared object and the hottest
symbols. Not a test. Needs `perf` (Debian: linux-perf) and root or
kernel.perf_event_paranoid <= 1.

    .venv/bin/python scripts/tools/profile_rpc.py --mode tf --streams
    .venv/bin/python scripts/tools/profile_rpc.py --mode eager
"""

from __future__ import annotations

import argparse
import collections
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "bench"))

from bench_rpc import Bench  # noqa: E402
from bench_rpc_servers import PAYLOADS  # noqa: E402


def _report(data: str) -> tuple[collections.Counter, collections.Counter, int]:
  """(samples by DSO, samples by symbol, total) of a perf.data file."""
  out = subprocess.run(
    ["perf", "report", "-i", data, "--no-children", "--stdio", "--sort", "dso,sym", "-F", "sample,dso,sym"],
    capture_output=True,
    text=True,
    check=True,
  ).stdout
  by_dso, by_sym, total = collections.Counter(), collections.Counter(), 0
  for line in out.splitlines():
    parts = line.split(None, 2)
    if len(parts) < 3 or line.startswith("#") or not parts[0].isdigit():
      continue
    n, dso, sym = int(parts[0]), parts[1], parts[2].strip()
    by_dso[dso] += n
    by_sym[f"{dso}  {sym[:90]}"] += n
    total += n
  return by_dso, by_sym, total


def _switches(pid: int) -> int:
  """Context switches so far, summed over the process's live threads."""
  n = 0
  for status in pathlib.Path(f"/proc/{pid}/task").glob("*/status"):
    try:
      for line in status.read_text().splitlines():
        if "ctxt_switches:" in line:  # voluntary and involuntary
          n += int(line.split()[1])
    except (OSError, ValueError):
      pass
  return n


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--mode", choices=["tf", "eager"], default="tf")
  parser.add_argument("--streams", action="store_true")
  parser.add_argument("--callers", type=int, default=64)
  parser.add_argument("--payload", choices=sorted(PAYLOADS), default="16B")
  parser.add_argument("--seconds", type=float, default=6.0)
  parser.add_argument("--top", type=int, default=25)
  parser.add_argument("--freq", type=int, default=999, help="samples/s per CPU")
  args = parser.parse_args()
  if shutil.which("perf") is None:
    parser.error("perf not found (Debian: apt-get install linux-perf)")
  # What Bench reads from bench_rpc.py's arguments.
  bench_args = argparse.Namespace(
    warmup=2.0, seconds=args.seconds, flush_timeout=0.002, invocation_seconds=1.0, repeat=1, d_callers=8
  )
  tmpdir = tempfile.mkdtemp(prefix="seed-profile-")
  bench = Bench(bench_args, ["unix"], tmpdir)
  try:
    bench.start(need_py=False)
    server_pid = bench.servers["seed"].proc.pid
    fn = bench.seed_tf if args.mode == "tf" else bench.seed_eager
    p = PAYLOADS[args.payload]
    fn("unix", p, args.callers, streams=args.streams)  # warm: traces, connects
    datas = {"client": f"{tmpdir}/client.data", "server": f"{tmpdir}/server.data"}
    window, warmup = args.seconds, 2.0
    switches = {}

    def record(side: str, pid: int) -> None:
      # After the warm-up (loop lengths set, as bench_rpc.py measures), for the window only.
      time.sleep(warmup)
      before = _switches(pid)
      subprocess.run(
        ["perf", "record", "-q", "-F", str(args.freq), "-p", str(pid), "-o", datas[side], "--", "sleep", str(window)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
      )
      switches[side] = _switches(pid) - before

    pids = {"client": os.getpid(), "server": server_pid}
    threads = [threading.Thread(target=record, args=item) for item in pids.items()]
    bench_args.warmup, bench_args.seconds = warmup, window
    for t in threads:
      t.start()
    result = fn("unix", p, args.callers, streams=args.streams)
    for t in threads:
      t.join()
    calls = result.calls_per_sec * window
    print(
      f"{args.mode} {'streams' if args.streams else 'unary'}, {args.callers} callers, unix, {args.payload}: "
      f"{result.calls_per_sec:,.0f} calls/s; client {result.client_cores:.2f} cores, server {result.server_cores:.2f}"
    )
    for side in ("client", "server"):
      by_dso, by_sym, total = _report(datas[side])
      if not total:
        print(f"{side}: no samples")
        continue
      cores = result.client_cores if side == "client" else result.server_cores
      us_per_call = cores * window / calls * 1e6 if calls else float("nan")
      print(
        f"\n{side}: {us_per_call:.1f} us CPU per call, {switches[side] / calls:.2f} context switches per call, "
        f"{total} samples; by shared object:"
      )
      for dso, n in by_dso.most_common(12):
        print(f"  {100 * n / total:5.1f}%  {us_per_call * n / total:5.1f} us  {dso}")
      print(f"{side}: hottest symbols")
      for sym, n in by_sym.most_common(args.top):
        print(f"  {100 * n / total:5.1f}%  {sym}")
  finally:
    bench.close()
    shutil.rmtree(tmpdir, ignore_errors=True)


if __name__ == "__main__":
  main()
