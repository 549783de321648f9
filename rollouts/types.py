"""The rollout contract: requests in, token-level completions out.

Everything is token ids end to end. A `Request` may carry `prefix_ids` (a partial completion to continue from); the
engine returns only the *new* tokens, so a caller concatenates `prefix_ids + completion.token_ids` itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import torch

FinishReason = Literal["stop", "length"]

HF_MODES = ("auto", "dynamic", "static", "compiled")  # the transformers engine's modes (rollouts/hf_engine.py)


def finish_reason(completion_ids: Sequence[int], eos_token_ids: Iterable[int], max_tokens: int) -> FinishReason:
    """The finish reason: "length" iff the completion hit `max_tokens` without ending in an EOS id, else "stop".

    The engines' own rule (the stop token is kept in the ids; an EOS that is also the cap-th token is "stop", as
    vLLM 0.31's `check_stop` tests the EOS before the length); the trainer applies it where TRL generated.
    """
    if completion_ids and int(completion_ids[-1]) in set(eos_token_ids):
        return "stop"
    return "length" if len(completion_ids) >= max_tokens else "stop"


@dataclass(frozen=True)
class SamplingParams:
    """Sampling settings of one request. `temperature=0` is greedy; `top_k=0` disables top-k."""

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_tokens: int = 256
    stop_token_ids: tuple[int, ...] = ()
    seed: int | None = None
    logprobs: bool = False

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"SamplingParams.n must be >= 1, got {self.n}")
        if self.max_tokens < 1:
            raise ValueError(f"SamplingParams.max_tokens must be >= 1, got {self.max_tokens}")
        if self.temperature < 0:
            raise ValueError(f"SamplingParams.temperature must be >= 0, got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"SamplingParams.top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"SamplingParams.top_k must be >= 0, got {self.top_k}")


@dataclass(frozen=True)
class Request:
    """One prompt (token ids), optionally with a partial completion to continue from."""

    prompt_ids: Sequence[int]
    params: SamplingParams = field(default_factory=SamplingParams)
    prefix_ids: Sequence[int] = ()


@dataclass
class Completion:
    """New tokens of one sample; `logprobs[i]` is the behaviour log-prob of `token_ids[i]` when asked for."""

    token_ids: list[int]
    finish_reason: FinishReason
    logprobs: list[float] | None = None


@runtime_checkable
class Engine(Protocol):
    """What every rollout engine (transformers, vLLM) provides."""

    eos_token_ids: tuple[int, ...]
    max_model_len: int

    def generate(self, requests: Sequence[Request]) -> list[list[Completion]]:
        """`requests[i]` -> `params.n` completions, in order."""
        ...

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Replace the policy weights (names as in the HF model's state dict)."""
        ...


@dataclass
class Sample:
    """One training sample produced by a strategy: a prompt's completion with its masks and extras.

    `loss_mask[i]` is 0 for tokens the policy did not sample (an inserted inducer) and 1 otherwise. `logprobs`: the
    behaviour log-probs of a vLLM generation, for TRL's importance-sampling correction (`use_vllm` with
    `vllm_importance_sampling_correction`): TRL's own (`rollout.engine: trl`) or brevity's strategies on TRL's vLLM,
    which ask for them in `SamplingParams.logprobs` and put NaN on inserted tokens (TRL reads NaN as "no correction").
    `extras` holds strategy metadata (`exit_rank`, `exit_position`, `segment_ids`, ...).
    """

    prompt_index: int
    prompt_ids: list[int]
    completion_ids: list[int]
    finish_reason: FinishReason
    loss_mask: list[int]
    logprobs: list[float] | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.loss_mask) != len(self.completion_ids):
            raise ValueError(
                f"loss_mask has {len(self.loss_mask)} entries for {len(self.completion_ids)} completion tokens"
            )
