"""SEED: scalable reinforcement learning with central batched inference (see README.md)."""

import time as _time

# Wall-clock time this package was first imported. `python -m seed.<entry point>` imports it
# before anything else (TensorFlow included), so it marks when the Python process started, to
# within the interpreter's own start-up: see seed.runtime.processes.python_start_time.
IMPORT_TIME = _time.time()
