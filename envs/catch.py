"""bsuite's Catch drawn as pixels: a small, fast image env for checking pixel agents end to end.

Catch is from bsuite (Osband et al. 2020, "Behaviour Suite for Reinforcement Learning",
ICLR): a ball falls from a random column of the top row, one row per step, and the agent
moves a paddle along the bottom row to catch it. The episode ends when the ball reaches the
bottom row, with reward +1 for a catch and -1 for a miss (0 on every other step), so an
episode is always `rows - 1` steps and a uniformly random policy catches 1 in `columns`.

Unlike bsuite's float board, the observation here is a uint8 image (each cell drawn as a
block of pixels), so that the conv torsos and the uint8 paths (transport, replay) are what a
run exercises. Importing the `envs` package registers it as ``seed/Catch-v0``.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces

CATCH_ID = "seed/Catch-v0"

LEFT, STAY, RIGHT = 0, 1, 2
_LIT = 255


class Catch(gymnasium.Env):
  """Catch on a `rows` x `columns` board, observed as a (rows * cell[0], columns * cell[1], 1) uint8 image.

  The defaults (bsuite's 10 x 5 board, cells of 4 x 8 pixels: 40 x 40) give square frames the
  DQN "Nature CNN" accepts (valid padding: 40 -> 9 -> 3 -> 1), but at 40 its second layer reads
  only 8 of the first's 9 rows, so the bottom 4 pixel rows (the paddle's) never reach the
  features. Sides that every pixel reaches are 36, 44, 52, 60, ...: the Catch configs use
  cell=(6, 12), 60 x 60.
  """

  metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

  def __init__(self, rows: int = 10, columns: int = 5, cell: tuple[int, int] = (4, 8), render_mode: str | None = None):
    # rows >= 2: the ball must fall at least once before it can reach the paddle's row.
    if rows < 2 or columns < 1:
      raise ValueError(f"Catch needs rows >= 2 and columns >= 1, got rows={rows}, columns={columns}")
    cell_h, cell_w = (int(c) for c in cell)
    if cell_h < 1 or cell_w < 1:
      raise ValueError(f"cell sides must be >= 1 pixel, got {cell}")
    if render_mode is not None and render_mode not in self.metadata["render_modes"]:
      raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
    self.rows, self.columns, self.cell = rows, columns, (cell_h, cell_w)
    self.render_mode = render_mode
    self.observation_space = spaces.Box(0, _LIT, (rows * cell_h, columns * cell_w, 1), np.uint8)
    self.action_space = spaces.Discrete(3)
    # None until the first reset, so stepping an unreset env is an error rather than a stale board.
    self._ball: tuple[int, int] | None = None  # (row, column)
    self._paddle = columns // 2
    self._done = False

  def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
    super().reset(seed=seed)  # seeds self.np_random, which picks the ball's column
    self._ball = (0, int(self.np_random.integers(self.columns)))
    self._paddle = self.columns // 2
    self._done = False
    return self._observation(), {}

  def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
    if self._ball is None or self._done:
      raise RuntimeError("Catch.step called before reset() or after the episode ended")
    if not self.action_space.contains(action):
      raise ValueError(f"invalid action {action!r}; Catch's actions are 0 (left), 1 (stay), 2 (right)")
    # The paddle moves before the ball lands, as in bsuite, so the last action still counts.
    self._paddle = min(max(self._paddle + int(action) - STAY, 0), self.columns - 1)
    row, column = self._ball
    self._ball = (row + 1, column)
    terminated = self._ball[0] == self.rows - 1
    reward = (1.0 if self._paddle == column else -1.0) if terminated else 0.0
    self._done = terminated
    return self._observation(), reward, terminated, False, {}

  def render(self) -> np.ndarray | None:
    if self.render_mode != "rgb_array" or self._ball is None:
      return None
    return np.repeat(self._observation(), 3, axis=-1)

  def _observation(self) -> np.ndarray:
    # A fresh array per step: vector envs and the actor may keep references to earlier frames.
    frame = np.zeros(self.observation_space.shape, np.uint8)
    h, w = self.cell
    for row, column in (self._ball, (self.rows - 1, self._paddle)):
      frame[row * h : (row + 1) * h, column * w : (column + 1) * w] = _LIT
    return frame


def register() -> None:
  """Registers `CATCH_ID` with gymnasium; a no-op when the id is already there (re-imports, reloads)."""
  if CATCH_ID not in gymnasium.registry:
    gymnasium.register(CATCH_ID, entry_point=f"{__name__}:Catch")
