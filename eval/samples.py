"""Per-sample records of an evaluation: built from engine output, kept in append-only JSONL files, re-graded by prefix.

One record per (problem, sample index), with the keys of `RECORD_KEYS`. `num_tokens` counts the completion's token
ids as the engine returned them, the stop token included (as TRL's completion mask does); `completion` is the text
decoded without special tokens, so re-tokenising it gives `num_tokens - 1` tokens for a sample that stopped.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from rewards.grading import grade
from rewards.thinking import THINK_CLOSE, THINK_OPEN, prompt_opens_think, think_span
from rollouts.data import FILE_SUFFIXES, Problem
from rollouts.types import Completion

logger = logging.getLogger("brevity.eval")

RECORD_KEYS = (
    "benchmark",
    "problem_id",
    "sample_index",
    "completion",
    "num_tokens",
    "num_think_tokens",
    "answer",
    "reference",
    "correct",
    "finish_reason",
)


def slug(benchmark: str) -> str:
    """A file-name-safe name of a benchmark spec: `rg:chain_sum?max_terms=2` -> `rg_chain_sum_max_terms_2`, a local
    file `data/test.jsonl` -> `test`."""
    name = Path(benchmark).stem if benchmark.lower().endswith(FILE_SUFFIXES) else benchmark
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")


def read_samples(path: Path) -> list[dict[str, Any]]:
    """Finished samples of a JSONL file; a torn last line (crash mid-write) is dropped, and the file is trimmed."""
    if not path.is_file():
        return []
    records, good_bytes = [], 0
    with open(path, "rb") as f:
        for line in f:
            try:
                if not line.endswith(b"\n"):
                    raise ValueError("no newline: the write was cut short")
                records.append(json.loads(line))
            except ValueError:  # JSONDecodeError is a ValueError
                break
            good_bytes += len(line)
    if good_bytes != path.stat().st_size:
        logger.warning("%s: dropping a partially written last line", path)
        with open(path, "r+b") as f:
            f.truncate(good_bytes)
    return records


def append_samples(path: Path, records: Iterable[dict[str, Any]], *, fsync: bool = True) -> None:
    """Append records in one write, flushed to the OS (which keeps them if the process dies) and, with `fsync`, to
    disk (which keeps them if the machine dies)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write("".join(json.dumps(r) + "\n" for r in records))
        f.flush()
        if fsync:
            os.fsync(f.fileno())


def nan_to_none(value: Any) -> Any:
    """A copy of nested dicts/lists with NaN and ±inf floats as None, so `json.dumps(..., allow_nan=False)` writes
    strict JSON (Python writes bare `NaN`, which JSON readers reject), e.g. `tokens_think` when no sample thinks."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: nan_to_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [nan_to_none(v) for v in value]
    return value


def write_atomic(path: Path, text: str) -> None:
    """Write a file so that readers see the old or the new content, never half of it."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def opens_think(tokenizer: Any, prompt_ids: Sequence[int]) -> bool:
    """Whether a prompt ends inside a think block (chat templates of R1-distill / Qwen3 put `<think>` there)."""
    return prompt_opens_think(prompt_ids, tokenizer.decode, tail=16)


def think_token_count(
    ids: Sequence[int], text: str, decode: Callable[[Sequence[int]], str], opened: bool = False
) -> int | None:
    """Tokens of the thinking span (rewards/thinking.py), up to and including the first `</think>`, found on the
    decoded text so a tag merged with its neighbours counts; all tokens if a think block opens (in the text, or in
    the prompt: `opened`) and never closes; None without think tags."""
    if THINK_CLOSE not in text:
        return len(ids) if opened or THINK_OPEN in text else None
    return think_span(ids, decode=decode).end


def make_record(
    benchmark: str,
    problem: Problem,
    index: int,
    completion: Completion,
    tokenizer: Any,
    answer_format: str,
    think_open: bool = False,
) -> dict[str, Any]:
    """The graded record of one sample; `think_open`: its prompt ended inside a think block."""

    def decode(ids: Sequence[int]) -> str:
        return tokenizer.decode(list(ids), skip_special_tokens=True)

    text = decode(completion.token_ids)
    g = grade(text, problem.answer or "", answer_format=answer_format)
    return {
        "benchmark": benchmark,
        "problem_id": problem.id,
        "sample_index": index,
        "completion": text,
        "num_tokens": len(completion.token_ids),
        "num_think_tokens": think_token_count(completion.token_ids, text, decode, think_open),
        "answer": g.answer,
        "reference": problem.answer,
        "correct": g.correct,
        "finish_reason": completion.finish_reason,
    }


def regrade_prefixes(records: Iterable[dict[str, Any]], cutoffs: Sequence[int], tokenizer: Any, answer_format: str):
    """Add `cutoff_correct` ({str(C): bool}) to each record: the grade of its first C tokens, i.e. the answer a hard
    stop at C tokens would leave. A cutoff at or past the sample's length keeps its own grade. The prefix comes from
    re-tokenising the completion text (no model needed), which may split a few tokens differently than the sampler.
    """
    for record in records:
        graded = dict(record.get("cutoff_correct") or {})
        ids: list[int] | None = None
        for cutoff in cutoffs:
            if str(cutoff) in graded:
                continue
            if cutoff >= int(record["num_tokens"]):
                graded[str(cutoff)] = bool(record["correct"])
                continue
            if ids is None:
                ids = tokenizer.encode(record["completion"], add_special_tokens=False)
            prefix = tokenizer.decode(ids[:cutoff], skip_special_tokens=True)
            graded[str(cutoff)] = grade(prefix, record["reference"] or "", answer_format=answer_format).correct
        record["cutoff_correct"] = graded
