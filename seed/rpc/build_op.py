"""Builds the tensor-RPC op library against the installed TensorFlow.

The op links Debian's static (secure) gRPC archives and static OpenSSL with
every one of their symbols hidden, so it cannot bind to TensorFlow's own
(exported) gRPC and BoringSSL copies: linking Debian's shared libgrpc++ builds
and loads, then crashes on the first RPC. Debian's libre2.a is not
position-independent (and the secure gRPC needs re2), so re2 is rebuilt with
-fPIC from Debian's own source package, once, into the cache.
Builds are cached under ``$SEED_OP_CACHE`` (default ``~/.cache/seed/ops``), keyed
on the sources, the TensorFlow version and these flags, and guarded by a file
lock so many processes importing at once build only once.

``python -m seed.rpc.build_op`` (scripts/setup.sh) builds (or finds) the library and prints its
path. When nothing changed since it last did, it answers from a stamp without importing TensorFlow
(~0.1 s instead of ~7 s): see ``checked_op_library_path``. ``--client`` does the same for the
TF-free client library (``client_library_path``), whose check never needs TensorFlow.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import importlib.util
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile


def _source_dir() -> pathlib.Path:
  """The op's C++ sources: grpc/ in a checkout, or the copy a wheel carries in seed/rpc/csrc/."""
  here = pathlib.Path(__file__).resolve().parent
  for candidate in (here.parent.parent / "grpc", here / "csrc"):
    if (candidate / "transport.h").exists():
      return candidate
  raise BuildError(f"the op's C++ sources are neither in {here.parent.parent / 'grpc'} nor in {here / 'csrc'}")


# The stream framing and the in-flight table: plain C++ (no gRPC, no TF headers).
_STREAM_SOURCES = ["stream_frame.cc", "stream_calls.cc"]
_STREAM_HEADERS = ["stream_frame.h", "stream_calls.h"]
GRPC_SOURCES = [
  "transport.cc",
  "transport_security.cc",
  "transport_server.cc",
  "transport_client.cc",
  "transport_streams.cc",
  "stream_session.cc",
  "stream_pool.cc",
  "c_api.cc",
  *_STREAM_SOURCES,
]  # compiled without TF headers
# What GRPC_SOURCES include besides gRPC's own headers.
_TRANSPORT_HEADERS = ["transport.h", "transport_grpc.h", "transport_streams.h", *_STREAM_HEADERS]
TF_SOURCES = [  # without gRPC headers
  "wire.cc",
  "validate.cc",
  "batcher.cc",
  "run_cancellation.cc",
  "function_run.cc",
  "server.cc",
  "server_kernels.cc",
  "client_call.cc",
  "client_ops.cc",
  "remote_predict.cc",
  "predict_proto.cc",
  "predict_service.cc",
  "serving_server.cc",
  "serving_kernels.cc",
]
HEADERS = [
  *_TRANSPORT_HEADERS,
  "wire.h",
  "validate.h",
  "batcher.h",
  "run_cancellation.h",
  "function_run.h",
  "registry.h",
  "op_attrs.h",
  "server.h",
  "client_call.h",
  "predict_proto.h",
  "predict_service.h",
  "serving_server.h",
]
GRPC_ARCHIVES = [
  "libgrpc++.a",
  "libgrpc.a",
  "libgpr.a",
  "libupb.a",
  "libaddress_sorting.a",
  "libcares.a",
  "libz.a",
  "libssl.a",
  "libcrypto.a",
]
APT_HINT = (
  "apt-get install -y libgrpc++-dev libssl-dev libre2-dev zlib1g-dev pkg-config g++ make dpkg-dev perl "
  "(or run scripts/setup.sh)"
)
_BUILD_VERSION = "6"  # bump when the flags below change


class BuildError(RuntimeError):
  """The op could not be built; the message says what to install or fix."""


SOURCE_DIR = _source_dir()


def _run(cmd: list[str]) -> str:
  proc = subprocess.run(cmd, capture_output=True, text=True)
  if proc.returncode != 0:
    raise BuildError(f"command failed: {' '.join(cmd)}\n{proc.stderr[-4000:]}")
  return proc.stdout.strip()


def _lib_dir() -> pathlib.Path:
  if shutil.which("g++") is None:
    raise BuildError(f"g++ not found: {APT_HINT}")
  triple = _run(["g++", "-print-multiarch"]) or "x86_64-linux-gnu"
  return pathlib.Path("/usr/lib") / triple


