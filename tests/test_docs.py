"""The user docs (README.md, docs/*.md) name only things that exist.

Checked in every doc: relative markdown links and images (and their #anchors, against the target's
headings), `configs/<name>.py` files, `scripts/...` paths, and the project's modules run as
`python -m <module>`. Plain text parsing: no TensorFlow, well under a second.
"""

from __future__ import annotations

import pathlib
import re

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# Only modules of this project are checked; pip, venv, pytest, http.server and the like are not.
OWN_PACKAGES = {"seed", "agents", "envs", "configs", "gcp", "scripts", "tests"}

_FENCE = re.compile(r"^\s*(```|~~~)")
# [text](target) and ![alt](target); the target stops at whitespace or ")"; an optional "title".
_LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_CONFIG = re.compile(r"(?<![\w/.-])configs/([A-Za-z0-9_]+\.py)\b")
# scripts/x or ./scripts/x, not some/other/scripts/x.
_SCRIPT = re.compile(r"(?:(?<=\./)|(?<![\w/.-]))(scripts/[A-Za-z0-9_./-]*)")
_MODULE = re.compile(r"python3?\s+-m\s+([A-Za-z_][\w.]*)")


def _rel(doc: pathlib.Path) -> str:
  return str(doc.relative_to(REPO))


def _heading_anchors(path: pathlib.Path) -> set[str]:
  """GitHub's anchors for a markdown file's headings (outside code fences)."""
  anchors: set[str] = set()
  counts: dict[str, int] = {}
  in_fence = False
  for line in path.read_text(encoding="utf-8").splitlines():
    if _FENCE.match(line):
      in_fence = not in_fence
      continue
    m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
    if in_fence or not m:
      continue
    slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
    n = counts.get(slug, 0)
    counts[slug] = n + 1
    anchors.add(slug if n == 0 else f"{slug}-{n}")
  return anchors


def _links(text: str) -> list[str]:
  """Link targets outside code fences and inline code."""
  targets = []
  in_fence = False
  for line in text.splitlines():
    if _FENCE.match(line):
      in_fence = not in_fence
      continue
    if in_fence:
      continue
    targets += _LINK.findall(re.sub(r"`[^`]*`", "", line))
  return targets


def _script_exists(path: str) -> bool:
  """A scripts/ path names a file with an extension, or a folder; prose may add a trailing dot."""
  path = path.rstrip(".,;:")
  if not path or path == "scripts":
    return True
  target = REPO / path
  if path.endswith("/"):
    return target.is_dir()
  if pathlib.PurePosixPath(path).suffix in (".py", ".sh"):
    return target.is_file()
  # No known extension: a folder (scripts/bench), or a file named without its extension.
  return target.is_dir() or target.is_file()


def _module_exists(module: str) -> bool:
  base = REPO.joinpath(*module.split("."))
  return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file() or (base / "__main__.py").is_file()


def test_docs_found():
  assert (REPO / "README.md").is_file()
  assert len(DOCS) > 1, "no docs/*.md found"


@pytest.mark.parametrize("doc", DOCS, ids=_rel)
def test_links_resolve(doc):
  problems = []
  for target in _links(doc.read_text(encoding="utf-8")):
    if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("//"):
      continue  # http:, https:, mailto: ...
    path, _, anchor = target.partition("#")
    resolved = (doc.parent / path).resolve() if path else doc
    if not resolved.exists():
      shown = resolved.relative_to(REPO) if resolved.is_relative_to(REPO) else resolved
      problems.append(f"{target}: no such file {shown}")
      continue
    if anchor and resolved.suffix == ".md" and anchor not in _heading_anchors(resolved):
      problems.append(f"{target}: no heading with anchor #{anchor} in {resolved.relative_to(REPO)}")
  assert not problems, f"{_rel(doc)} has broken links:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("doc", DOCS, ids=_rel)
def test_configs_exist(doc):
  names = set(_CONFIG.findall(doc.read_text(encoding="utf-8")))
  missing = sorted(n for n in names if not (REPO / "configs" / n).is_file())
  assert not missing, f"{_rel(doc)} names configs that do not exist: " + ", ".join(f"configs/{n}" for n in missing)


@pytest.mark.parametrize("doc", DOCS, ids=_rel)
def test_scripts_exist(doc):
  paths = set(_SCRIPT.findall(doc.read_text(encoding="utf-8")))
  missing = sorted(p for p in paths if not _script_exists(p))
  assert not missing, f"{_rel(doc)} names scripts that do not exist: " + ", ".join(missing)


@pytest.mark.parametrize("doc", DOCS, ids=_rel)
def test_modules_exist(doc):
  modules = {m.rstrip(".") for m in _MODULE.findall(doc.read_text(encoding="utf-8"))}
  own = {m for m in modules if m.split(".")[0] in OWN_PACKAGES}
  missing = sorted(m for m in own if not _module_exists(m))
  assert not missing, f"{_rel(doc)} runs modules that do not exist: " + ", ".join(f"python -m {m}" for m in missing)


def test_checks_catch_missing_targets(tmp_path):
  """The helpers report what is missing (guards against a check that can never fail)."""
  assert not _module_exists("seed.no_such_module")
  assert _module_exists("seed.train") and _module_exists("seed.serving") and _module_exists("gcp.entrypoint")
  assert not _script_exists("scripts/no_such_script.py")
  assert _script_exists("scripts/run.sh") and _script_exists("scripts/setup.sh.")
  assert _SCRIPT.findall("./scripts/run.sh, scripts/bench/ and build/scripts/x.py") == [
    "scripts/run.sh",
    "scripts/bench/",
  ]
  assert _links("see [x](docs/a.md#b) and ![img](docs/c.png)\n```\n[y](not/a/link.md)\n```\n`[z](code.md)`") == [
    "docs/a.md#b",
    "docs/c.png",
  ]
  doc = tmp_path / "d.md"
  doc.write_text("# Tensor RPC (`from seed import grpc`)\n```\n# no heading\n```\n## Code layout (`seed/serving/`)\n")
  assert _heading_anchors(doc) == {"tensor-rpc-from-seed-import-grpc", "code-layout-seedserving"}
