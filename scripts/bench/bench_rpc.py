#!/usr/bin/env python3
"""Throughput benchmark of the tensor-RPC op against its ceiling and a baseline.

Not a test: it prints measured calls/s, side by side, for

  (a) our op: a seed.grpc.Server (own process) with batched identity
      tf.functions (batch 64, flush timeout 2 ms), called through seed.grpc.Client
      by N Python threads, either eagerly (`client.ident(x)` in a Python loop)
      or from a tf.function running a tf.while_loop of M calls (no Python per
      call);
  (b) the ceiling: grpc/echo_bench.cc, a C++ echo server and closed-loop client
      on the very same transport (transport.h), no TensorFlow, each in its own
      process, with payloads of the serialized tensor size;
  (c) the baseline a user would otherwise write: a pure-Python grpcio server
      (own process, generic handler, bytes in/out) that batches concurrent
      calls (up to 64, same flush timeout) and runs the same identity
      tf.function on each batch, called by N Python grpcio client threads.
      Two flavours: a thread-pool server with a batching thread, and an
      asyncio server batching on its event loop; ratios use the faster one;
  (d) client-side batching: every call carries 64 elements (int32[4]) into a
      batch-256 function; reported as slots/s (calls/s x 64);
  (s) the same (a), (b) and (d) with calls on long-lived bidirectional streams
      (issue 26: `Client(streams=True)`, echo_bench stream-client) beside the
      unary ones, in the same run;
  (e) what security costs: (a) over plain TCP against the same server
      process with TLS (transport "tls") and with TLS and a bearer token
      ("tls+token"), certificates from scripts/tools/make_certs.sh, each ratio
      against plain TCP measured in the same run.

Each measurement warms up, then counts completed calls over a fixed wall-clock
window. Every server and client process started here is stopped (stdin closed,
then terminate/kill by pid) before the script returns.

    .venv/bin/python scripts/bench/bench_rpc.py --quick
    .venv/bin/python scripts/bench/bench_rpc.py --tls          # (e) only: 64 callers, 16 B and a frame, ~1 min
    .venv/bin/python scripts/bench/bench_rpc.py                # full table, ~8 min
"""

from __future__ import annotations

import argparse
import functools
import os
import pathlib
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = pathlib.Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
  sys.path.insert(0, str(REPO))

import numpy as np
from bench_rpc_report import SECURE, Result, cell, num, print_stream_targets, print_tables
from bench_rpc_servers import D_PAYLOAD, PAYLOADS, ROWS_PER_CALL_D, Payload, ServerProc


def closed_loop(concurrency: int, step, warmup: float, seconds: float, on_warm=None) -> float:
  """Runs `step(i) -> calls completed` in `concurrency` threads; returns calls/s.

  Calls are counted over [t0, t1] after the warm-up; a step that spans an edge
  of the window contributes pro rata (steps may hold many calls).
  """
  stop = threading.Event()
  records: list[list[tuple[float, float, int]]] = [[] for _ in range(concurrency)]
  errors: list[BaseException] = []

  def worker(i: int) -> None:
    rec = records[i]
    try:
      while not stop.is_set():
        s = time.perf_counter()
        k = step(i)
        rec.append((s, time.perf_counter(), k))
    except BaseException as e:  # pylint: disable=broad-except
      errors.append(e)
      stop.set()

  threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(concurrency)]
  for t in threads:
    t.start()
  try:
    time.sleep(warmup / 2)
    if on_warm is not None:
      on_warm(records, time.perf_counter())
    time.sleep(warmup / 2)
    t0 = time.perf_counter()
    stop.wait(seconds)
    t1 = time.perf_counter()
  finally:
    stop.set()
    deadline = time.monotonic() + 120
    for t in threads:
      t.join(max(0.0, deadline - time.monotonic()))
  if errors:
    raise errors[0]
  if any(t.is_alive() for t in threads):
    raise RuntimeError("callers still blocked 120 s after the window closed")
  calls = 0.0
  for rec in records:
    for s, e, k in rec:
      if e <= t0 or s >= t1:
        continue
      calls += k if (s >= t0 and e <= t1) or e == s else k * (min(e, t1) - max(s, t0)) / (e - s)
  return calls / (t1 - t0)


def _short(e: BaseException) -> str:
  """Exception type and its first informative line (TF errors start with boilerplate)."""
  lines = [
    l
    for l in str(e).splitlines()
    if l.strip() and not l[0].isspace() and not l.startswith(("Graph execution error", "Detected at node"))
  ]
  return f"{type(e).__name__}: {lines[0] if lines else ''}"[:240]


