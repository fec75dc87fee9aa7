#!/usr/bin/env python3
"""The server processes scripts/bench/bench_rpc.py measures, and the payloads they serve.

Each serves batched identity tf.functions on the given addresses, prints one
READY line, answers a "stats" line on stdin with one JSON line, and shuts down
when stdin closes (so it never outlives the benchmark):

    bench_rpc_servers.py {seed|py|aio} [--flush-timeout S] [--cert F --key F [--token-file F]] ADDRESS...

  seed: our op's server (with --cert/--key: TLS on its TCP addresses, with
  --token-file: a bearer token too); py: a Python grpcio server batching on a
  thread pool; aio: the same batching on grpcio's asyncio server.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import queue
import subprocess
import sys
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = pathlib.Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
  sys.path.insert(0, str(REPO))

import numpy as np

BATCH = 64
BIG_BATCH = 256  # (d): client-side batches of 64 rows into a batch-256 function
ROWS_PER_CALL_D = 64


@dataclasses.dataclass(frozen=True)
class Payload:
  name: str  # as given on the command line
  method: str  # bound function name
  shape: tuple  # one element (without the batch dimension)
  dtype: str

  @property
  def nbytes(self) -> int:
    return int(np.prod(self.shape)) * np.dtype(self.dtype).itemsize

  @property
  def wire_bytes(self) -> int:
    """Size of one element as our op serializes it (grpc/wire.cc)."""
    return 4 + 4 + 4 + 4 + 8 * len(self.shape) + self.nbytes

  def example(self, rows: int | None = None) -> np.ndarray:
    shape = self.shape if rows is None else (rows,) + self.shape
    return (np.arange(int(np.prod(shape))) % 251).astype(self.dtype).reshape(shape)


PAYLOADS = {
  "16B": Payload("16B", "ident", (4,), "int32"),
  "frame": Payload("frame", "frame", (84, 84, 4), "uint8"),
}
D_PAYLOAD = Payload("d", "ident256", (4,), "int32")


def _functions():
  """The identity functions both servers run (same definitions)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  fns = {}
  for p, n in [(PAYLOADS["16B"], BATCH), (PAYLOADS["frame"], BATCH), (D_PAYLOAD, BIG_BATCH)]:
    spec = tf.TensorSpec((n,) + p.shape, tf.as_dtype(p.dtype))
    fn = tf.function(lambda x: x, input_signature=[spec])
    fns[p.method] = (fn, p, n)
  return fns


# ------------------------------------------------------------- servers ---


def _serve_commands(stats) -> None:
  for line in sys.stdin:
    if line.strip() == "stats":
      print(json.dumps(stats()), flush=True)


def serve_seed(addresses: list[str], flush_timeout: float, args: argparse.Namespace) -> None:
  from seed import grpc as seed_grpc  # pylint: disable=g-import-not-at-top

  credentials = None
  if args.cert:
    credentials = seed_grpc.ServerCredentials(cert_file=args.cert, key_file=args.key, token_file=args.token_file)
  server = seed_grpc.Server(addresses, credentials=credentials)
  for name, (fn, _, _) in _functions().items():
    server.bind(fn, name=name, flush_timeout=flush_timeout)
  server.start()
  print("READY", json.dumps(server.ports), flush=True)
  try:
    _serve_commands(server.stats)
  finally:
    server.shutdown()


class _Slot:
  __slots__ = ("event", "result")

  def __init__(self):
    self.event = threading.Event()
    self.result = None


def _run_padded(batcher, requests: list[bytes]) -> np.ndarray:
  """Runs batcher.fn on the requests' rows, zero-padded to batcher.size; counts them."""
  elem_shape, dtype = batcher.payload.shape, np.dtype(batcher.payload.dtype)
  n = len(requests)
  x = np.frombuffer(b"".join(requests), dtype).reshape((n,) + elem_shape)
  if n < batcher.size:
    x = np.concatenate([x, np.zeros((batcher.size - n,) + elem_shape, dtype)])
  out = batcher.fn(x).numpy()
  batcher.calls += n
  batcher.batches += 1
  batcher.slots += n
  return out


