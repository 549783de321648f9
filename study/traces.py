"""The study's task: seeded multi-term sums and warm-start traces that over-think by a known, seeded amount.

A problem is `a1+a2+...+an=?` with an exact integer answer. Its *minimal* trace holds exactly the steps a solution
needs (one running sum per term), so a model that skips them must add several numbers at once and loses accuracy
on longer sums; the *verbose* trace adds redundancy of the kinds reasoning models show, each drawn from the
problem's own seed:

- restating the question (`We need 47+85+12.`),
- re-checking a step (`check 47+85=132.`, 0 to `max_checks` times after each step),
- a second full pass over all steps after the first (`again 47+85=132. 132+12=144.`).

Every trace has the same shape, which every variant's reward can read (a think block, then a boxed answer inside
answer tags, as the curriculum's R1-zero format and the boxed graders both expect):

    <think>47+85=132. 132+12=144.</think>
    <answer>\\boxed{144}</answer>

`minimal_trace` is the floor no method can beat on that problem; the study reports each model's tokens over it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

__all__ = ["Redundancy", "SumTask", "Trace", "make_problem", "minimal_trace", "verbose_trace"]


@dataclass(frozen=True)
class Redundancy:
    """How much a warm-start trace over-thinks: probabilities and counts of each kind of redundancy."""

    restate: float = 0.5  # P(the trace opens by restating the question)
    max_checks: int = 2  # re-checks after each step: uniform in 0..max_checks
    second_pass: float = 0.5  # P(a second full pass over the steps before answering)

    def __post_init__(self) -> None:
        for name in ("restate", "second_pass"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"redundancy.{name} must be a probability in [0, 1], got {getattr(self, name)}")
        if self.max_checks < 0:
            raise ValueError(f"redundancy.max_checks must be >= 0, got {self.max_checks}")


@dataclass(frozen=True)
class SumTask:
    """Sums of `min_terms..max_terms` numbers with `digits` digits each (no leading zeros)."""

    min_terms: int = 2
    max_terms: int = 5
    digits: int = 2
    redundancy: Redundancy = field(default_factory=Redundancy)

    def __post_init__(self) -> None:
        if not 2 <= self.min_terms <= self.max_terms:
            raise ValueError(f"need 2 <= min_terms <= max_terms, got {self.min_terms}..{self.max_terms}")
        if not 1 <= self.digits <= 6:
            raise ValueError(f"digits must be in 1..6, got {self.digits}")


@dataclass(frozen=True)
class Trace:
    """One problem with its answer, its minimal trace and a verbose (warm-start) trace with its redundancy counts."""

    id: str
    prompt: str
    answer: int
    terms: tuple[int, ...]
    minimal: str
    verbose: str
    restated: bool
    checks: tuple[int, ...]  # re-checks after each step, len = n_terms - 1
    second_pass: bool


THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


def _steps(terms: tuple[int, ...]) -> list[str]:
    """The running sums: `a1+a2=s2.`, `s2+a3=s3.`, ..."""
    out, total = [], terms[0]
    for t in terms[1:]:
        out.append(f"{total}+{t}={total + t}.")
        total += t
    return out


def _wrap(thinking: list[str], answer: int) -> str:
    return f"{THINK_OPEN}{' '.join(thinking)}{THINK_CLOSE}\n<answer>\\boxed{{{answer}}}</answer>"


def minimal_trace(terms: tuple[int, ...]) -> str:
    """The shortest correct trace: one running sum per term, then the answer."""
    return _wrap(_steps(terms), sum(terms))


def verbose_trace(terms: tuple[int, ...], redundancy: Redundancy, rng: random.Random) -> tuple[str, bool, tuple, bool]:
    """The minimal trace's steps plus redundancy drawn from `rng`: (text, restated, checks per step, second pass)."""
    steps = _steps(terms)
    restated = rng.random() < redundancy.restate
    checks = tuple(rng.randint(0, redundancy.max_checks) for _ in steps)
    second = rng.random() < redundancy.second_pass
    thinking = [f"We need {'+'.join(map(str, terms))}."] if restated else []
    for step, n in zip(steps, checks):
        thinking.append(step)
        thinking += [f"check {step}"] * n
    if second:
        thinking.append("again " + steps[0])
        thinking += steps[1:]
    return _wrap(thinking, sum(terms)), restated, checks, second


def make_problem(task: SumTask, seed: int, index: int, n_terms: int | None = None) -> Trace:
    """Problem `index` of the stream `seed`: a pure function of (task, seed, index, n_terms)."""
    rng = random.Random(f"sum/{seed}/{index}/{n_terms}")
    n = n_terms if n_terms is not None else rng.randint(task.min_terms, task.max_terms)
    low, high = 10 ** (task.digits - 1), 10**task.digits - 1
    terms = tuple(rng.randint(low, high) for _ in range(n))
    verbose, restated, checks, second = verbose_trace(terms, task.redundancy, rng)
    return Trace(
        id=f"s{seed}-{index}" + (f"-n{n_terms}" if n_terms is not None else ""),
        prompt="+".join(map(str, terms)) + "=?",
        answer=sum(terms),
        terms=terms,
        minimal=minimal_trace(terms),
        verbose=verbose,
        restated=restated,
        checks=checks,
        second_pass=second,
    )
