"""Splits the CPU into 4 logical devices before TensorFlow starts; these tests need them.

Run by tests/test_multidevice.py in a process of their own (SEED_MULTIDEVICE=1), or by hand:
SEED_MULTIDEVICE=1 .venv/bin/python -m pytest tests/multidevice
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/: helpers, contract

import tensorflow as tf  # noqa: E402

LOGICAL_CPUS = 4
tf.config.set_logical_device_configuration(
  tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration() for _ in range(LOGICAL_CPUS)]
)