class _PyBatcher:
  """Collects concurrent calls into batches of up to `size` for a tf.function."""

  def __init__(self, fn, payload: Payload, size: int, flush_timeout: float):
    self.fn, self.payload, self.size, self.flush_timeout = fn, payload, size, flush_timeout
    self.queue: queue.SimpleQueue = queue.SimpleQueue()
    self.calls = self.batches = self.slots = 0
    self.thread = threading.Thread(target=self._loop, daemon=True)
    self.thread.start()

  def handle(self, request: bytes, context) -> bytes:
    del context
    slot = _Slot()
    self.queue.put((request, slot, time.monotonic()))
    slot.event.wait()
    return slot.result

  def _loop(self) -> None:
    while True:
      items = [self.queue.get()]
      if items[0] is None:
        return
      # The batch opens with its first call and runs when full or flush_timeout later.
      deadline = items[0][2] + self.flush_timeout
      while len(items) < self.size:
        remaining = deadline - time.monotonic()
        try:
          item = self.queue.get(timeout=remaining) if remaining > 0 else self.queue.get_nowait()
        except queue.Empty:
          break
        if item is None:
          self.queue.put(None)
          break
        items.append(item)
      out = _run_padded(self, [item[0] for item in items])
      for i, (_, slot, _) in enumerate(items):
        slot.result = out[i].tobytes()
        slot.event.set()


def serve_py(addresses: list[str], flush_timeout: float, args: argparse.Namespace) -> None:
  del args
  import concurrent.futures  # pylint: disable=g-import-not-at-top

  import grpc  # pylint: disable=g-import-not-at-top  (pip grpcio)

  batchers = {name: _PyBatcher(fn, p, n, flush_timeout) for name, (fn, p, n) in _functions().items()}
  # Every in-flight call holds a worker thread while it waits for its batch.
  server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=4 * BATCH + 16))
  handlers = {name: grpc.unary_unary_rpc_method_handler(b.handle) for name, b in batchers.items()}
  server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("seed", handlers),))
  ports = [server.add_insecure_port(a) for a in addresses]
  server.start()
  print("READY", json.dumps(ports), flush=True)

  def stats():
    return {
      name: {"calls": b.calls, "batches": b.batches, "slots": b.slots, "batch_size": b.size}
      for name, b in batchers.items()
    }

  try:
    _serve_commands(stats)
  finally:
    server.stop(grace=0.5).wait()
    for b in batchers.values():
      b.queue.put(None)


class _AioBatcher:
  """asyncio flavour of _PyBatcher: same batching, on the server's event loop."""

  def __init__(self, fn, payload: Payload, size: int, flush_timeout: float):
    self.fn, self.payload, self.size, self.flush_timeout = fn, payload, size, flush_timeout
    self.pending: list = []
    self.timer = None
    self.calls = self.batches = self.slots = 0

  async def handle(self, request: bytes, context) -> bytes:
    del context
    import asyncio  # pylint: disable=g-import-not-at-top

    loop = asyncio.get_running_loop()
    future = loop.create_future()
    self.pending.append((request, future))
    if len(self.pending) >= self.size:
      self._run()
    elif self.timer is None:  # the batch opens with its first call
      self.timer = loop.call_later(self.flush_timeout, self._run)
    return await future

  def _run(self) -> None:
    import asyncio  # pylint: disable=g-import-not-at-top

    if self.timer is not None:
      self.timer.cancel()
      self.timer = None
    items, self.pending = self.pending[: self.size], self.pending[self.size :]
    if items:
      out = _run_padded(self, [req for req, _ in items])
      for i, (_, future) in enumerate(items):
        if not future.done():  # the client may have gone
          future.set_result(out[i].tobytes())
    if self.pending:
      self.timer = asyncio.get_running_loop().call_later(self.flush_timeout, self._run)


