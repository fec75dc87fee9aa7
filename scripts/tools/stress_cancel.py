"""Stress test of call cancellation: deadlines of 1-50 ms against functions blocked on queues.

    .venv/bin/python scripts/tools/stress_cancel.py [--rounds 20] [--calls 2000] [--threads 32] [--timeout 600]

Each round, in one child process, makes a server binding two functions that block: `take`
dequeues from an empty FIFOQueue, `put` enqueues into a full one. --calls calls (half each) with
deadlines drawn from 1-50 ms come from --threads threads while a CPU hog runs beside them. Every
call must fail with DeadlineExceeded and its run on the server must be cancelled: the server's
`running` count must fall to 0 within 30 s (a run's cancellation can still be on its way for a
few ms after its client gave up; one that was lost never ends), then 20 items are enqueued into
the empty queue (a run that missed its cancellation takes one), the server is shut down (it
waits for every run; a missed `put` never ends), and both queues must hold exactly what the
round put there. Prints one line per round and a verdict; exits 1 on the first failed
round, or when a round does not finish within --timeout in total (a shutdown that never returns).

This reproduced TensorFlow's queue cancellation matching stale entries by a reused
CancellationManager address every time before grpc/run_cancellation.cc.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

CHILD = r"""
import concurrent.futures, json, sys, tempfile, time
import numpy as np, tensorflow as tf
from seed import grpc
rounds, calls, threads = (int(a) for a in sys.argv[1:4])
SETTLE_S = 30.0
sock_dir = tempfile.mkdtemp()

def run_round(r):
  empty = tf.queue.FIFOQueue(100, tf.int32, shapes=[[]])
  full = tf.queue.FIFOQueue(1, tf.int32, shapes=[[]])
  full.enqueue(-1)

  @tf.function(input_signature=[tf.TensorSpec([], tf.int32)])
  def take(x):
    return empty.dequeue() + x

  @tf.function(input_signature=[tf.TensorSpec([], tf.int32)])
  def put(x):
    full.enqueue(x)
    return x

  address = f"unix:{sock_dir}/r{r}.sock"
  server = grpc.Server(address)
  server.bind(take)
  server.bind(put)
  server.start()
  client = grpc.Client(address, numpy_outputs=True)

  def call(args):
    method, timeout = args
    try:
      getattr(client, method)(np.int32(1), timeout=float(timeout))
    except tf.errors.DeadlineExceededError:
      return "deadline"
    except tf.errors.OpError as e:
      return type(e).__name__
    return "answered"

  rng = np.random.default_rng(r)
  work = list(zip(rng.choice(["take", "put"], calls), rng.uniform(0.001, 0.050, calls)))
  start = time.monotonic()
  with concurrent.futures.ThreadPoolExecutor(threads) as pool:
    outcomes = list(pool.map(call, work))
  calls_s = time.monotonic() - start
  # The client's deadline and the server's fire apart: a run may still be in flight (its
  # cancellation on the way) when the last client gives up. Wait until none is; a run whose
  # cancellation was lost never ends.
  running_after_calls = running = server.stats()["__server__"]["running"]
  settle = time.monotonic()
  while running and time.monotonic() - settle < SETTLE_S:
    time.sleep(0.01)
    running = server.stats()["__server__"]["running"]
  settled_s = time.monotonic() - settle
  empty.enqueue_many([list(range(1, 21))])
  start = time.monotonic()
  server.shutdown()
  return {"round": r, "outcomes": {o: outcomes.count(o) for o in sorted(set(outcomes))},
          "calls_s": round(calls_s, 2), "running_after_calls": running_after_calls,
          "still_running": running, "settled_s": round(settled_s, 3), "shutdown_s": round(time.monotonic() - start, 3),
          "take_queue": int(empty.size()), "put_queue": int(full.size())}

for r in range(rounds):
  print(json.dumps(run_round(r)), flush=True)
"""


def round_ok(result: dict, calls: int) -> bool:
  """All calls timed out, every run ended, no stale `take` took an item, no stale `put` added one."""
  return (
    result["outcomes"] == {"deadline": calls}
    and result["still_running"] == 0
    and result["take_queue"] == 20
    and result["put_queue"] == 1
  )


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
  parser.add_argument("--rounds", type=int, default=20)
  parser.add_argument("--calls", type=int, default=2000, help="calls per round, half to each function")
  parser.add_argument("--threads", type=int, default=32)
  parser.add_argument("--timeout", type=float, default=600.0, help="seconds for all rounds")
  args = parser.parse_args(argv)
  hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
  env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3")
  child = subprocess.Popen(
    [sys.executable, "-c", CHILD, str(args.rounds), str(args.calls), str(args.threads)],
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
    env=env,
  )
  start = time.monotonic()
  clean, failed = 0, None
  try:
    out, err = child.communicate(timeout=args.timeout)
  except subprocess.TimeoutExpired:
    child.kill()
    out, err = child.communicate()
    failed = f"no exit after {args.timeout:g} s (a shutdown waiting for a run nobody cancelled)"
  finally:
    hog.kill()
    hog.wait()
  for line in out.splitlines():
    result = json.loads(line)
    ok = round_ok(result, args.calls)
    print(("ok   " if ok else "FAIL ") + line, flush=True)
    if not ok:
      failed = failed or f"round {result['round']} failed"
      break
    clean += 1
  if failed is None and clean < args.rounds:
    failed = f"the child exited {child.returncode} after {clean} rounds: {err.strip()[-2000:]}"
  elapsed = time.monotonic() - start
  if failed:
    print(f"FAILED: {clean}/{args.rounds} rounds clean, then {failed} ({elapsed:.0f} s)")
    return 1
  print(f"PASSED: {clean}/{args.rounds} rounds clean, {args.rounds * args.calls} calls ({elapsed:.0f} s)")
  return 0


if __name__ == "__main__":
  sys.exit(main())
