"""Over-thinking: how many tokens a sample wrote after it first had the correct answer (Chen et al. 2024,
"Do NOT Think That Much for 2+3=?", arXiv 2412.21187).

For a sample the grader marks correct, `first_correct_tokens` finds the smallest n such that the first n tokens of
its completion already grade correct. The completion is re-tokenised (no model needed; as in
`eval.samples.regrade_prefixes`), each prefix is graded with its think tags removed (an answer written while thinking
counts as having it), and the grader only runs where the answer the prefix shows changes, so a sample costs one
tokenisation plus one answer extraction per token. Wrong samples are skipped: they never had a final correct answer.

Per sample, in the re-tokenised completion (T tokens, the stop token not counted): n = tokens up to and including
the first correct answer, after = T - n. `overthinking_stats` aggregates over the correct samples.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from rewards.grading import extract_answer, grade

THINK_TAGS = ("<think>", "</think>")


def _strip_think(text: str) -> str:
    for tag in THINK_TAGS:
        text = text.replace(tag, " ")
    return text


def token_ends(tokenizer: Any, text: str) -> list[int]:
    """End offset in `text` of each token of its re-tokenisation: the first n tokens cover `text[:ends[n-1]]`.

    Uses a fast tokenizer's offset mapping; a slow tokenizer falls back to decoding every prefix (quadratic)."""
    try:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        offsets = enc["offset_mapping"]
    except (NotImplementedError, TypeError, ValueError, KeyError):
        ids = tokenizer.encode(text, add_special_tokens=False)
        return [len(tokenizer.decode(ids[:n], skip_special_tokens=True)) for n in range(1, len(ids) + 1)]
    ends, reach = [], 0
    for _, end in offsets:
        reach = max(reach, int(end))  # a token inside a multi-token character ends where the last piece ends
        ends.append(reach)
    return ends


def first_correct_tokens(completion: str, reference: str, tokenizer: Any, answer_format: str) -> tuple[int, int]:
    """(n, T): the fewest re-tokenised tokens whose text grades correct, and the completion's re-tokenised length.

    A prefix is graded as `grade(prefix without think tags, reference, answer_format)`; grading is a function of the
    extracted answer, so only prefixes whose extracted answer differs from the previous prefix's are graded. If no
    prefix grades correct this way (the whole text does under the run's own grading), n = T: nothing came after.
    """
    ends = token_ends(tokenizer, completion)
    total = len(ends)
    previous: str | None = None
    last_end = -1
    for n, end in enumerate(ends, start=1):
        if end == last_end:
            continue
        last_end = end
        prefix = _strip_think(completion[:end])
        answer = extract_answer(prefix, answer_format)
        if answer is None or answer == previous:
            previous = answer
            continue
        previous = answer
        if grade(prefix, reference, answer_format=answer_format).correct:
            return n, total
    return total, total


def mark_first_correct(records: Iterable[dict[str, Any]], tokenizer: Any, answer_format: str) -> None:
    """Add `first_correct_tokens` and `retokenized_tokens` to each correct record (in memory; wrong ones untouched)."""
    for record in records:
        if record["correct"] and "first_correct_tokens" not in record:
            n, total = first_correct_tokens(record["completion"], record["reference"] or "", tokenizer, answer_format)
            record["first_correct_tokens"], record["retokenized_tokens"] = n, total


def overthinking_stats(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Aggregates over the correct records that `mark_first_correct` measured (S of them):

    - tokens_after_first_correct: mean over S of (T - n); also its median and p90;
    - share_after_first_correct: sum(T - n) / sum(T), the fraction of correct samples' tokens written after the answer;
    - outcome_efficiency: (1/N) * sum over correct samples of n / T, with N = all records (Chen et al.'s xi_O: a wrong
      sample adds 0, so it is at most the accuracy; 1.0 = every sample correct and stopping at its first answer).
    Statistics over no samples are NaN (null in summary.json).
    """
    measured = [r for r in records if r.get("first_correct_tokens") is not None]
    after = np.asarray([r["retokenized_tokens"] - r["first_correct_tokens"] for r in measured], dtype=np.float64)
    totals = np.asarray([r["retokenized_tokens"] for r in measured], dtype=np.float64)
    firsts = np.asarray([r["first_correct_tokens"] for r in measured], dtype=np.float64)
    nan = float("nan")
    ratio = np.divide(firsts, totals, out=np.ones_like(firsts), where=totals > 0)  # an empty completion: n = T = 0
    return {
        "samples": len(measured),
        "tokens_after_first_correct": float(after.mean()) if after.size else nan,
        "tokens_after_first_correct_median": float(np.median(after)) if after.size else nan,
        "tokens_after_first_correct_p90": float(np.percentile(after, 90)) if after.size else nan,
        "share_after_first_correct": float(after.sum() / totals.sum()) if totals.sum() > 0 else nan,
        "outcome_efficiency": float(ratio.sum() / len(records)) if records else nan,
    }