def _grpc_link_flags() -> tuple[list[str], list[str]]:
  """Static gRPC, OpenSSL and (PIC) re2 archives, and the shared abseil libraries they need."""
  lib_dir = _lib_dir()
  missing = [a for a in GRPC_ARCHIVES if not (lib_dir / a).exists()]
  if missing:
    raise BuildError(f"missing static libraries {missing} in {lib_dir}: {APT_HINT}")
  if shutil.which("pkg-config") is None:
    raise BuildError(f"pkg-config not found: {APT_HINT}")
  try:
    libs = _pkg_config_libs("grpc++", lib_dir / "pkgconfig")
  except BuildError as e:
    raise BuildError(f"pkg-config does not know grpc++: {APT_HINT}") from e
  absl = sorted({f for f in libs if f.startswith("-labsl_")})
  return [str(lib_dir / a) for a in GRPC_ARCHIVES] + [str(re2_pic_archive())], absl


def _pkg_config_libs(package: str, pc_dir: pathlib.Path) -> list[str]:
  """`pkg-config --libs package`, cached while the .pc files stay as they are.

  pkg-config walks grpc++'s whole abseil graph (~1.2 s here), and every process that
  loads the op asks: the learner and each actor at start-up. The cache is keyed by the
  mtimes of the pkgconfig directory and the package's file, which an apt upgrade changes.
  """
  pc_file = pc_dir / f"{package}.pc"
  if not pc_file.exists():
    return _run(["pkg-config", "--libs", package]).split()  # somewhere else on the path: ask each time
  cache = cache_root() / "pkg-config" / f"{_digest(package, _stamps([str(pc_dir), str(pc_file)]))}.txt"
  if cache.exists():
    return cache.read_text().split()
  libs = _run(["pkg-config", "--libs", package])
  cache.parent.mkdir(parents=True, exist_ok=True)
  tmp = cache.with_suffix(f".{os.getpid()}.tmp")
  tmp.write_text(libs)
  os.replace(tmp, cache)  # atomic: a concurrent reader sees all of it or nothing
  return libs.split()


def _apt_sources(tmp: pathlib.Path) -> list[str]:
  """apt-get options for a private source list: the system's mirrors, with deb-src added."""
  parts, lists = tmp / "sources.list.d", tmp / "lists"
  (lists / "partial").mkdir(parents=True)
  parts.mkdir()
  for f in pathlib.Path("/etc/apt/sources.list.d").glob("*.sources"):
    text = f.read_text().replace("Types: deb\n", "Types: deb deb-src\n")
    (parts / f.name).write_text(text)
  legacy = pathlib.Path("/etc/apt/sources.list")
  if legacy.exists():
    lines = [ln for ln in legacy.read_text().splitlines() if ln.startswith("deb ")]
    (parts / "legacy.list").write_text("\n".join(lines + ["deb-src" + ln[3:] for ln in lines]) + "\n")
  return [
    "-o",
    "Dir::Etc::SourceList=/dev/null",
    "-o",
    f"Dir::Etc::SourceParts={parts}",
    "-o",
    f"Dir::State::Lists={lists}",
    "-o",
    "APT::Sandbox::User=root",  # files land in our private dir, not apt's cache
  ]


def re2_pic_archive() -> pathlib.Path:
  """libre2.a rebuilt with -fPIC from the Debian source of the installed libre2-dev (cached)."""
  for tool in ("apt-get", "dpkg-source", "make", "perl", "python3"):
    if shutil.which(tool) is None:
      raise BuildError(f"{tool} not found (needed to rebuild re2 with -fPIC): {APT_HINT}")
  try:
    version = _run(["dpkg-query", "-W", "-f=${source:Version}", "libre2-dev"])
  except BuildError as e:
    raise BuildError(f"libre2-dev is not installed: {APT_HINT}") from e

  def build(tmp: pathlib.Path) -> pathlib.Path:
    apt = ["apt-get", "-q", *_apt_sources(tmp)]
    _run([*apt, "update"])
    subprocess.run([*apt, "source", "--download-only", f"re2={version}"], cwd=tmp, check=True, capture_output=True)
    subprocess.run([*apt, "download", "unicode-data"], cwd=tmp, check=True, capture_output=True)
    dsc = next(tmp.glob("re2_*.dsc"))
    _run(["dpkg-source", "-x", str(dsc), str(tmp / "src")])
    _run(["dpkg-deb", "-x", str(next(tmp.glob("unicode-data_*.deb"))), str(tmp / "unicode")])
    # Debian's source drops the generated Unicode tables; they are regenerated from unicode-data.
    unicode_py = tmp / "src" / "re2" / "unicode.py"
    unicode_dir = tmp / "unicode" / "usr" / "share" / "unicode"
    text = unicode_py.read_text().replace('"/usr/share/unicode"', repr(str(unicode_dir)))
    unicode_py.write_text(text)
    jobs = str(max(1, os.cpu_count() or 1))
    _run(["make", "-C", str(tmp / "src"), "-j", jobs, "obj/libre2.a", "REBUILD_TABLES=1", "CXXFLAGS=-O2 -fPIC"])
    return tmp / "src" / "obj" / "libre2.a"

  return _locked_build("libre2.a", _digest("re2-pic", version), build)


