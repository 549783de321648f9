"""UloRL segment rollouts (arXiv 2507.19766 §3.1): decode in segments, carry unfinished samples to the next step.

Differs from GRPO in that one `generate` call decodes at most `segment_length` new tokens per sample; a sample that
has not finished stays in a pending pool and resumes next call from prompt + its tokens so far (`Request.prefix_ids`),
so a step never waits for the long tail. A prompt's group of G is released only when all G members are finished
(EOS, or `max_total_tokens` reached -> finish "length"; methods.md §5.2 group handling).

The total length is the experiment's: a prompt whose `len + max_total_tokens` exceeds the engine's `max_model_len` is
a ValueError when it is admitted, never a silently shorter limit (the trainer also checks the model at load time).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from rollouts.strategies.base import call_engine, check_name, derive_seed
from rollouts.types import Completion, Engine, FinishReason, Request, Sample, SamplingParams

Key = int | str


@dataclass(eq=False)
class _Member:
    token_ids: list[int] = field(default_factory=list)
    segment_ids: list[int] = field(default_factory=list)  # per token: the call that generated it
    first_segment: int = -1
    last_segment: int = -1
    finish_reason: FinishReason | None = None  # None while unfinished
    logprobs: list[float] = field(default_factory=list)  # per token, when the params ask for them (NaN: unknown)


@dataclass(eq=False)
class _Group:
    group_id: int
    key: Key | None
    prompt_ids: list[int]
    members: list[_Member]


def _member(state: dict[str, Any]) -> _Member:
    """A saved member (pools saved without log-probs load with none)."""
    return _Member(**{**state, "logprobs": list(state.get("logprobs") or [])})


class SegmentStrategy:
    """Pending-pool segment rollouts; `generate(prompts)` returns only groups whose G members all finished.

    Each call is one segment (its id is a counter saved in `state_dict`). Every returned sample carries
    `extras["segment_ids"]` (per token), `"segments"` (calls it took part in), `"staleness"` (this call's id minus
    its first segment), `"group_id"` and, when given, the caller's `"key"`. `Sample.prompt_index` is the group id: a
    counter over every prompt ever admitted, because a released group may belong to an earlier call's prompts;
    pass `keys` (ints or strings) to map groups back to dataset rows.

    Admission: with `max_pending` set, new prompts join only while `pending + G <= max_pending` (or when nothing is
    pending, so the pool always makes progress); the rest wait in a FIFO queue (`queued`, saved in `state_dict`)
    and are admitted before newer prompts in later calls. To drain at the end, call `generate([])` until
    `pending == 0 and queued == 0`. With `params.seed` set, each request gets a seed derived from (seed, group,
    member, segment), so resumed members of a group do not share one random stream and a resumed run replays exactly.
    """

    name = "segments"

    def __init__(
        self,
        engine: Engine,
        params: SamplingParams,
        num_generations: int,
        segment_length: int,
        max_total_tokens: int,
        *,
        max_pending: int | None = None,
    ) -> None:
        if num_generations < 1 or segment_length < 1 or max_total_tokens < 1:
            raise ValueError("num_generations, segment_length and max_total_tokens must all be >= 1")
        if max_pending is not None and max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending}")
        self.engine = engine
        self.params = params
        self.num_generations = num_generations
        self.segment_length = segment_length
        self.max_total_tokens = max_total_tokens
        self.max_pending = max_pending
        self.segment = 0  # id of the next call
        self.next_group_id = 0
        self.groups: list[_Group] = []  # admitted and not yet released, in admission order
        self.queue: list[tuple[list[int], Key | None]] = []

    @property
    def pending(self) -> int:
        """Number of admitted samples that have not finished."""
        return sum(m.finish_reason is None for g in self.groups for m in g.members)

    @property
    def queued(self) -> int:
        """Number of prompts waiting for admission."""
        return len(self.queue)

    def _limit(self, group: _Group) -> int:
        return self.max_total_tokens

    def _check_fits(self, prompt: Sequence[int]) -> None:
        if len(prompt) + self.max_total_tokens > self.engine.max_model_len:
            raise ValueError(
                f"segment rollout: a prompt of {len(prompt)} tokens + max_total_tokens {self.max_total_tokens} "
                f"exceeds the engine's max_model_len {self.engine.max_model_len}: lower variant.max_total_tokens or "
                "use a model (or vLLM max_model_len) that reaches the configured length"
            )

    def generate(self, prompts: Sequence[Sequence[int]], keys: Sequence[Key] | None = None) -> list[Sample]:
        """Admit prompts, decode one segment for every unfinished sample (one engine call), release full groups."""
        if keys is not None and len(keys) != len(prompts):
            raise ValueError(f"keys has {len(keys)} entries for {len(prompts)} prompts")
        for prompt in prompts:
            self._check_fits(prompt)
        self.queue.extend((list(p), keys[i] if keys is not None else None) for i, p in enumerate(prompts))
        G = self.num_generations
        fresh: list[_Group] = []
        while self.queue and (self.max_pending is None or self.pending + G <= self.max_pending or self.pending == 0):
            prompt_ids, key = self.queue.pop(0)
            group = _Group(self.next_group_id, key, prompt_ids, [_Member() for _ in range(G)])
            self.next_group_id += 1
            self.groups.append(group)
            fresh.append(group)

        seg = self.segment
        requests: list[Request] = []
        targets: list[tuple[_Group, list[_Member], int]] = []  # who a request feeds, and its max_tokens
        for group in self.groups:
            open_members = [m for m in group.members if m.finish_reason is None]
            room = self._limit(group)
            if group in fresh:  # one request with n=G: the engine shares the prompt
                cap = min(self.segment_length, room)
                params = replace(self.params, n=G, max_tokens=cap, seed=derive_seed(self.params.seed, group.group_id))
                requests.append(Request(list(group.prompt_ids), params))
                targets.append((group, open_members, cap))
                continue
            for j, m in enumerate(group.members):
                if m.finish_reason is not None:
                    continue
                cap = min(self.segment_length, room - len(m.token_ids))
                seed = derive_seed(self.params.seed, group.group_id, j, seg)
                params = replace(self.params, n=1, max_tokens=cap, seed=seed)
                # copies: the request must not see the tokens this call appends to the member
                requests.append(Request(list(group.prompt_ids), params, list(m.token_ids)))
                targets.append((group, [m], cap))
        outputs = call_engine(self.engine, requests)
        if requests:
            self.segment += 1
            for (group, members, cap), completions in zip(targets, outputs):
                for m, c in zip(members, completions):
                    self._extend(m, c, seg)
                    if c.finish_reason == "stop":
                        m.finish_reason = "stop"
                    elif len(m.token_ids) >= self._limit(group) or len(c.token_ids) < cap:
                        m.finish_reason = "length"  # total cap, or the engine stopped early at its own limit

        released = [g for g in self.groups if all(m.finish_reason is not None for m in g.members)]
        self.groups = [g for g in self.groups if g not in released]
        return [self._sample(g, m, seg) for g in released for m in g.members]

    def _extend(self, m: _Member, c: Completion, seg: int) -> None:
        if m.first_segment < 0:
            m.first_segment = seg
        m.last_segment = seg
        if self.params.logprobs:  # tokens of a pool saved without them are unknown: NaN
            m.logprobs.extend([math.nan] * (len(m.token_ids) - len(m.logprobs)))
            m.logprobs.extend(c.logprobs if c.logprobs is not None else [math.nan] * len(c.token_ids))
        m.token_ids.extend(c.token_ids)
        m.segment_ids.extend([seg] * len(c.token_ids))

    def _sample(self, group: _Group, m: _Member, seg: int) -> Sample:
        assert m.finish_reason is not None
        extras: dict[str, Any] = {
            "group_id": group.group_id,
            "segment_ids": list(m.segment_ids),
            "segments": m.last_segment - m.first_segment + 1 if m.first_segment >= 0 else 0,
            "staleness": seg - m.first_segment if m.first_segment >= 0 else 0,
        }
        if group.key is not None:
            extras["key"] = group.key
        return Sample(
            prompt_index=group.group_id,
            prompt_ids=list(group.prompt_ids),
            completion_ids=list(m.token_ids),
            finish_reason=m.finish_reason,
            loss_mask=[1] * len(m.token_ids),
            logprobs=list(m.logprobs) if self.params.logprobs else None,
            extras=extras,
        )

    def state_dict(self) -> dict[str, Any]:
        """The pool, queue and counters as plain lists/ints/floats/strings (JSON- and torch.save-safe)."""
        return {
            "name": self.name,
            "num_generations": self.num_generations,
            "segment": self.segment,
            "next_group_id": self.next_group_id,
            "groups": [asdict(g) for g in self.groups],
            "queue": [[p, k] for p, k in self.queue],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        check_name(self.name, state)
        if state["num_generations"] != self.num_generations:
            raise ValueError(f"saved pool has G={state['num_generations']}, this strategy G={self.num_generations}")
        self.segment = int(state["segment"])
        self.next_group_id = int(state["next_group_id"])
        self.groups = [
            _Group(g["group_id"], g["key"], list(g["prompt_ids"]), [_member(m) for m in g["members"]])
            for g in state["groups"]
        ]
        self.queue = [(list(p), k) for p, k in state["queue"]]