def serve_py_aio(addresses: list[str], flush_timeout: float, args: argparse.Namespace) -> None:
  del args
  import asyncio  # pylint: disable=g-import-not-at-top

  import grpc  # pylint: disable=g-import-not-at-top  (pip grpcio)

  async def serve():
    batchers = {name: _AioBatcher(fn, p, n, flush_timeout) for name, (fn, p, n) in _functions().items()}
    server = grpc.aio.server()
    handlers = {name: grpc.unary_unary_rpc_method_handler(b.handle) for name, b in batchers.items()}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("seed", handlers),))
    ports = [server.add_insecure_port(a) for a in addresses]
    await server.start()
    print("READY", json.dumps(ports), flush=True)
    loop = asyncio.get_running_loop()
    while True:  # the stats / EOF protocol, without blocking the event loop
      line = await loop.run_in_executor(None, sys.stdin.readline)
      if not line:
        break
      if line.strip() == "stats":
        print(
          json.dumps(
            {
              name: {"calls": b.calls, "batches": b.batches, "slots": b.slots, "batch_size": b.size}
              for name, b in batchers.items()
            }
          ),
          flush=True,
        )
    await server.stop(0.5)

  asyncio.run(serve())


def proc_cpu_seconds(pid: int) -> float:
  """utime + stime of a live process."""
  with open(f"/proc/{pid}/stat") as f:
    fields = f.read().rsplit(")", 1)[1].split()
  return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ServerProc:
  """A child server process speaking the READY / stats / EOF protocol."""

  def __init__(self, name: str, cmd: list[str], log_path: str, startup_timeout: float = 180.0):
    self.name = name
    self.log_path = log_path  # the child's stderr (TF start-up chatter, errors)
    with open(log_path, "w") as log:
      self.proc = subprocess.Popen(
        cmd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        bufsize=1,
        cwd=REPO,
        start_new_session=True,
      )  # no terminal SIGINT: we stop it
    self._lines: queue.SimpleQueue = queue.SimpleQueue()
    threading.Thread(target=self._read, daemon=True).start()
    line = self._next_line(startup_timeout)
    if line is None or not line.startswith("READY"):
      self.close()
      raise RuntimeError(
        f"{name} server did not start (got {line!r}, exit code {self.proc.poll()}); "
        f"its stderr ends with:\n{self.log_tail()}"
      )
    self.ready = line.split(None, 1)[1] if " " in line else ""

  def _read(self) -> None:
    for line in self.proc.stdout:
      self._lines.put(line.rstrip("\n"))
    self._lines.put(None)

  def _next_line(self, timeout: float):
    try:
      return self._lines.get(timeout=timeout)
    except queue.Empty:
      return None

  def log_tail(self, n: int = 20) -> str:
    try:
      with open(self.log_path, errors="replace") as f:
        return "".join(f.readlines()[-n:])
    except OSError:
      return ""

  def stats(self) -> dict:
    if self.proc.poll() is not None:
      raise RuntimeError(f"{self.name} server exited with {self.proc.returncode}:\n{self.log_tail()}")
    self.proc.stdin.write("stats\n")
    self.proc.stdin.flush()
    line = self._next_line(30)
    return json.loads(line) if line else {}

  def cpu_seconds(self) -> float:
    try:
      return proc_cpu_seconds(self.proc.pid)
    except OSError:
      return float("nan")

  def close(self) -> None:
    if self.proc.poll() is None:
      try:
        self.proc.stdin.close()
      except OSError:
        pass
      try:
        self.proc.wait(timeout=15)
      except subprocess.TimeoutExpired:
        self.proc.terminate()
        try:
          self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
          self.proc.kill()
          self.proc.wait()
    if self.proc.stdout:
      self.proc.stdout.close()
    if self.proc.returncode not in (0, None):
      print(
        f"warning: {self.name} server exited with {self.proc.returncode}; stderr ends with:\n{self.log_tail()}",
        file=sys.stderr,
      )


# ------------------------------------------------------------ measuring ---


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("kind", choices=["seed", "py", "aio"])
  parser.add_argument("--flush-timeout", type=float, default=0.002, help="seconds")
  parser.add_argument("--cert", help="seed: PEM certificate (TLS)")
  parser.add_argument("--key", help="seed: PEM private key of --cert")
  parser.add_argument("--token-file", help="seed: a bearer token every TCP call must carry")
  parser.add_argument("addresses", nargs="+")
  args = parser.parse_args()
  if args.kind != "seed" and (args.cert or args.token_file):
    parser.error("--cert/--key/--token-file are for the seed server")
  serve = {"seed": serve_seed, "py": serve_py, "aio": serve_py_aio}[args.kind]
  serve(args.addresses, args.flush_timeout, args)


if __name__ == "__main__":
  main()