def _fill(before: dict, after: dict, method: str) -> float:
  b, a = before.get(method), after.get(method)
  if not a or not b:
    return float("nan")
  batches = a["batches"] - b["batches"]
  return (a["slots"] - b["slots"]) / (batches * a["batch_size"]) if batches else float("nan")


def measure(server: ServerProc | None, method: str, run, rows_per_call: int = 1) -> Result:
  """Wraps a client run with server stats and CPU accounting."""
  result = Result(rows_per_call=rows_per_call)
  try:
    stats0 = server.stats() if server else {}
    scpu0 = server.cpu_seconds() if server else float("nan")
    ccpu0 = time.process_time()
    wall0 = time.perf_counter()
    result.calls_per_sec = run()
    wall = time.perf_counter() - wall0
    if server:
      result.server_cores = (server.cpu_seconds() - scpu0) / wall
      result.fill = _fill(stats0, server.stats(), method)
    result.client_cores = (time.process_time() - ccpu0) / wall
  except Exception as e:  # pylint: disable=broad-except
    result.error = _short(e)
  return result


class Bench:
  """Holds the server processes and clients; runs single measurements."""

  def __init__(self, args, transports: list[str], tmpdir: str):
    self.args = args
    self.tmpdir = tmpdir
    self.addresses = {}  # (kind, transport) -> address
    self.servers: dict[str, ServerProc] = {}
    self.echo_servers: dict[str, ServerProc] = {}
    self._seed_clients = {}
    self._grpcio_channels = {}
    self._tf_loops = {}
    self.transports = transports
    import portpicker  # pylint: disable=g-import-not-at-top

    for kind in ("seed", "py", "aio", "echo"):
      for t in transports:
        if kind == "seed" or t not in SECURE:
          self.addresses[kind, t] = (
            f"unix:{tmpdir}/{kind}.sock" if t == "unix" else f"localhost:{portpicker.pick_unused_port()}"
          )
    self.credentials = {}  # transport -> seed.grpc.ChannelCredentials

  def start(self, need_py: bool) -> None:
    from seed.rpc import build_op  # pylint: disable=g-import-not-at-top

    self.echo_bin = str(build_op.echo_bench_path())
    self.op_path = build_op.op_library_path()  # build once here, not in two processes
    me = [sys.executable, str(pathlib.Path(__file__).resolve().with_name("bench_rpc_servers.py"))]
    flush = ["--flush-timeout", str(self.args.flush_timeout)]
    print(f"op library {self.op_path}\necho_bench {self.echo_bin}\nstarting servers ...", flush=True)
    log = lambda name: os.path.join(self.tmpdir, f"{name}.log")  # noqa: E731
    plain = [t for t in self.transports if t not in SECURE]
    if plain:
      self.servers["seed"] = ServerProc(
        "seed", me + ["seed", *flush, *[self.addresses["seed", t] for t in plain]], log("seed")
      )
    secure = [t for t in self.transports if t in SECURE]
    if secure:
      pki = self._make_certs()
      from seed import grpc as seed_grpc  # pylint: disable=g-import-not-at-top

      for t in secure:
        token = ["--token-file", f"{pki}/token"] if t == "tls+token" else []
        tls = ["--cert", f"{pki}/learner.crt", "--key", f"{pki}/learner.key", *token]
        self.servers[f"seed {t}"] = ServerProc(
          f"seed {t}", me + ["seed", *flush, *tls, self.addresses["seed", t]], log(f"seed-{t}")
        )
        self.credentials[t] = seed_grpc.ChannelCredentials(
          ca_file=f"{pki}/ca.crt", token_file=f"{pki}/token" if token else None
        )
    if need_py:
      for kind in ("py", "aio"):
        self.servers[kind] = ServerProc(kind, me + [kind, *flush, *[self.addresses[kind, t] for t in plain]], log(kind))
    for t in plain:
      self.echo_servers[t] = ServerProc(
        f"echo {t}", [self.echo_bin, "server", self.addresses["echo", t]], log(f"echo-{t}")
      )

  def _make_certs(self) -> str:
    pki = os.path.join(self.tmpdir, "pki")
    r = subprocess.run(
      [str(REPO / "scripts" / "tools" / "make_certs.sh"), pki, "localhost"], capture_output=True, text=True, check=False
    )
    if r.returncode != 0:
      raise RuntimeError(f"scripts/tools/make_certs.sh failed:\n{r.stdout}{r.stderr}")
    return pki

  def seed_server(self, transport: str) -> ServerProc:
    return self.servers[f"seed {transport}" if transport in SECURE else "seed"]

  def close(self) -> None:
    for ch in self._grpcio_channels.values():
      ch.close()
    for s in list(self.echo_servers.values()) + list(self.servers.values()):
      s.close()

  # -- (a) our op ----------------------------------------------------------
  def _client(self, transport: str, numpy_outputs: bool = False, streams: bool = False):
    key = (transport, numpy_outputs, streams)
    if key not in self._seed_clients:
      from seed import grpc as seed_grpc  # pylint: disable=g-import-not-at-top

      self._seed_clients[key] = seed_grpc.Client(
        self.addresses["seed", transport],
        connect_timeout=60,
        numpy_outputs=numpy_outputs,
        credentials=self.credentials.get(transport),
        streams=streams,
      )
    return self._seed_clients[key]

  def seed_eager(
    self,
    transport: str,
    p: Payload,
    conc: int,
    rows: int | None = None,
    numpy_outputs: bool = True,
    streams: bool = False,
  ) -> Result:
    """Eager calls as actors make them: numpy in, numpy out (numpy_outputs=False: tf.Tensors out)."""
    x = p.example(rows)

    def run():
      method = getattr(self._client(transport, numpy_outputs, streams), p.method)
      _first_call(lambda: np.asarray(method(x)), x, f"(a) {transport} {p.method}")

      def step(_):
        method(x)
        return 1

      return closed_loop(conc, step, self.args.warmup, self.args.seconds)

    return measure(self.seed_server(transport), p.method, run, rows or 1)

  def seed_tf(self, transport: str, p: Payload, conc: int, rows: int | None = None, streams: bool = False) -> Result:
    x = p.example(rows)
    last = [None] * conc

    def run():
      calls = self._tf_loop(transport, p, x, streams)
      _first_call(lambda: calls(x, 3).numpy(), x, f"(a, tf.function) {transport} {p.method}")
      # Calls per tf.function invocation: 8 for the first half of the warm-up, then
      # enough for ~invocation_seconds, so that Python's share is negligible.
      m = [8]

      def step(i):
        n = m[0]
        last[i] = calls(x, n)
        return n

      def on_warm(records, now):
        done = sum(k for rec in records for s, e, k in rec if e > now - self.args.warmup / 4)
        per_caller = done / (self.args.warmup / 4) / conc
        m[0] = int(min(1_000_000, max(8, per_caller * self.args.invocation_seconds)))

      rate = closed_loop(conc, step, self.args.warmup, self.args.seconds, on_warm)
      if not all(v is None or np.array_equal(v.numpy(), x) for v in last):
        raise RuntimeError("identity loop returned different values")
      return rate

    return measure(self.seed_server(transport), p.method, run, rows or 1)

  def _tf_loop(self, transport: str, p: Payload, x: np.ndarray, streams: bool = False):
    """tf.function(x, n): n chained remote calls in a tf.while_loop."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    key = (transport, p.method, x.shape, streams)
    if key not in self._tf_loops:
      method = getattr(self._client(transport, streams=streams), p.method)

      @tf.function(input_signature=[tf.TensorSpec(x.shape, tf.as_dtype(x.dtype)), tf.TensorSpec([], tf.int32)])
      def calls(x, n):
        # Each call consumes the previous result: one call in flight per caller.
        _, y = tf.while_loop(lambda i, y: i < n, lambda i, y: (i + 1, method(y)), (tf.constant(0), x))
        return y

      self._tf_loops[key] = calls
    return self._tf_loops[key]

  # -- (b) the C++ ceiling ---------------------------------------------------
  def echo(self, transport: str, p: Payload, conc: int, streams: bool = False) -> Result:
    server = self.echo_servers[transport]
    result = Result()
    scpu0, wall0 = server.cpu_seconds(), time.perf_counter()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cmd = [
      self.echo_bin,
      "stream-client" if streams else "client",
      self.addresses["echo", transport],
      str(conc),
      str(p.wire_bytes),
      str(self.args.seconds),
      str(self.args.warmup),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
      out, err = proc.communicate(timeout=self.args.seconds + self.args.warmup + 90)
    except subprocess.TimeoutExpired:
      proc.kill()
      out, err = proc.communicate()
      result.error = "echo_bench client timed out"
    finally:
      if proc.poll() is None:
        proc.kill()
        proc.wait()
    wall = time.perf_counter() - wall0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    result.server_cores = (server.cpu_seconds() - scpu0) / wall
    result.client_cores = (ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime) / wall
    values = dict(line.split(None, 1) for line in out.splitlines() if " " in line)
    if proc.returncode != 0 and not result.error:
      result.error = f"echo_bench client exit {proc.returncode}: {err.strip()[:200]}"
    if "CALLS_PER_SEC" in values:
      result.calls_per_sec = float(values["CALLS_PER_SEC"])
    return result

  # -- (c) the pure-Python grpcio baseline -------------------------------------
  def py_threads(self, transport: str, p: Payload, conc: int) -> Result:
    return self._py_grpcio("py", transport, p, conc)

  def py_aio(self, transport: str, p: Payload, conc: int) -> Result:
    return self._py_grpcio("aio", transport, p, conc)

  def _py_grpcio(self, kind: str, transport: str, p: Payload, conc: int) -> Result:
    import grpc  # pylint: disable=g-import-not-at-top  (pip grpcio)

    x = p.example()
    dtype = np.dtype(p.dtype)

    def run():
      if (kind, transport) not in self._grpcio_channels:
        channel = grpc.insecure_channel(self.addresses[kind, transport])
        self._grpcio_channels[kind, transport] = channel
        grpc.channel_ready_future(channel).result(timeout=60)
      stub = self._grpcio_channels[kind, transport].unary_unary(f"/seed/{p.method}")
      _first_call(
        lambda: np.frombuffer(stub(x.tobytes()), dtype).reshape(p.shape), x, f"(c, {kind}) {transport} {p.method}"
      )

      def step(_):
        y = np.frombuffer(stub(x.tobytes()), dtype).reshape(p.shape)
        if y.nbytes != x.nbytes:
          raise RuntimeError(f"got {y.nbytes} bytes back for {x.nbytes}")
        return 1

      return closed_loop(conc, step, self.args.warmup, self.args.seconds)

    return measure(self.servers[kind], p.method, run)


def _first_call(fn, expected: np.ndarray, what: str) -> None:
  """The untimed sanity call before a measurement.

  A failure is retried once, and said so: a client channel left idle for about
  a minute is dropped by our server ("too many pings", see the report), which
  fails the call made at that moment.
  """
  try:
    got = fn()
  except Exception as e:  # pylint: disable=broad-except
    print(f"  note: {what}: first call failed ({_short(e)}); retrying once", flush=True)
    got = fn()
  if not np.array_equal(got, expected):
    raise RuntimeError(f"{what}: identity returned different values")


# ----------------------------------------------------------------- main ---


def _median(results: list[Result]) -> Result:
  """The run with the median calls/s (the first error if every run failed)."""
  ok = sorted((r for r in results if not r.error), key=lambda r: r.calls_per_sec)
  return ok[(len(ok) - 1) // 2] if ok else results[0]


def measure_security(bench: Bench, args, payloads: list[str], concs: list[int]) -> list:
  """(e): (a) over tcp, tls and tls+token, interleaved (tcp, tls, tls+token, tcp, ...) so drift hits all alike."""
  rows = []
  for pname in payloads:
    for conc in concs:
      p, res = PAYLOADS[pname], {t: {} for t in ("tcp", *SECURE)}
      for key, fn in (("a_eager", bench.seed_eager), ("a_tf", bench.seed_tf)):
        runs = {t: [] for t in res}
        for _ in range(args.repeat):
          for t in res:
            runs[t].append(fn(t, p, conc))
        for t in res:
          res[t][key] = r = _median(runs[t])
          print(
            f"  {t:9s} {pname:5s} {conc:3d} {key:8s} {cell(r):>9s} calls/s  fill {r.fill:4.2f}  "
            f"server {r.server_cores:4.2f} client {r.client_cores:4.2f} cores" + (f"  {r.error}" if r.error else ""),
            flush=True,
          )
      rows += [((t, pname, conc), res[t]) for t in res]
  return rows


def _parse_list(s: str, cast=str) -> list:
  return [cast(v) for v in s.split(",") if v]


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--seconds", type=float, default=3.0, help="measurement window per configuration")
  parser.add_argument("--warmup", type=float, default=1.0, help="warm-up before each window")
  parser.add_argument("--quick", action="store_true", help="only unix, 16 B, 64 callers, plus (d)")
  parser.add_argument("--tls", action="store_true", help="only (e): (a) over tcp, tls, tls+token; 64 callers")
  parser.add_argument("--concurrency", default="1,8,64", help="comma-separated caller counts")
  parser.add_argument(
    "--transports", default="unix,tcp,tls,tls+token", help="comma-separated: unix, tcp, tls, tls+token"
  )
  parser.add_argument("--payloads", default="16B,frame", help="comma-separated: 16B, frame")
  parser.add_argument(
    "--invocation-seconds",
    type=float,
    default=1.0,
    help="(a, tf.function): loop length per invocation, in seconds of calls",
  )
  parser.add_argument("--repeat", type=int, default=1, help="runs per measurement; the median is shown")
  parser.add_argument("--d-callers", type=int, default=8, help="callers for (d)")
  parser.add_argument("--flush-timeout", type=float, default=0.002, help="seconds")
  args = parser.parse_args()

  if args.quick:
    transports, payloads, concs = ["unix"], ["16B"], [64]
  elif args.tls:
    transports, payloads, concs = ["tcp", *SECURE], ["16B", "frame"], [64]
  else:
    transports, payloads = _parse_list(args.transports), _parse_list(args.payloads)
    concs = _parse_list(args.concurrency, int)
  if any(t in SECURE for t in transports) and "tcp" not in transports:
    transports.append("tcp")  # (e)'s baseline
  bad = [t for t in transports if t not in ("unix", "tcp", *SECURE)] + [p for p in payloads if p not in PAYLOADS]
  if bad or not transports or not concs:
    parser.error(f"unknown transports/payloads {bad}")

  # SIGTERM unwinds like Ctrl-C, so the finally below stops every child.
  signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
  tmpdir = tempfile.mkdtemp(prefix="seed-bench-")
  bench = Bench(args, transports, tmpdir)
  rows, d_rows, sec_rows = [], [], []
  try:
    bench.start(need_py=bool(payloads) and not args.tls)
    t_start = time.perf_counter()
    for t in [t for t in transports if t not in SECURE and not args.tls]:
      for pname in payloads:
        for conc in concs:
          p = PAYLOADS[pname]
          res = {}
          eager_tensors = functools.partial(bench.seed_eager, numpy_outputs=False)
          for key, fn in (
            ("a_eager", bench.seed_eager),
            ("a_eager_tt", eager_tensors),
            ("a_tf", bench.seed_tf),
            ("b", bench.echo),
            ("a_eager_s", functools.partial(bench.seed_eager, streams=True)),
            ("a_tf_s", functools.partial(bench.seed_tf, streams=True)),
            ("b_s", functools.partial(bench.echo, streams=True)),
            ("c_threads", bench.py_threads),
            ("c_aio", bench.py_aio),
          ):
            res[key] = r = _median([fn(t, p, conc) for _ in range(args.repeat)])
            print(
              f"  {t:4s} {pname:5s} {conc:3d} {key:11s} {cell(r):>9s} calls/s  fill {r.fill:4.2f}  "
              f"server {r.server_cores:4.2f} client {r.client_cores:4.2f} cores" + (f"  {r.error}" if r.error else ""),
              flush=True,
            )
          rows.append(((t, pname, conc), res))
    if any(t in SECURE for t in transports):
      sec_rows = measure_security(bench, args, payloads, concs)
    for t in [t for t in transports if t not in SECURE and not args.tls] if not args.quick else ["unix"]:
      for mode, fn in (
        ("tf.function", bench.seed_tf),
        ("eager", bench.seed_eager),
        ("tf.function streams", functools.partial(bench.seed_tf, streams=True)),
        ("eager streams", functools.partial(bench.seed_eager, streams=True)),
      ):
        r = _median([fn(t, D_PAYLOAD, args.d_callers, rows=ROWS_PER_CALL_D) for _ in range(args.repeat)])
        print(
          f"  {t:4s} d     {args.d_callers:3d} {mode:19s} {num(r.slots_per_sec):>9s} slots/s  fill {r.fill:4.2f}"
          + (f"  {r.error}" if r.error else ""),
          flush=True,
        )
        d_rows.append(((t, mode, args.d_callers), r))
    print(f"measured in {time.perf_counter() - t_start:.0f} s")
  finally:
    bench.close()
    shutil.rmtree(tmpdir, ignore_errors=True)
  print_tables(rows, d_rows, sec_rows, args)
  print_stream_targets(rows, d_rows)


if __name__ == "__main__":
  main()
