"""seed/Catch-v0 with PPO and the Nature CNN (shared by linear heads): a last-50 mean >= 0.8 in ~14k frames.

python -m seed.train --config configs/catch_ppo.py

Measured on 2 cores beside a Pong training and another session's CartPole runs (load average
6-9): seeds 0, 1, 2 reached 0.8 at 13,568 / 15,872 / 13,824 frames, 71.8 / 65.1 / 73.8 s after
the launcher started (~30 s of it imports, process start and tracing); the test run of seed 0
at 14,848 frames, 42.4 s. Dead units at the goal: conv1-3 0%, dense 1%. The policy's entropy is
still ~0.7 (of ln 3 = 1.1) there: the paddle is seen, so a wrong move can be made up for later.

60x60 frames (cells of 6x12 pixels), not the env's default 40x40: at 40x40 the Nature CNN
never sees the paddle (see configs/catch_vtrace.py).
"""

import envs
from agents.ppo import config as ppo_config
from seed.runtime import config as seed_config


def get_config():
  c = seed_config.runtime_config()
  c.agent_name = "ppo"
  c.env = envs.env_config(envs.CATCH_ID)
  # The whole 10x5 board visible to the Nature CNN: 60x60 frames.
  c.env.kwargs = {"cell": (6, 12)}
  c.agent = ppo_config.get_config()
  c.agent.torso = "nature_cnn"
  # This CPU has no native bfloat16 (emulated bfloat16 is slower than float32).
  c.agent.compute_dtype = "float32"
  # Running observation statistics are for vector observations (the conv torso scales pixels).
  c.agent.normalize_observations = False
  # One actor process stepping all 16 envs: every inference call is a full batch, and only two
  # processes start TensorFlow (startup is most of the run on 2 cores).
  c.num_actors = 1
  c.env_batch_size = 16
  c.inference_batch_size = 16
  c.unroll_length = 16
  c.batch_size = 16  # unrolls per PPO batch: 16 x 16 = 256 transitions
  c.unroll_queue_capacity = 32  # two batches: little policy lag
  # The whole batch in one minibatch, 2 epochs at 1e-3: 2 gradient steps per 256 frames. This took
  # about as many frames (12-15.6k, seeds 0-2) as 4 epochs at 5e-4 (11.3-14.6k) with half the steps;
  # 1 epoch took 19-20k. At 40x40, 2 minibatches x 4 epochs at 1e-3 left 34-47% of conv1 dead.
  c.agent.minibatch_size = 16
  c.agent.num_epochs = 2
  c.agent.learning_rate = 1e-3
  # CleanRL's Atari PPO value: the policy stays stochastic while the paddle is found.
  c.agent.entropy_cost = 0.01
  c.stop_mean_return = 0.8
  # ~3.8x the frames the slowest seed needed (the learning rate is constant: lr_decay is off).
  c.total_environment_frames = 60_000
  c.log_interval = 2.0  # a minute-long run: a progress line every 2 s
  return c
