#!/usr/bin/env python3
"""End-to-end throughput of the SEED runtime on Pong, against the env-only ceiling.

Not a test. In one run it prints side by side, on ALE/Pong-v5
(configs/atari_vtrace.py), with the same number of actor processes and the same
env_batch_size in every row:

  (i)   the full runtime (`python -m seed.train`: launcher + learner + actors,
        central batched inference, V-trace training) with the linear policy
        (`--config.agent.torso=linear`: no hidden layer), so the model costs
        next to nothing and the row measures the framework: RPC, batching,
        the per-env store, unroll queue and training loop; actors call the
        learner on long-lived streams (the default);
  (i-u) the same with unary calls (SEED_RPC_STREAMS=0 in every process), to
        show what streams change;
  (ii)  the env-only ceiling: the same number of processes (multiprocessing,
        spawn), each stepping `envs.make_vector(config.env, env_batch_size,
        seed)` with `vec.action_space.sample()` actions. No RPC, no learner, no
        TensorFlow. This is what the CPU can do with the emulators alone;
  (iii) the full runtime with the IMPALA CNN (the config's default torso): the
        throughput a real Pong run gets on this machine.

and, unless --skip_cartpole, how long configs/cartpole_vtrace.py (its shipped
settings plus --config.stop_mean_return=475 and a frame cap) takes until the
mean return of the last 50 episodes first reaches 475.

How each number is measured
  * Frames are emulator frames: env steps x frame skip (4 on Atari, 1 on
    CartPole), as everywhere in the runtime.
  * (i), (iii): the run's learner writes <logdir>/metrics.jsonl every
    log_interval seconds with the frames trained on so far. Warm-up is
    discarded: lines up to the first one where frames grew over the last
    interval and reach 2 unrolls per env (actors that are still building
    their envs deliver a first batch, then stall), plus one more interval.
    From that baseline line the window runs to the first line at least
    --seconds later; frames/s = frames delta / time delta across it.
    The learner counts the frames it trained on; the unroll queue is bounded
    (full queue = actors wait), so in steady state this equals what the actors
    step. The run is then stopped with SIGTERM to the launcher PID started here
    (it stops learner and actors); after a timeout its process group is killed.
  * With --repeats N, (ii) and (i) alternate N times and each row reports its
    best window (max frames/s: noise only ever slows a run down).
  * (ii): all workers build their envs, run a warm-up, then the parent reads
    their shared step counters at the start and end of a window of the same
    length: frames/s = env steps x frame_skip / seconds, all workers together.
  * CartPole: from <logdir>/episodes.csv (one row per finished episode, in the
    order the learner saw them), the 50-episode rolling mean; the first row
    where it is >= 475 gives frames (its `frames` column: the learner's count
    when it logged the episode, so up to one log interval late) and seconds
    (its `time` minus the time this script started the process, so Python/TF
    start-up and graph tracing are included).

How to read it
  (i)/(ii) is the fraction of the emulators' speed the framework keeps; the
  target is >= 0.7. The learner (inference + training) shares the CPU with the
  actors, so on a machine with few cores the ratio also prices the learner's
  CPU use, not only the RPC overhead. (iii) is far lower on CPU because the
  IMPALA CNN's inference and training dominate. "cores ours/others" is the CPU
  the measured processes used during the window (cores, from /proc) and what
  the rest of the machine used meanwhile: others well above 0 means a noisy
  neighbour took CPU from the row (rerun and compare on a shared box). The
  "frames per CPU-second" line divides each row by the cores it used, which is
  less sensitive to neighbours but charges (i) for the learner's CPU.

Process layout (defaults): 4 actor processes x 32 envs on this 2-core box.
More actor processes than cores is SEED's layout: an actor waiting for its
inference reply leaves its core to another actor, so the emulators keep the
CPU busy; with one actor per core every reply's latency is idle CPU.
Inference batch: unless --inference_batch_size is given it is env_batch_size,
so each actor call is one batch and runs at once (no flush wait). Both
runtime rows set learner_intra_op_threads=1 (the learner shares the cores
with the actors). All other settings (unroll_length, batch_size, queue) are
the config's.

    .venv/bin/python scripts/bench/bench_e2e.py --quick          # smoke check, a few minutes
    .venv/bin/python scripts/bench/bench_e2e.py                  # 30 s windows + CartPole, ~5-10 min
    .venv/bin/python scripts/bench/bench_e2e.py --agents         # every agent config's frames/s + time to its bar
"""

from __future__ import annotations

import argparse
import importlib
import os
import pathlib
import shlex
import shutil
import signal
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = pathlib.Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
  sys.path.insert(0, str(REPO))

ATARI_CONFIG = "configs/atari_vtrace.py"
CARTPOLE_CONFIG = "configs/cartpole_vtrace.py"
TARGET_RATIO = 0.85  # (i)/(ii), issue 26 (was 0.7 with unary calls)

