"""The tree's layers import only downwards: envs <- seed <- agents <- configs (gcp, scripts and tests on top).

Every import statement of every module counts, also those inside functions. The two entry points
`seed/train.py` and `seed/evaluate.py` are where a run is put together: they alone in seed/ may import
the agent registry (agents.registry), which resolves config.agent_name into the AgentPackage the
runtime is handed.
"""

from __future__ import annotations

import ast
import pathlib
import sys

import pytest
from helpers import REPO

ROOT = pathlib.Path(REPO)
# Layer -> the first-party top-level packages its modules may import (besides its own).
ALLOWED = {
  "envs": set(),
  "seed": {"envs"},
  "agents": {"seed", "envs"},
  "configs": {"agents", "envs", "seed"},
}
FIRST_PARTY = {"envs", "seed", "agents", "configs", "gcp", "scripts", "tests"}
ENTRY_POINTS = {"seed/train.py": {"agents.registry"}, "seed/evaluate.py": {"agents.registry"}}


def _imports(path: pathlib.Path) -> list[tuple[int, str]]:
  """(line, dotted module) of every import in the file, relative imports resolved."""
  tree = ast.parse(path.read_text(), str(path))
  package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
  out = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      out += [(node.lineno, alias.name) for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        parts = package.split(".")[: len(package.split(".")) - node.level + 1]
        base = ".".join([*parts, base] if base else parts)
      out += [(node.lineno, f"{base}.{alias.name}" if base else alias.name) for alias in node.names]
  return out


def _violations(layer: str) -> list[str]:
  bad = []
  for path in sorted((ROOT / layer).rglob("*.py")):
    rel = path.relative_to(ROOT).as_posix()
    exempt = ENTRY_POINTS.get(rel, set())
    for line, module in _imports(path):
      top = module.split(".")[0]
      if top not in FIRST_PARTY or top == layer or top in ALLOWED[layer]:
        continue
      if any(module == e or module.startswith(e + ".") for e in exempt):
        continue
      bad.append(f"{rel}:{line} imports {module}")
  return bad


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layer_imports_only_the_layers_below(layer):
  assert _violations(layer) == []


def test_the_check_sees_a_violation(tmp_path, monkeypatch):
  """The walker finds imports inside functions and relative ones (a check that cannot fail checks nothing)."""
  fake = tmp_path / "seed" / "runtime"
  fake.mkdir(parents=True)
  (fake / "bad.py").write_text("def f():\n  from agents import registry\n  from ..x import y\n")
  monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
  assert _imports(fake / "bad.py") == [(2, "agents.registry"), (3, "seed.x.y")]
  assert _violations("seed") == ["seed/runtime/bad.py:2 imports agents.registry"]
