"""The rollout engine's home in a training run: built on first use, its weights kept at the policy's step.

A transformers engine decodes with the live policy, or under ZeRO-3/FSDP2 (each rank holds a shard of every weight)
with a whole copy on the rank's device that gets the gathered weights once per optimizer step (rl/weight_sync.py); a
vLLM engine holds weights of its own and gets them the same way; TRL's vLLM (`use_vllm: true`) gets them from TRL's
own sync, which the engine calls.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from rl.weight_sync import full_copy, full_state


class EngineHost:
    """`factory(rollout_model)` builds the engine; an engine that decodes with a transformers model calls
    `rollout_model()` once for it, one with weights of its own (vLLM) does not, so it never pays for a copy.
    `live()` is the unwrapped policy, `step()` the trainer's global step."""

    def __init__(
        self,
        factory: Callable[[Callable[[], Any]], Any],
        live: Callable[[], Any],
        step: Callable[[], int],
        device: Any,
        sharded: bool,
        dtype: torch.dtype | None,
    ) -> None:
        self.factory, self.live, self.step, self.device, self.sharded, self.dtype = (
            factory, live, step, device, sharded, dtype
        )  # fmt: skip
        self.engine: Any = None
        self.synced_step: int | None = 0  # the step whose weights an engine with its own (vLLM, copy) holds

    def build(self) -> Any:
        self.engine = self.factory(self.rollout_model)
        return self.engine

    def rollout_model(self) -> Any:
        """The live policy, or when it is sharded a whole copy (in the dtype an unsharded run decodes in) that `sync`
        fills before each step's first rollout."""
        live = self.live()
        if not self.sharded:
            return live
        self.synced_step = None  # the copy holds no weights yet
        return full_copy(live, self.device, self.dtype or next(live.parameters()).dtype)

    def sync(self) -> None:
        """Weights into an engine that holds its own, once per optimizer step, gathered one tensor at a time (a
        collective: every rank gets here together); an engine on the live policy needs nothing."""
        if hasattr(self.engine, "sync_weights"):  # TRL's vLLM (rollouts/trl_vllm.py): TRL moves the weights
            self.engine.sync_weights()
            return
        live = self.live()
        if getattr(self.engine, "model", None) is live or self.synced_step == self.step():
            return
        self.engine.load_weights(full_state(live, self.device))
        self.synced_step = self.step()


@contextmanager
def generating(model: Any) -> Iterator[None]:
    """`model` in eval mode without autograd while an engine decodes with it."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)
