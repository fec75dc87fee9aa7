"""Stable-Baselines3 PPO on CartPole-v1 with the RL Zoo's hyperparameters, stopped at a last-50 mean >= 475.

Run by scripts/bench/bench_cartpole.py in its own virtualenv (torch + stable-baselines3); not part of
SEED. Prints one line "goal reached at <steps> steps" when the goal is met (the bench times
the process from launch to that line), or "not solved" after the 100k-step budget.
"""

import argparse
import collections
import sys

from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env


class StopAtGoal(BaseCallback):
  """Stops training once the mean return of the last `window` finished episodes reaches `goal`."""

  def __init__(self, goal: float, window: int = 50):
    super().__init__()
    self.goal, self.returns = goal, collections.deque(maxlen=window)

  def _on_step(self) -> bool:
    for info in self.locals["infos"]:
      if "episode" in info:  # added by the Monitor wrapper when an episode ends
        self.returns.append(info["episode"]["r"])
    solved = len(self.returns) == self.returns.maxlen and sum(self.returns) / len(self.returns) >= self.goal
    if solved:
      print(f"goal reached at {self.num_timesteps} steps", flush=True)
    return not solved


def linear(start: float):
  return lambda progress_remaining: progress_remaining * start  # SB3 passes 1 -> 0 over the budget


def main() -> int:
  parser = argparse.ArgumentParser()
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--goal", type=float, default=475.0)
  args = parser.parse_args()
  # rl-baselines3-zoo, hyperparams/ppo.yml, CartPole-v1.
  env = make_vec_env("CartPole-v1", n_envs=8, seed=args.seed)
  model = PPO(
    "MlpPolicy",
    env,
    n_steps=32,
    batch_size=256,
    gae_lambda=0.8,
    gamma=0.98,
    n_epochs=20,
    ent_coef=0.0,
    learning_rate=linear(1e-3),
    clip_range=linear(0.2),
    seed=args.seed,
    device="cpu",
  )
  callback = StopAtGoal(args.goal)
  model.learn(total_timesteps=100_000, callback=callback)
  if not (len(callback.returns) == callback.returns.maxlen and sum(callback.returns) / 50 >= args.goal):
    print("not solved within 100000 steps", flush=True)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
