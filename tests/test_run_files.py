"""seed.run_files: metrics.jsonl as the run writes it (a half-written last row, damage), without TensorFlow."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers import REPO

from seed import run_files


def test_half_written_last_row_is_left_out_and_read_once_complete(tmp_path):
  rows = [{"frames": 100, "fps": 1.5}, {"frames": 200, "fps": 2.0}]
  text = "".join(json.dumps(r) + "\n" for r in rows)
  (tmp_path / "metrics.jsonl").write_text(text + '{"frames": 3')
  assert run_files.read_metrics(tmp_path) == rows
  (tmp_path / "metrics.jsonl").write_text(text + '{"frames": 300}\n')
  assert [r["frames"] for r in run_files.read_metrics(str(tmp_path))] == [100, 200, 300]


def test_no_file_yet_and_damage(tmp_path):
  assert run_files.read_metrics(tmp_path) == []
  (tmp_path / "metrics.jsonl").write_text('{"frames": 1}\n{"fra\n{"frames": 2}\n')
  with pytest.raises(ValueError, match=r"metrics.jsonl:2: not a JSON row"):
    run_files.read_metrics(tmp_path)
  with pytest.raises(ValueError, match=r":1: not a JSON object"):
    run_files.parse_metrics("[1, 2]\n")
  assert run_files.parse_metrics("\n\n") == []


def test_plot_and_metrics_of_a_local_run_import_no_tensorflow(tmp_path):
  (tmp_path / "metrics.jsonl").write_text('{"frames": 1}\n')
  (tmp_path / "episodes.csv").write_text("time,frames,return\n1.0,10,2.0\n2.0,20,3.0\n")
  code = (
    "import sys\nfrom seed import plot, run_files\n"
    f"print(len(run_files.read_metrics({str(tmp_path)!r})), len(plot.load_run({str(tmp_path)!r})['returns']))\n"
    "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tf_keras')))\n"
  )
  proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert proc.stdout.split("\n")[:2] == ["1 2", "[]"]
