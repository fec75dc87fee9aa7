"""What scripts/bench/bench_rpc.py prints: its result record, the tables, and the targets each row is held to."""

from __future__ import annotations

import dataclasses
import os

from bench_rpc_servers import BATCH, BIG_BATCH, ROWS_PER_CALL_D

TARGET_AB = 0.8  # (a, tf.function) / (b) at 64 callers, unix, 16 B
TARGET_AC = 3.0  # (a, eager) / (c) at 64 callers, unix, 16 B
TARGET_D = 1_000_000  # slots/s
# Streams (issue 26), 64 callers, unix, 16 B, same run: (a, tf.fn, streams) / (b, unary);
# (a, eager, streams) / (a, eager, unary); (a, eager, streams) / (c); (d, streams) / (d, unary).
TARGET_STREAM_TF_B = 0.8
TARGET_STREAM_EAGER = 2.0
TARGET_STREAM_EAGER_C = 5.0
TARGET_STREAM_D = 2.5
SECURE = ("tls", "tls+token")  # transports of (e): TCP to a TLS server, without and with a token


@dataclasses.dataclass
class Result:
  calls_per_sec: float = float("nan")
  rows_per_call: int = 1
  fill: float = float("nan")  # mean batch fill on the server (slots / batch capacity)
  server_cores: float = float("nan")  # CPU used by the server process(es) / wall time
  client_cores: float = float("nan")  # CPU used by the client process / wall time
  error: str = ""

  @property
  def slots_per_sec(self) -> float:
    return self.calls_per_sec * self.rows_per_call


# ------------------------------------------------------------- printing ---


def num(v: float) -> str:
  return "-" if v != v else f"{v:,.0f}"


def _ratio(a: float, b: float) -> str:
  return "-" if (a != a or b != b or b == 0) else f"{a / b:.2f}"


def cell(r: Result | None) -> str:
  if r is None:
    return "-"
  return "ERROR" if r.error else num(r.calls_per_sec)


def print_tables(rows, d_rows, sec_rows, args) -> None:
  cols = [
    "transport",
    "payload",
    "callers",
    "(a) eager",
    "(a) eager T",
    "(a) tf.fn",
    "(b) C++",
    "(a) eager S",
    "(a) tf.fn S",
    "(b) C++ S",
    "(c) py thr",
    "(c) py aio",
    "a.tf/b",
    "a.eager/c",
    "targets (64 callers, unix, 16B)",
  ]
  val = lambda r: r.calls_per_sec if r and not r.error else float("nan")  # noqa: E731
  table = []
  for (t, pname, conc), res in rows:
    keys = ("a_eager", "a_eager_tt", "a_tf", "b", "a_eager_s", "a_tf_s", "b_s", "c_threads", "c_aio")
    a_e, a_et, a_t, b, a_es, a_ts, b_s, c_thr, c_aio = (res.get(k) for k in keys)
    c_best = max((v for v in (val(c_thr), val(c_aio)) if v == v), default=float("nan"))
    ab, ac = _ratio(val(a_t), val(b)), _ratio(val(a_e), c_best)
    target = ""
    if t == "unix" and pname == "16B" and conc == 64:

      def verdict(s, goal):
        return "MISSED" if s == "-" or float(s) < goal else "met"

      target = f"a.tf/b >= {TARGET_AB}: {verdict(ab, TARGET_AB)}; a.eager/c >= {TARGET_AC:g}: {verdict(ac, TARGET_AC)}"
    table.append(
      [
        t,
        pname,
        str(conc),
        *map(cell, (a_e, a_et, a_t, b, a_es, a_ts, b_s, c_thr, c_aio)),
        ab,
        ac,
        target,
      ]
    )
  print()
  print(
    f"calls/s; every call carries one element, so slots/s = calls/s. Batch {BATCH}, flush timeout "
    f"{args.flush_timeout * 1e3:g} ms, {args.seconds:g} s window after {args.warmup:g} s warm-up"
    + (f", median of {args.repeat}" if args.repeat > 1 else "")
  )
  print(
    "(a) our server+client: eager = Python threads calling client.ident(x) with numpy outputs (as actors do; "
    "eager T = tf.Tensor outputs); tf.fn = threads running a tf.while_loop of client-op calls"
  )
  print(
    "(b) C++ echo_bench server+client on the same transport, no TF, no batching; (c) Python grpcio server "
    "batching in Python (thread pool | asyncio), Python grpcio client threads"
  )
  print(
    "S: the same over long-lived streams (Client(streams=True), echo_bench stream-client); a.tf/b, a.eager/c: unary"
  )
  print("a.eager/c uses the faster of the two (c) servers")
  if table:
    n = len(cols) - 1
    widths = [max(len(c), *(len(r[i]) for r in table)) for i, c in enumerate(cols)]
    print("  ".join(c.rjust(w) if i < n else c for i, (c, w) in enumerate(zip(cols, widths))))
    for r in table:
      print("  ".join(v.rjust(w) if i < n else v for i, (v, w) in enumerate(zip(r, widths))).rstrip())

  print_security(sec_rows)
  for (t, mode, conc), r in d_rows:
    if r.error:
      line, verdict = "ERROR", "MISSED"
    else:
      line = f"{num(r.slots_per_sec)} slots/s ({num(r.calls_per_sec)} calls/s x {r.rows_per_call})"
      verdict = "met" if r.slots_per_sec >= TARGET_D else "MISSED"
    print(
      f"(d) client-side batching, {t}, {conc} callers x {ROWS_PER_CALL_D} rows into batch {BIG_BATCH}, "
      f"{mode}: {line}   target >= {TARGET_D:,}: {verdict}"
    )
  print(
    f"(progress lines above: fill = mean batch fill on the server; server/client = CPU cores used by the "
    f"server / client process, of {os.cpu_count()})"
  )


