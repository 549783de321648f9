"""Rollout strategies: how prompts become training samples through an engine (docs/architecture.md).

`standard` (parallel GRPO groups, optional per-prompt token caps), `serial_exits` (S-GRPO), `segments` (UloRL).
Samples carry no behaviour log-probs: TRL recomputes the old log-probs it needs, and UloRL's POIS takes them from the
current policy (SAIS, which would need the generation-time ones, is not implemented).
"""

from rollouts.strategies.base import RolloutStrategy
from rollouts.strategies.segments import SegmentStrategy
from rollouts.strategies.serial_exits import DEFAULT_INDUCER, SerialExitStrategy
from rollouts.strategies.standard import StandardStrategy

__all__ = ["DEFAULT_INDUCER", "RolloutStrategy", "SegmentStrategy", "SerialExitStrategy", "StandardStrategy"]
