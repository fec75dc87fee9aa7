"""Replay for off-policy agents: a sum tree, uniform and prioritized buffers, and the feeder
that moves the learner's unrolls into them at a controlled replay ratio."""

from seed.replay.buffers import PrioritizedReplay, UniformReplay
from seed.replay.feeder import ReplayFeeder, valid_transitions
from seed.replay.sum_tree import SumTree

__all__ = ["PrioritizedReplay", "ReplayFeeder", "SumTree", "UniformReplay", "valid_transitions"]
