"""The collectives a rollout needs across training processes, over accelerate (no-ops in one process).

Every method is a collective: all processes call it together, in the same order.
"""

from __future__ import annotations

from typing import Any

import torch
from accelerate.utils import gather, gather_object, pad_across_processes


class Comm:
    """This process's place in the job and the few collectives rollouts use."""

    def __init__(self, accelerator: Any) -> None:
        self.rank = int(accelerator.process_index)
        self.world = int(accelerator.num_processes)
        self.device = accelerator.device  # where collective tensors live (NCCL needs them on the GPU)

    def objects(self, items: list[Any]) -> list[Any]:
        """Every process's `items`, concatenated in rank order."""
        return gather_object(items) if self.world > 1 else list(items)

    def tensors(self, tensor: torch.Tensor) -> torch.Tensor:
        """Every process's `tensor` concatenated along dim 0 (equal shapes)."""
        return gather(tensor) if self.world > 1 else tensor

    def rows(self, tensor: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Every process's rows in rank order, and where this process's start: processes may hold different numbers
        of rows, which a plain gather cannot take."""
        if self.world == 1:
            return tensor, 0
        sizes = gather(torch.tensor([tensor.shape[0]], device=tensor.device)).tolist()
        padded = pad_across_processes(tensor, dim=0)
        parts = gather(padded).split(padded.shape[0])
        return torch.cat([part[:size] for part, size in zip(parts, sizes)]), sum(sizes[: self.rank])

    def total(self, values: list[float]) -> list[float]:
        """Element-wise sums over processes."""
        local = torch.tensor(values, dtype=torch.float64, device=self.device)
        return self.tensors(local).view(-1, len(values)).sum(0).tolist()

    def most(self, value: int) -> int:
        """The largest `value` of any process."""
        return int(self.tensors(torch.tensor([value], device=self.device)).max().item())