def _tf_flags() -> tuple[list[str], list[str], str]:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  return tf.sysconfig.get_compile_flags(), tf.sysconfig.get_link_flags(), tf.__version__


def _stamps(paths: list[str]) -> str:
  """Size and mtime of each archive: an apt upgrade (e.g. an OpenSSL security fix) means a new op."""
  return " ".join(f"{p}:{os.stat(p).st_size}:{os.stat(p).st_mtime_ns}" for p in paths)


def _digest(*parts: str | bytes) -> str:
  h = hashlib.sha256()
  for p in parts:
    h.update(p.encode() if isinstance(p, str) else p)
    h.update(b"\0")
  return h.hexdigest()[:16]


def cache_root() -> pathlib.Path:
  return pathlib.Path(os.environ.get("SEED_OP_CACHE", pathlib.Path.home() / ".cache" / "seed" / "ops"))


def _compile_all(jobs: list[list[str]]) -> None:
  """Runs compiler commands in parallel; raises with the first failure."""
  procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for cmd in jobs]
  errors = []
  for cmd, p in zip(jobs, procs):
    _, err = p.communicate()
    if p.returncode != 0:
      errors.append(f"{' '.join(cmd[-3:])}:\n{err[-6000:]}")
  if errors:
    raise BuildError("compiling the gRPC op failed:\n" + "\n".join(errors))


def _grpc_object_cmd(src: pathlib.Path, out: pathlib.Path) -> list[str]:
  return [
    "g++",
    "-std=c++17",
    "-O2",
    "-fPIC",
    "-fvisibility=hidden",
    "-fvisibility-inlines-hidden",
    "-c",
    str(src),
    "-o",
    str(out),
  ]


def _tf_object_cmd(src: pathlib.Path, out: pathlib.Path, cflags: list[str]) -> list[str]:
  return [
    "g++",
    "-std=c++17",
    "-O2",
    "-fPIC",
    *cflags,
    f"-I{SOURCE_DIR}",
    "-Wno-deprecated-declarations",
    "-Wno-interference-size",
    "-c",
    str(src),
    "-o",
    str(out),
  ]


def _lib_dirs(lflags: list[str]) -> list[str]:
  """The library directories of TensorFlow's link flags (its own directory)."""
  return [f[2:] for f in lflags if f.startswith("-L")]


def _rpaths(lflags: list[str]) -> list[str]:
  """Finds TensorFlow's libraries without LD_LIBRARY_PATH."""
  return [f"-Wl,-rpath,{d}" for d in _lib_dirs(lflags)]


def _flags_key(cflags: list[str], lflags: list[str]) -> str:
  """The op's flags as part of its cache key, with TensorFlow's directory left out.

  Another checkout's venv with the same TensorFlow then finds the op already built (CI's fresh clone,
  a second clone): the op needs TensorFlow's libraries only by soname, and they are loaded before it.
  Executables (the batcher test, fuzz targets) keep the full flags: their rpath names the directory.
  """
  key = " ".join(cflags + lflags)
  for tf_dir in _lib_dirs(lflags):
    key = key.replace(tf_dir, "<tensorflow>")
  return key


