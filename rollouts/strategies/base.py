"""What every rollout strategy provides, and the checks they share."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from rollouts.types import Completion, Request, Sample


@runtime_checkable
class RolloutStrategy(Protocol):
    """Turns prompts (token ids) into training `Sample`s through an `Engine`; its state goes into checkpoints."""

    name: str

    def generate(self, prompts: Sequence[Sequence[int]]) -> list[Sample]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def checked(requests: Sequence[Request], outputs: list[list[Completion]]) -> list[list[Completion]]:
    """Fail loudly when an engine breaks the contract (one list of `n` completions per request)."""
    if len(outputs) != len(requests):
        raise RuntimeError(f"engine returned {len(outputs)} results for {len(requests)} requests")
    for request, completions in zip(requests, outputs):
        if len(completions) != request.params.n:
            raise RuntimeError(
                f"engine returned {len(completions)} completions for a request with n={request.params.n}"
            )
    return outputs


def call_engine(engine: Any, requests: Sequence[Request]) -> list[list[Completion]]:
    """One checked engine call. An empty one is skipped, unless the engine is `collective` (the ranks of a
    tensor-parallel group gather their requests in every call, so each must make the same calls, empty or not)."""
    if not requests and not getattr(engine, "collective", False):
        return []
    return checked(requests, engine.generate(requests))


def derive_seed(seed: int | None, *parts: int) -> int | None:
    """A distinct, reproducible seed per request a strategy splits off (None stays None: the engine draws one).

    Why: a seeded request's draws depend only on (seed, sample index, step), so two n=1 requests with the same seed
    (resumed members of one group, exits of one trace) would share their random stream.
    """
    if seed is None:
        return None
    for part in parts:
        seed = (seed * 1_000_003 + part + 1) % (2**62)
    return seed


def check_name(strategy: str, state: dict[str, Any]) -> None:
    """Refuse to load another strategy's state (a resumed run must use the strategy it was saved with)."""
    if state.get("name") != strategy:
        raise ValueError(f"state_dict of strategy {state.get('name')!r} cannot be loaded into {strategy!r}")
