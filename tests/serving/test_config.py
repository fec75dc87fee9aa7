"""seed.serving.config and seed.serving.models in process (config parsing, scan_versions), and the entry points."""

import os
import subprocess
import sys

import pytest

from seed.serving.config import config_text, parse_config_text
from seed.serving.models import scan_versions
from tests.helpers import REPO
from tests.serving.serving_helpers import Half, export

# --- config parsing (in process) ----------------------------------------------------------------------


def test_config_parsing():
  configs = parse_config_text("""
      model_config_list {
        config { name: "a" base_path: "/m/a" model_platform: "tensorflow" }
        config { name: "b" base_path: "/m/b" model_version_policy { latest { num_versions: 2 } }
                 version_labels { key: "stable" value: 4 } }
        config { name: "c" base_path: "/m/c" model_version_policy { all {} } }
        config { name: "d" base_path: "/m/d" model_version_policy { specific { versions: 3 versions: 5 } } }
      }""")
  a, b, c, d = configs
  available = [1, 3, 4, 5, 10]
  assert (a.name, a.base_path, a.aspired(available)) == ("a", "/m/a", {10})
  assert b.aspired(available) == {5, 10} and dict(b.labels) == {"stable": 4}
  assert c.aspired(available) == set(available)
  assert d.aspired(available) == {3, 5} and d.aspired([1]) == set()
  for bad, message in [
    ('config { name: "a" base_path: "/x" model_platform: "pytorch" }', "pytorch"),
    ('config { name: "a" base_path: "/x" } config { name: "a" base_path: "/y" }', "twice"),
    ('config { name: "a" }', "base_path"),
    ('config { name: "a" base_path: "/x" model_version_policy { specific {} } }', "specific"),
    ("config { nme: 1 }", "cannot parse"),
  ]:
    with pytest.raises(ValueError, match=message):
      parse_config_text("model_config_list { " + bad + " }")


def test_scan_versions_skips_partial_exports(tmp_path):
  export(Half(1), str(tmp_path / "3"))
  (tmp_path / "4" / "variables").mkdir(parents=True)  # being written: no saved_model.pb yet
  export(Half(1), str(tmp_path / "5.tmp"))  # being written, Learner.save style
  (tmp_path / "notes").mkdir()
  assert scan_versions(str(tmp_path)) == {3: str(tmp_path / "3")}
  assert not scan_versions(str(tmp_path / "missing"))


def test_both_entry_points_list_the_flags():
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)
  procs = [
    subprocess.Popen(
      [sys.executable, "-m", module, "--help"],
      stdout=subprocess.PIPE,  # pylint: disable=consider-using-with
      stderr=subprocess.STDOUT,
      text=True,
      env=env,
      cwd=REPO,
    )
    for module in ("seed.serve", "seed.serving")
  ]
  for proc in procs:
    out, _ = proc.communicate(timeout=120)
    assert "--model_base_path" in out and "--tensor_rpc_address" in out, out[-3000:]


def test_config_text_round_trips_through_the_parser(tmp_path):
  paths = {"a": str(tmp_path / "a"), 'b "quoted"': str(tmp_path / "b")}
  parsed = parse_config_text(config_text(paths))
  assert [(c.name, c.base_path) for c in parsed] == list(paths.items())