from bench_e2e_runs import (
  CARTPOLE_GOAL,
  RECENT,
  TrainRun,
  log,
  measure_env_only,
  measure_runtime,
  time_to_goal,
)

# ----------------------------------------------------------------------------- main


# Issue-4 agents: every shipped config's throughput, and time to each learning test's bar.
AGENT_CONFIGS = [
  "configs/cartpole_vtrace.py",
  "configs/atari_vtrace.py",
  "configs/cartpole_ppo.py",
  "configs/mujoco_ppo.py",
  "configs/cartpole_r2d2.py",
  "configs/atari_r2d2.py",
  "configs/pendulum_sac.py",
  "configs/mujoco_sac.py",
]
AGENT_GOALS = [
  ("configs/cartpole_vtrace.py", 400.0, 50),
  ("configs/cartpole_ppo.py", 400.0, 50),
  ("configs/cartpole_r2d2.py", 300.0, 50),
  ("configs/pendulum_sac.py", -400.0, 20),
]


def bench_agents(start, seconds: float, startup_timeout: float, timeout: float, log_interval: float) -> None:
  """Prints frames/s of every default config, then frames and seconds to each learning bar."""
  rows = []
  for config in AGENT_CONFIGS:
    if not (REPO / config).exists():
      rows.append((config, None, "config missing"))
      continue
    run = start(
      pathlib.Path(config).stem,
      [
        f"--config={config}",
        "--config.total_environment_frames=1000000000000",
        f"--config.log_interval={log_interval:g}",
        "--config.checkpoint_interval=1000000",
      ],
    )
    try:
      r = measure_runtime(run, seconds, startup_timeout)
      rows.append((config, r, f"cores {r['cpu']:.2f} / others {r['cpu_others']:.2f}"))
    except Exception as e:  # pylint: disable=broad-except
      rows.append((config, None, f"failed: {e}"))
    finally:
      run.stop()
  goals = []
  for config, goal, recent in AGENT_GOALS:
    if not (REPO / config).exists():
      continue
    run = start(
      pathlib.Path(config).stem + "-goal",
      [
        f"--config={config}",
        f"--config.stop_mean_return={goal:g}",
        "--config.total_environment_frames=20000000",
        f"--config.log_interval={log_interval:g}",
      ],
    )
    goals.append((config, goal, recent, time_to_goal(run, timeout, goal, recent)))
  print()
  print(f"{'default config':<32} {'frames/s':>10}  notes")
  for config, r, note in rows:
    fps = f"{r['fps']:,.0f}" if r else "-"
    print(f"{config:<32} {fps:>10}  {note}")
  print()
  print(f"{'learning bar':<44} {'frames':>10} {'seconds':>8}")
  for config, goal, recent, c in goals:
    label = f"{config} mean{recent} >= {goal:g}"
    if "frames" in c:
      print(f"{label:<44} {c['frames']:>10,} {c['seconds']:>8.1f}")
    else:
      print(f"{label:<44} {'not reached':>10} {c['total_seconds']:>8.1f}  ({c['final_frames']:,} frames)")


def _fmt_cmd(argv: list[str]) -> str:
  exe = argv[0]
  rest = " ".join(shlex.quote(a) for a in argv[1:])
  return f"TF_CPP_MIN_LOG_LEVEL=2 {shlex.quote(exe)} {rest}"


