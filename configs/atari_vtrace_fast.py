"""Atari (Pong by default) with V-trace, the Nature DQN torso in bfloat16 and 64 envs: frames per second on 2 cores.

python -m seed.train --config configs/atari_vtrace_fast.py --logdir runs/pong-fast

The DQN torso (3 conv layers + 512 dense) costs ~5x fewer multiply-adds per frame than the
IMPALA CNN, and bfloat16 convolutions (float32 variables) train ~1.6x faster again on CPUs
with AVX512-BF16/AMX; the actors step ale_py's C++ vector env. 3,500-5,000 frames/s on this
2-core machine against ~1,500 for atari_vtrace.py. NOT YET SHOWN TO LEARN: three Pong runs
(bf16 at lr 1e-3 and 6e-4, float32 at 6e-4) stayed at a random player's -20.3 for their
first 3-3.5M frames, where the IMPALA-CNN config had reached -16, and so did one with RMSProp
as the IMPALA paper ran it for 5.6M frames (README, Performance).
Frames count emulator frames: one env step = frame_skip (4) frames.
"""

from configs import atari_vtrace


def get_config():
  c = atari_vtrace.get_config()  # Pong, V-trace, reward clip 1, entropy 0.01, discount 0.99
  c.agent.torso = "nature_cnn"
  c.agent.compute_dtype = "bfloat16"
  c.agent.learning_rate = 6e-4
  # A larger epsilon than the default: at 1e-7 Adam takes full-size steps on near-zero
  # gradients early in Pong, and a run at lr 1e-3 lost 97% of its first conv layer to dead ReLUs.
  c.agent.adam_epsilon = 1e-5
  c.num_actors = 4
  c.env_batch_size = 16
  c.inference_batch_size = 32
  c.unroll_length = 20
  c.batch_size = 16
  c.unroll_queue_capacity = 64
  c.total_environment_frames = 12_000_000  # ~45 minutes here; the learning rate decays to 0 over it
  return c