def print_security(rows) -> None:
  """(e): our op over TCP, TLS and TLS + token, as ratios to plain TCP from the same run."""
  by = {key: res for key, res in rows}
  lines = []
  for (t, pname, conc), res in rows:
    base = by.get(("tcp", pname, conc))
    if t not in SECURE or base is None:
      continue
    cells = []
    for key, label in (("a_eager", "eager"), ("a_tf", "tf.fn")):
      r, b = res.get(key), base.get(key)
      if r is None or b is None:
        continue
      ratio = _ratio(r.calls_per_sec, b.calls_per_sec) if not (r.error or b.error) else "-"
      cells.append(f"{label} {cell(b)} -> {cell(r)} calls/s ({ratio}x)")
    lines.append(f"  {pname:5s} {conc:3d} callers, tcp -> {t:9s}: " + "; ".join(cells))
  if lines:
    print("(e) security cost, (a) over plain tcp -> the same server with TLS (and a token), ratio to tcp:")
    print("\n".join(lines))


def print_stream_targets(rows, d_rows) -> None:
  """Streams against unary (issue 26), one line per target: met or MISSED."""
  val = lambda r: r.calls_per_sec if r and not r.error else float("nan")  # noqa: E731
  lines = []
  for (t, pname, conc), res in rows:
    if (t, pname, conc) != ("unix", "16B", 64):
      continue
    c_best = max((v for v in (val(res.get("c_threads")), val(res.get("c_aio"))) if v == v), default=float("nan"))
    checks = [
      ("(a) tf.fn over streams / (b) unary ceiling", val(res.get("a_tf_s")), val(res.get("b")), TARGET_STREAM_TF_B),
      (
        "(a) eager over streams / (a) eager unary",
        val(res.get("a_eager_s")),
        val(res.get("a_eager")),
        TARGET_STREAM_EAGER,
      ),
      ("(a) eager over streams / (c)", val(res.get("a_eager_s")), c_best, TARGET_STREAM_EAGER_C),
      ("(b) streaming echo / (b) unary echo", val(res.get("b_s")), val(res.get("b")), 1.0),
    ]
    for label, a, b, goal in checks:
      ratio = a / b if a == a and b == b and b > 0 else float("nan")
      lines.append(f"  {label}: {ratio:.2f}  target >= {goal:g}: {'met' if ratio >= goal else 'MISSED'}")
  d = {(t, mode): r for (t, mode, _), r in d_rows}
  for t in sorted({t for t, _ in d}):
    for mode in ("tf.function", "eager"):
      unary, streams = d.get((t, mode)), d.get((t, f"{mode} streams"))
      if unary is None or streams is None or unary.error or streams.error:
        continue
      ratio = streams.slots_per_sec / unary.slots_per_sec if unary.slots_per_sec else float("nan")
      lines.append(
        f"  (d) {mode} over streams / unary, {t}: {ratio:.2f} ({num(streams.slots_per_sec)} slots/s)  "
        f"target >= {TARGET_STREAM_D:g}: {'met' if ratio >= TARGET_STREAM_D else 'MISSED'}"
      )
  if lines:
    print("streams against unary (issue 26; 64 callers, unix, 16 B; same run):")
    print("\n".join(lines))