def main() -> int:
  parser = argparse.ArgumentParser(
    description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument("--seconds", type=float, default=30.0, help="measurement window per row (s)")
  parser.add_argument("--num_actors", type=int, default=4, help="actor processes (and env-only processes)")
  parser.add_argument("--env_batch_size", type=int, default=32, help="envs per actor / per env-only process")
  parser.add_argument(
    "--inference_batch_size", type=int, default=None, help="default env_batch_size (one actor call per batch)"
  )
  parser.add_argument(
    "--log_interval", type=float, default=None, help="learner metrics interval (s); default 5, 2 with --quick"
  )
  parser.add_argument("--skip_cartpole", action="store_true", help="skip the CartPole time-to-475 run")
  parser.add_argument("--cartpole_max_frames", type=int, default=3_000_000, help="CartPole frame cap")
  parser.add_argument(
    "--cartpole_timeout",
    type=float,
    default=None,
    help="wall-clock cap of the CartPole run (s); default 1200, 300 with --quick",
  )
  parser.add_argument(
    "--startup_timeout", type=float, default=300.0, help="seconds a run may take to reach its first trained frames"
  )
  parser.add_argument(
    "--repeats", type=int, default=1, help="alternate (ii) and (i) this many times and report the best of each"
  )
  parser.add_argument("--quick", action="store_true", help="short windows (smoke check)")
  parser.add_argument(
    "--agents",
    action="store_true",
    help="instead of the Pong rows: frames/s of every shipped config and time to each agent's learning-test bar",
  )
  parser.add_argument("--keep_logs", action="store_true", help="keep the runs' logdirs (path printed)")
  args = parser.parse_args()

  seconds = 8.0 if args.quick and args.seconds == parser.get_default("seconds") else args.seconds
  log_interval = args.log_interval or (2.0 if args.quick else 5.0)
  env_warmup = 2 * log_interval
  cartpole_timeout = args.cartpole_timeout or (300.0 if args.quick else 1200.0)
  n, b = args.num_actors, args.env_batch_size
  ibs = args.inference_batch_size or b
  if args.repeats < 1:
    parser.error("--repeats must be >= 1")
  if ibs < b:
    parser.error(f"--inference_batch_size ({ibs}) must be >= --env_batch_size ({b})")

  atari = importlib.import_module("configs.atari_vtrace").get_config()
  frame_skip = atari.env.atari.frame_skip
  unroll_frames = atari.unroll_length * frame_skip  # frames one env contributes per unroll
  common = [
    f"--config.num_actors={n}",
    f"--config.env_batch_size={b}",
    f"--config.inference_batch_size={ibs}",
    "--config.total_environment_frames=1000000000000",
    f"--config.log_interval={log_interval:g}",
    "--config.checkpoint_interval=1000000",
    "--config.learner_intra_op_threads=1",
  ]
  pong_args = {
    "linear": [f"--config={ATARI_CONFIG}", *common, "--config.agent.torso=linear"],
    "impala_cnn": [f"--config={ATARI_CONFIG}", *common],
  }
  cart_args = [
    f"--config={CARTPOLE_CONFIG}",
    f"--config.stop_mean_return={CARTPOLE_GOAL:g}",
    f"--config.total_environment_frames={args.cartpole_max_frames}",
    f"--config.log_interval={log_interval:g}",
  ]

  workdir = pathlib.Path(tempfile.mkdtemp(prefix="bench_e2e-"))
  runs: list[TrainRun] = []

  def on_sigterm(*_):
    raise KeyboardInterrupt

  signal.signal(signal.SIGTERM, on_sigterm)

  def start(name: str, config_args: list[str], env: dict | None = None) -> TrainRun:
    run = TrainRun(name, config_args, workdir, env)
    runs.append(run)
    log(f"{name}: started launcher pid {run.pgid}")
    return run

  header = [
    f"# scripts/bench/bench_e2e.py {' '.join(shlex.quote(a) for a in sys.argv[1:])}".rstrip(),
    f"# {atari.env.id} ({ATARI_CONFIG}): {n} actor processes x {b} envs, inference_batch_size {ibs}, "
    f"unroll_length {atari.unroll_length}, batch_size {atari.batch_size}, frame_skip {frame_skip}; "
    f"window {seconds:g}s, log_interval {log_interval:g}s, repeats {args.repeats}, {os.cpu_count()} CPUs",
    f"# commands (cwd {REPO}; <LOGDIR> = a fresh directory under {workdir}):",
    f"#  (i)   {_fmt_cmd([sys.executable, '-m', 'seed.train', *pong_args['linear'], '--logdir=<LOGDIR>'])}",
    "#  (i-u) the same as (i) with SEED_RPC_STREAMS=0 in its environment (unary calls)",
    f"#  (ii)  {n} spawned processes: envs.make_vector(get_config().env, {b}, seed) from {ATARI_CONFIG}, "
    f"vec.step(vec.action_space.sample()) in a loop; {env_warmup:g}s warm-up",
    f"#  (iii) {_fmt_cmd([sys.executable, '-m', 'seed.train', *pong_args['impala_cnn'], '--logdir=<LOGDIR>'])}",
  ]
  if not args.skip_cartpole:
    header.append(f"#  CartPole {_fmt_cmd([sys.executable, '-m', 'seed.train', *cart_args, '--logdir=<LOGDIR>'])}")
  header.append("# (i), (iii) stopped by SIGTERM to the launcher after the window.")
  print("\n".join(header), flush=True)

  results: dict[str, dict] = {}
  if args.agents:
    try:
      bench_agents(start, seconds, args.startup_timeout, cartpole_timeout, log_interval)
    finally:
      for run in runs:
        run.stop()
      shutil.rmtree(workdir, ignore_errors=True)
    return 0
  try:
    log(f"(ii) env-only ceiling: {n} processes x {b} envs")
    # (ii) and (i) alternate, so a noisy neighbour hits both alike; (iii) runs once.
    for rep in range(args.repeats):
      results.setdefault("env", []).append(
        measure_env_only(n, b, frame_skip, atari.seed, env_warmup, seconds, args.startup_timeout)
      )
      log(f"(ii) {results['env'][-1]['fps']:,.0f} frames/s")
      for key in ("linear", "linear_unary", "impala_cnn") if rep == args.repeats - 1 else ("linear", "linear_unary"):
        unary = key == "linear_unary"
        run = start(
          f"pong-{key}-{rep}", pong_args["linear" if unary else key], {"SEED_RPC_STREAMS": "0"} if unary else None
        )
        try:
          results.setdefault(key, []).append(
            measure_runtime(run, seconds, args.startup_timeout, warmup_frames=2 * n * b * unroll_frames)
          )
          log(f"{run.name}: {results[key][-1]['fps']:,.0f} frames/s")
        finally:
          status = run.stop()
          log(f"{run.name}: stopped (launcher exit status {status})")

    if not args.skip_cartpole:
      run = start("cartpole", cart_args)
      results["cartpole"] = time_to_goal(run, cartpole_timeout)
  except KeyboardInterrupt:
    log("interrupted; stopping every run started here")
    raise
  finally:
    for run in runs:
      run.stop()
    if args.keep_logs:
      log(f"logs kept in {workdir}")
    else:
      shutil.rmtree(workdir, ignore_errors=True)

  best = lambda key: max(results[key], key=lambda r: r["fps"])
  env, lin, lin_u, cnn = best("env"), best("linear"), best("linear_unary"), best("impala_cnn")
  ratio = lin["fps"] / env["fps"]
  rows = [
    ("(i)   full runtime, linear policy", lin, f"batch fill {lin['batch_fill']:.2f}, queue {lin['queue']:.1f}"),
    ("(i-u) the same, unary calls", lin_u, f"batch fill {lin_u['batch_fill']:.2f}, queue {lin_u['queue']:.1f}"),
    ("(ii)  env-only ceiling, random actions", env, "no RPC, no learner"),
    ("(iii) full runtime, IMPALA CNN", cnn, f"batch fill {cnn['batch_fill']:.2f}, queue {cnn['queue']:.1f}"),
  ]
  print()
  print(f"{'row':<40} {'frames/s':>10} {'env steps/s':>12} {'window':>8} {'cores ours/others':>18}  notes")
  for label, r, note in rows:
    cores = f"{r['cpu']:.2f} / {r['cpu_others']:.2f}"
    print(f"{label:<40} {r['fps']:>10,.0f} {r['fps'] / frame_skip:>12,.0f} {r['seconds']:>7.1f}s {cores:>18}  {note}")
  if args.repeats > 1:
    for key, label in (("linear", "(i)"), ("linear_unary", "(i-u)"), ("env", "(ii)")):
      print(f"  {label} best of {args.repeats}: " + ", ".join(f"{r['fps']:,.0f}" for r in results[key]))
  noisy = [label.split()[0] for label, r, _ in rows if r["cpu_others"] > 0.5]
  if noisy:
    print(
      f"  WARNING: other processes used > 0.5 core during {', '.join(noisy)}: the machine was shared, "
      f"rows are not comparable; rerun on a quiet machine (or --repeats 3)"
    )
  print(f"(i)/(ii) = {ratio:.3f}   target >= {TARGET_RATIO}   {'met' if ratio >= TARGET_RATIO else 'MISSED'}")
  print(f"  (i-u)/(ii) = {lin_u['fps'] / env['fps']:.3f}; streams / unary (i)/(i-u) = {lin['fps'] / lin_u['fps']:.3f}")
  per_core = lambda r: r["fps"] / r["cpu"] if r["cpu"] > 0 else float("nan")
  print(
    f"  (context, not the target) frames per CPU-second of our processes: (i) {per_core(lin):,.0f}, "
    f"(ii) {per_core(env):,.0f}, ratio {per_core(lin) / per_core(env):.3f}"
  )
  print(f"(iii) IMPALA CNN: {cnn['fps']:,.0f} frames/s ({cnn['fps'] / lin['fps']:.2f} of (i))")
  if "cartpole" in results:
    c = results["cartpole"]
    if "frames" in c:
      print(
        f"CartPole-v1: mean return of last {RECENT} episodes >= {CARTPOLE_GOAL:g} first at "
        f"{c['frames']:,} frames, {c['seconds']:.1f} s wall-clock from process start "
        f"(episode {c['episode']:,}; whole run: {c['cpu']:.2f} cores ours, {c['cpu_others']:.2f} others)"
      )
    else:
      why = f"timed out after {cartpole_timeout:g}s" if c["timed_out"] else "frame cap reached"
      print(
        f"CartPole-v1: mean return of last {RECENT} episodes never reached {CARTPOLE_GOAL:g} "
        f"({why}; {c['final_frames']:,} frames, {c['episodes']:,} episodes, {c['total_seconds']:.1f} s)"
      )
  return 0


if __name__ == "__main__":
  sys.exit(main())
