"""Learning from pixels, end to end: each agent with the Nature CNN learns seed/Catch-v0 within its frame budget.

Each run is `python -m seed.train` on its config as shipped (configs/catch_*.py): it stops once the
mean of the last 50 episodes reaches 0.8 (a random policy averages -0.6), and must get there within
the config's total_environment_frames. About a minute each on 2 cores; the timeouts leave room for a
loaded machine.
"""

import importlib
import os
import re

import pytest
from helpers import REPO
from test_train import _best_recent_mean, _episodes, _no_process_left, runs  # noqa: F401  (runs is a fixture)

from seed.runtime.learner import RECENT_EPISODES

pytestmark = pytest.mark.learning  # left out by ./scripts/test.sh --quick

GOAL = 0.8  # every Catch config's goal is at least this


@pytest.mark.timeout(600)
@pytest.mark.parametrize("agent", ["vtrace", "ppo", "r2d2"])
def test_catch_is_learnt_from_pixels_within_the_frame_budget(tmp_path, runs, agent):  # noqa: F811
  config = importlib.import_module(f"configs.catch_{agent}").get_config()
  goal_return = config.stop_mean_return
  assert config.agent.torso == "nature_cnn" and goal_return >= GOAL
  budget = config.total_environment_frames
  run = runs(tmp_path / "run", config=os.path.join(REPO, "configs", f"catch_{agent}.py"))
  assert run.wait(540) == 0, run.output()
  goal = re.search(
    rf"goal reached: mean return of the last {RECENT_EPISODES} episodes (-?[\d.]+) >= {goal_return:g} at ([\d,]+) "
    r"frames, "
    r"([\d.]+) s after the Python process started",
    run.output(),
  )
  assert goal, f"no goal line (the frame budget ran out?):\n{run.output()}"
  frames = int(goal[2].replace(",", ""))
  assert frames <= budget, run.output()
  assert _best_recent_mean(_episodes(run.logdir)) >= goal_return
  print(f"Catch {agent}: last-{RECENT_EPISODES} mean {goal[1]} at {frames:,} frames, {goal[3]} s")
  _no_process_left(run)
  if agent == "r2d2":  # (this replaced the slower CartPole R2D2 learning test)
    assert run.metrics()[-1]["replay/bytes"] > 0
  # The export plays with seed.evaluate, greedy (from its `logits`), far better than chance: a random
  # paddle catches ~1 ball in 5 (mean -0.6); a mean >= 0 needs at least 5 catches out of 10.
  from seed import evaluate  # pylint: disable=g-import-not-at-top

  played = evaluate.evaluate(run.logdir, episodes=10, greedy=True, verbose=False)
  greedy_mean = sum(r for r, _ in played) / len(played)
  print(f"Catch {agent}: greedy export {greedy_mean:+.1f} over {len(played)} episodes")
  assert len(played) == 10 and greedy_mean >= 0.0, played
