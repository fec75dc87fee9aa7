"""Reproducer of the cancellation race (issue 16, open): deadlines that do not cancel their runs.

    .venv/bin/python scripts/repro_cancel_race.py [--calls 2000] [--threads 32] [--timeout 60]

A server binds a function blocked on an empty FIFOQueue; --calls calls with 1-50 ms deadlines
come from --threads threads while a CPU hog runs beside them. Every call must fail with
DeadlineExceeded and its run on the server must be cancelled. The scenario runs in a child
process with a deadline: then 20 items are enqueued (a run that missed its cancellation takes
one), and the server is shut down (it waits for every run). Prints what happened and exits 1
when the race shows: items taken by stale runs, or a shutdown that does not return.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = r"""
import concurrent.futures, sys, tempfile, time
import numpy as np, tensorflow as tf
from seed import grpc
calls, threads = int(sys.argv[1]), int(sys.argv[2])
q = tf.queue.FIFOQueue(100, tf.int32, shapes=[[]])

@tf.function(input_signature=[tf.TensorSpec([], tf.int32)])
def wait(x):
  return q.dequeue() + x

address = f"unix:{tempfile.mkdtemp()}/race.sock"
server = grpc.Server(address)
server.bind(wait)
server.start()
client = grpc.Client(address, numpy_outputs=True)

def call(timeout):
  try:
    client.wait(np.int32(0), timeout=float(timeout))
  except tf.errors.DeadlineExceededError:
    return "deadline"
  except tf.errors.OpError as e:
    return type(e).__name__
  return "answered"

deadlines = np.random.default_rng(0).uniform(0.001, 0.050, calls)
with concurrent.futures.ThreadPoolExecutor(threads) as pool:
  outcomes = list(pool.map(call, deadlines))
print("outcomes", {o: outcomes.count(o) for o in set(outcomes)}, flush=True)
q.enqueue_many([list(range(1, 21))])
time.sleep(1.0)
print("items left of 20 after 1 s:", int(q.size()), flush=True)
print("shutting down", flush=True)
server.shutdown()
print("shutdown returned", flush=True)
"""


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
  parser.add_argument("--calls", type=int, default=2000)
  parser.add_argument("--threads", type=int, default=32)
  parser.add_argument("--timeout", type=float, default=60.0)
  args = parser.parse_args()
  hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
  env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3")
  child = subprocess.Popen(
    [sys.executable, "-c", CHILD, str(args.calls), str(args.threads)],
    stdout=subprocess.PIPE,
    stderr=subprocess.DEVNULL,
    text=True,
    env=env,
  )
  start = time.monotonic()
  try:
    out, _ = child.communicate(timeout=args.timeout)
  except subprocess.TimeoutExpired:
    child.kill()
    out, _ = child.communicate()
    out += f"(no exit after {args.timeout:g} s: killed)\n"
  finally:
    hog.kill()
    hog.wait()
  print(out, end="")
  raced = "shutdown returned" not in out or "items left of 20 after 1 s: 20" not in out
  print(f"{'RACE REPRODUCED' if raced else 'not reproduced'} ({time.monotonic() - start:.0f} s)")
  return 1 if raced else 0


if __name__ == "__main__":
  sys.exit(main())
