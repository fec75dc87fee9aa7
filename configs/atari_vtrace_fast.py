"""Atari (Pong by default) with V-trace, the Nature DQN torso and 64 envs: frames per second on 2 cores.

python -m seed.train --config configs/atari_vtrace_fast.py --logdir ~/runs/pong-fast

The DQN torso (3 conv layers + 512 dense) costs ~5x fewer multiply-adds per frame than the
IMPALA CNN; the actors step ale_py's C++ vector env. Frames count emulator frames: one env
step = frame_skip (4) frames.

Why these optimizer settings (scripts/tools/diagnose_update.py, README "Learning from pixels"):
with IMPALA's unnormalised advantages (mean |A| 0.15-0.24 on Pong) the baseline's gradient
reaches the shared torso 15-30x stronger than the policy's, and Adam's full-size first steps
then collapse V's spread across states (0.018 -> 0.0035 in 40 updates, conv3 30% -> 61% dead):
the torso stops seeing the state and the policy stays uniform. Normalised advantages (scale
only) bring the policy's gradient to the baseline's order, a 200-step warm-up keeps the
first steps small, and Adam's epsilon 1e-3 keeps later steps on small gradients small;
over the same 40 updates V's spread and the dead fractions hold.
"""

from configs import atari_vtrace


def get_config():
  c = atari_vtrace.get_config()  # Pong, V-trace, reward clip 1, entropy 0.01, discount 0.99
  c.agent.torso = "nature_cnn"
  # bfloat16 where the hardware runs it natively (AVX512-BF16/AMX, GPU, TPU), float32 elsewhere.
  c.agent.compute_dtype = "auto"
  c.agent.learning_rate = 6e-4
  c.agent.warmup_steps = 200
  c.agent.normalize_advantages = True
  # A clip that acts on a mean loss with normalised advantages (norms 0.4-1.5 on Pong), as CleanRL's 0.5.
  c.agent.max_grad_norm = 0.5
  # Adam's epsilon as R2D2's (1e-3): weights whose gradients are smaller than it (the first
  # conv layer's, ~1e-3 per weight on a mean loss) take SGD-sized steps instead of lr x sign(g).
  # At 1e-5 a Pong run lost conv1 from 19% to 69% dead over 1.5M frames (1,200 updates at
  # ~5.5e-4) and its entropy went back to uniform; 100 full-lr updates on recorded play:
  # conv3 30% -> 67% dead at 1e-5, 30% -> 34% at 1e-3.
  c.agent.adam_epsilon = 1e-3
  c.num_actors = 4
  c.env_batch_size = 16
  c.inference_batch_size = 32
  c.unroll_length = 20
  c.batch_size = 16
  c.unroll_queue_capacity = 64
  c.total_environment_frames = 12_000_000  # the learning rate decays to 0 over it
  return c
