"""Server-side batching: concurrent calls with the same key share one model run."""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from seed.serving.errors import invalid


class _Task:
  __slots__ = ("inputs", "rows", "arrival", "event", "lead", "done", "outputs", "error")

  def __init__(self, inputs: dict, rows: int):
    self.inputs, self.rows, self.arrival = inputs, rows, time.monotonic()
    self.event = threading.Event()
    self.lead = self.done = False
    self.outputs, self.error = None, None


class _Queue:
  def __init__(self, cond: threading.Condition):
    self.cond = cond
    self.tasks: collections.deque[_Task] = collections.deque()
    self.rows = 0
    self.leader: _Task | None = None


class Batcher:
  """Merges concurrent calls with the same key into one run.

  No extra threads: the first request of a batch leads it (waits until the
  batch is full or its timeout passes, then runs it for everyone); when it
  leaves requests behind, the oldest of those leads the next batch.
  """

  def __init__(self, max_batch_size: int, timeout: float):
    self.max_batch_size = max_batch_size
    self.timeout = timeout
    self._lock = threading.Lock()
    self._queues: dict[Any, _Queue] = {}

  def run(self, key, fn: Callable[[dict], dict], inputs: dict, rows: int) -> tuple[dict, int]:
    """fn's outputs for this call's rows, and the number of rows it ran with."""
    task = _Task(inputs, rows)
    with self._lock:
      q = self._queues.get(key)
      if q is None:
        q = self._queues[key] = _Queue(threading.Condition(self._lock))
      q.tasks.append(task)
      q.rows += rows
      if q.leader is None:
        q.leader = task
        task.lead = True
      elif q.rows >= self.max_batch_size:
        q.cond.notify_all()
    while not task.done:
      if task.lead:
        self._lead(key, q, task, fn)
      else:
        task.event.wait()
        task.event.clear()
    if task.error is not None:
      raise task.error
    return task.outputs

  def _lead(self, key, q: _Queue, task: _Task, fn) -> None:
    with self._lock:
      deadline = task.arrival + self.timeout
      while q.rows < self.max_batch_size:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
          break
        q.cond.wait(remaining)
      batch, total = [], 0
      while q.tasks and (not batch or total + q.tasks[0].rows <= self.max_batch_size):
        t = q.tasks.popleft()
        batch.append(t)
        total += t.rows
      q.rows -= total
      if q.tasks:
        q.leader = q.tasks[0]
        q.leader.lead = True
        q.leader.event.set()
      else:
        q.leader = None
        if self._queues.get(key) is q:
          del self._queues[key]
    try:
      if len(batch) == 1:
        outputs = fn(batch[0].inputs)
        parts = [outputs]
      else:
        merged = {k: np.concatenate([t.inputs[k] for t in batch]) for k in batch[0].inputs}
        outputs = fn(merged)
        for k, v in outputs.items():
          if v.ndim == 0 or v.shape[0] != total:
            raise invalid(
              f"batching: output '{k}' has shape {list(v.shape)}, whose 0th dimension does not "
              f"equal the batch size {total}; serve this model without --enable_batching"
            )
        parts, start = [], 0
        for t in batch:
          parts.append({k: v[start : start + t.rows] for k, v in outputs.items()})
          start += t.rows
      for t, p in zip(batch, parts):
        t.outputs = (p, total)
    except Exception as e:  # pylint: disable=broad-except  (each caller gets the error)
      for t in batch:
        t.error = e
    for t in batch:
      t.done = True
      if t is not task:
        t.event.set()