def _locked_build(name: str, key: str, build) -> pathlib.Path:
  """Returns cache/<key>/<name>, calling build(tmpdir) -> path once if absent."""
  target_dir = cache_root() / key
  target = target_dir / name
  if target.exists():
    return target
  target_dir.mkdir(parents=True, exist_ok=True)
  with open(target_dir / ".lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if target.exists():
      return target
    with tempfile.TemporaryDirectory(dir=target_dir) as tmp:
      built = build(pathlib.Path(tmp))
      os.replace(built, target)  # atomic: readers never see a partial file
  return target


def op_library_path() -> pathlib.Path:
  """Builds the op library if needed and returns its path."""
  cflags, lflags, tf_version = _tf_flags()
  archives, absl = _grpc_link_flags()
  sources = GRPC_SOURCES + TF_SOURCES + HEADERS
  key = _digest(
    _BUILD_VERSION,
    tf_version,
    _flags_key(cflags, lflags),
    " ".join(archives + absl),
    _stamps(archives),
    *[(SOURCE_DIR / s).read_bytes() for s in sources],
  )

  def build(tmp: pathlib.Path) -> pathlib.Path:
    jobs, objects = [], []
    for src in GRPC_SOURCES:
      obj = tmp / (src + ".o")
      jobs.append(_grpc_object_cmd(SOURCE_DIR / src, obj))
      objects.append(str(obj))
    for src in TF_SOURCES:
      obj = tmp / (src + ".o")
      jobs.append(_tf_object_cmd(SOURCE_DIR / src, obj, cflags))
      objects.append(str(obj))
    _compile_all(jobs)
    out = tmp / "seed_rpc.so"
    _run(
      [
        "g++",
        "-shared",
        "-o",
        str(out),
        *objects,
        "-Wl,--exclude-libs,ALL",
        "-Wl,-Bsymbolic",
        "-Wl,-z,defs",
        "-Wl,--start-group",
        *archives,
        "-Wl,--end-group",
        *absl,
        *lflags,
        "-l:libtensorflow_cc.so.2",  # grappler, for bound functions
        *_rpaths(lflags),
        "-lpthread",
        "-ldl",
        "-lrt",
      ]
    )
    return out

  return _locked_build("seed_rpc.so", key, build)


def _transport_key(name: str, sources: list[str]) -> str:
  """Cache key of a TF-free build from the transport's sources: no TensorFlow import, cheap to check."""
  archives, absl = _grpc_link_flags()
  return _digest(
    _BUILD_VERSION,
    name,
    " ".join(archives + absl),
    _stamps(archives),
    *[(SOURCE_DIR / s).read_bytes() for s in sources + _TRANSPORT_HEADERS],
  )


def _transport_build(name: str, sources: list[str], shared: bool) -> pathlib.Path:
  """Compiles the gRPC-side `sources` (no TensorFlow) and links them with static gRPC: cached by name and sources."""

  def build(tmp: pathlib.Path) -> pathlib.Path:
    archives, absl = _grpc_link_flags()
    objs = [tmp / (src + ".o") for src in sources]
    _compile_all([_grpc_object_cmd(SOURCE_DIR / src, obj) for src, obj in zip(sources, objs)])
    out = tmp / name
    # A shared library exports only the C API (SEED_EXPORT), its own symbols bound inside it.
    hide = ["-shared", "-Wl,--exclude-libs,ALL", "-Wl,-Bsymbolic", "-Wl,-z,defs"] if shared else []
    link = ["-Wl,--start-group", *archives, "-Wl,--end-group", *absl, "-lpthread", "-ldl", "-lrt"]
    _run(["g++", "-o", str(out), *map(str, objs), *hide, *link])
    return out

  return _locked_build(name, _transport_key(name, sources), build)


def client_library_path() -> pathlib.Path:
  """Builds (once, cached) the transport as a shared library without TensorFlow and returns its path.

  It exports the C API of grpc/c_api.cc (channels with TLS and a token, unary and stream calls,
  deadlines, cancellation): what `seed.rpc.client` loads with ctypes, so an actor needs no TensorFlow.
  Symbols other than the C API stay hidden, so a process may also load the op library.
  """
  return _transport_build("seed_rpc_client.so", GRPC_SOURCES, shared=True)


def echo_bench_path() -> pathlib.Path:
  """Builds the TF-free C++ echo server/client used as the benchmark ceiling."""
  return _transport_build("echo_bench", [*GRPC_SOURCES, "echo_bench.cc"], shared=False)


def batcher_test_path() -> pathlib.Path:
  """Builds the C++ unit test of the batcher (TensorFlow's framework library, no gRPC)."""
  cflags, lflags, tf_version = _tf_flags()
  sources = ["batcher.cc", "wire.cc", "batcher_test.cc"]
  headers = ["batcher.h", "wire.h", "transport.h", "cc_test.h"]
  key = _digest(
    _BUILD_VERSION,
    "batcher_test",
    tf_version,
    " ".join(cflags + lflags),
    *[(SOURCE_DIR / s).read_bytes() for s in sources + headers],
  )

  def build(tmp: pathlib.Path) -> pathlib.Path:
    objs = [tmp / (src + ".o") for src in sources]
    _compile_all([_tf_object_cmd(SOURCE_DIR / src, obj, cflags) for src, obj in zip(sources, objs)])
    out = tmp / "batcher_test"
    _run(["g++", "-o", str(out), *map(str, objs), *lflags, *_rpaths(lflags), "-lpthread"])
    return out

  return _locked_build("batcher_test", key, build)


def _tf_fuzz_target(name: str, sources: list[str], headers: list[str]) -> pathlib.Path:
  """Builds a libFuzzer target over TF-side sources (clang, ASan + UBSan; cached)."""
  if shutil.which("clang++") is None:
    raise BuildError("clang++ not found (the fuzz targets need clang's libFuzzer): apt-get install -y clang")
  cflags, lflags, tf_version = _tf_flags()
  sanitize = "-fsanitize=fuzzer,address,undefined"
  key = _digest(
    _BUILD_VERSION,
    name,
    tf_version,
    " ".join(cflags + lflags),
    _run(["clang++", "--version"]),
    *[(SOURCE_DIR / s).read_bytes() for s in sources + headers],
  )

  def build(tmp: pathlib.Path) -> pathlib.Path:
    objs = [tmp / (src + ".o") for src in sources]
    compile_cmds = []
    for src, obj in zip(sources, objs):
      cmd = _tf_object_cmd(SOURCE_DIR / src, obj, cflags)
      cmd[0] = "clang++"
      # -fsanitize=fuzzer instruments for coverage; the fuzzer's main() is linked once, below.
      cmd[2:3] = ["-O1", "-g", sanitize.replace("fuzzer,", "fuzzer-no-link,"), "-fno-sanitize-recover=undefined"]
      compile_cmds.append([c for c in cmd if c != "-Wno-interference-size"])  # a g++-only warning
    _compile_all(compile_cmds)
    out = tmp / name
    _run(["clang++", sanitize, "-o", str(out), *map(str, objs), *lflags, *_rpaths(lflags), "-lpthread"])
    return out

  return _locked_build(name, key, build)


def fuzz_target_path() -> pathlib.Path:
  """The libFuzzer target of the wire parser and call validation."""
  return _tf_fuzz_target("fuzz_wire", ["wire.cc", "validate.cc", "fuzz_wire.cc"], ["wire.h", "validate.h"])


def fuzz_predict_path() -> pathlib.Path:
  """The libFuzzer target of the PredictRequest / PredictResponse readers and writer."""
  return _tf_fuzz_target("fuzz_predict", ["predict_proto.cc", "fuzz_predict.cc"], ["predict_proto.h"])


def _plain_sources_key(name: str, compiler: str, sources: list[str], headers: list[str]) -> str:
  return _digest(
    _BUILD_VERSION, name, _run([compiler, "--version"]), *[(SOURCE_DIR / s).read_bytes() for s in sources + headers]
  )


def stream_test_path() -> pathlib.Path:
  """Builds the C++ unit test of the stream framing and in-flight table (plain C++: no gRPC, no TensorFlow)."""
  sources = [*_STREAM_SOURCES, "stream_test.cc"]
  key = _plain_sources_key("stream_test", "g++", sources, [*_STREAM_HEADERS, "cc_test.h"])

  def build(tmp: pathlib.Path) -> pathlib.Path:
    out = tmp / "stream_test"
    _run(
      ["g++", "-std=c++17", "-O2", "-g", "-Wall", "-o", str(out), *(str(SOURCE_DIR / s) for s in sources), "-lpthread"]
    )
    return out

  return _locked_build("stream_test", key, build)


def fuzz_stream_path() -> pathlib.Path:
  """Builds the libFuzzer target of the stream framing (clang, ASan + UBSan; cached)."""
  if shutil.which("clang++") is None:
    raise BuildError("clang++ not found (the fuzz targets need clang's libFuzzer): apt-get install -y clang")
  sources = ["stream_frame.cc", "fuzz_stream.cc"]
  key = _plain_sources_key("fuzz_stream", "clang++", sources, ["stream_frame.h"])

  def build(tmp: pathlib.Path) -> pathlib.Path:
    out = tmp / "fuzz_stream"
    sanitize = "-fsanitize=fuzzer,address,undefined"
    sources_ = (str(SOURCE_DIR / s) for s in sources)
    _run(["clang++", "-std=c++17", "-O1", "-g", sanitize, "-fno-sanitize-recover=undefined", "-o", str(out), *sources_])
    return out

  return _locked_build("fuzz_stream", key, build)


# Distributions that install the `tensorflow` package (the TF version is read from their metadata).
_TF_DISTRIBUTIONS = (
  "tensorflow",
  "tensorflow-cpu",
  "tensorflow-gpu",
  "tensorflow-intel",
  "intel-tensorflow",
  "tensorflow-aarch64",
  "tensorflow-macos",
  "tf-nightly",
  "tf-nightly-cpu",
)


def _tf_install_stamp() -> str | None:
  """TensorFlow's install as the op build sees it, read without importing TensorFlow.

  Its directory (tf.sysconfig's -I/-L flags point into it), the version from its package
  metadata, and the size and mtime of its __init__.py and C++ libraries (a reinstall, even of
  the same version). None when it cannot be told this way (the full check then imports TF).
  """
  spec = importlib.util.find_spec("tensorflow")  # a top-level package: found, not imported
  if spec is None or not spec.submodule_search_locations:
    return None
  tf_dir = pathlib.Path(next(iter(spec.submodule_search_locations))).resolve()
  for name in _TF_DISTRIBUTIONS:
    try:
      dist = importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
      continue
    if pathlib.Path(dist.locate_file("tensorflow")).resolve() == tf_dir:
      files = [tf_dir / "__init__.py", *sorted(tf_dir.glob("libtensorflow*.so*"))]
      return f"{tf_dir} {name}=={dist.version} {_stamps([str(f) for f in files])}"
  return None


def _op_stamp_key() -> str | None:
  """Everything op_library_path's cache key is made of, gathered without importing TensorFlow.

  The op's sources, TensorFlow's install (its version and flags follow from it), the gRPC,
  OpenSSL and re2 archives with their stamps, and this file itself (the build recipe: flags,
  commands, _BUILD_VERSION; any edit sends the next check down the full path once). None when
  any of it cannot be read (the full path then says what is wrong).
  """
  try:
    tf_install = _tf_install_stamp()
    if tf_install is None:
      return None
    archives, absl = _grpc_link_flags()
    sources = GRPC_SOURCES + TF_SOURCES + HEADERS
    return _digest(
      "op-stamp",
      pathlib.Path(__file__).read_bytes(),
      tf_install,
      " ".join(archives + absl),
      _stamps(archives),
      *[(SOURCE_DIR / s).read_bytes() for s in sources],
    )
  except (BuildError, OSError):
    return None


def _stamp_dir() -> pathlib.Path:
  return cache_root() / "stamps"


def stamped_op_library_path() -> pathlib.Path | None:
  """The library a full check recorded for exactly the current inputs, if it is still there; no TensorFlow import."""
  key = _op_stamp_key()
  if key is None:
    return None
  try:
    library = pathlib.Path((_stamp_dir() / f"op-{key}").read_text())
  except OSError:
    return None
  return library if library.is_file() else None


def checked_op_library_path() -> pathlib.Path:
  """op_library_path(), answered from a stamp when nothing it depends on changed since the last full check.

  The stamp is written only when the inputs read the same before and after the full check, so
  an edit made during a build never gets stamped with the library built from the old sources.
  """
  library = stamped_op_library_path()
  if library is not None:
    return library
  before = _op_stamp_key()
  library = op_library_path()
  if before is not None and _op_stamp_key() == before:
    stamp = _stamp_dir() / f"op-{before}"
    stamp.parent.mkdir(parents=True, exist_ok=True)
    tmp = stamp.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(str(library))
    os.replace(tmp, stamp)  # atomic: a concurrent check reads all of it or nothing
  return library


def main() -> None:
  try:
    print(client_library_path() if sys.argv[1:] == ["--client"] else checked_op_library_path())
  except BuildError as e:
    sys.exit(f"error: {e}")


if __name__ == "__main__":
  main()
