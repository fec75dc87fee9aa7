"""seed.serving.health.wait_serving: returns on SERVING (the serving fixtures wait with it), fails fast and says why."""

import subprocess
import sys
import time

import portpicker
import pytest

from seed.serving import health


def test_a_server_process_that_exits_is_reported_with_its_log(tmp_path):
  log = tmp_path / "serve.log"
  log.write_text("loading...\nboom: no such model\n")
  proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
  proc.wait()
  start = time.monotonic()
  with pytest.raises(RuntimeError, match=r"exited with status 3:\nloading...\nboom: no such model"):
    health.wait_serving(f"127.0.0.1:{portpicker.pick_unused_port()}", 30, proc, str(log))
  assert time.monotonic() - start < 5


def test_nobody_serving_times_out():
  address = f"127.0.0.1:{portpicker.pick_unused_port()}"
  start = time.monotonic()
  with pytest.raises(RuntimeError, match=f"seed.serve at {address} not serving after 1.0s"):
    health.wait_serving(address, 1.0)
  assert time.monotonic() - start < 5
