"""Pure evaluation metrics: pass@k, avg@k, maj@k, token statistics, benchmark summaries and budget sweeps (S11).

Every function works on the per-sample records that ``eval/run.py`` writes (one JSON object per sample with
``problem_id``, ``sample_index``, ``completion``, ``num_tokens``, ``num_think_tokens``, ``answer``, ``correct``,
``finish_reason``). Accuracies are fractions in [0, 1], never percentages.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from eval.aes import accuracy_efficiency_score

NOISY_MIN_SAMPLES = 16  # below this many samples per problem an AIME accuracy moves by points between seeds


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct: 1 - C(n-c, k) / C(n, k) (Chen et al. 2021).

    Computed as 1 - prod_{i=n-c+1}^{n} (1 - k/i), which never forms the huge binomials.
    Example: ``pass_at_k(5, 2, 2) == 1 - C(3,2)/C(5,2) == 0.7``.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if k > n:
        raise ValueError(f"k={k} exceeds the number of samples n={n}")
    if n - c < k:  # every k-subset holds a correct sample
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1, dtype=np.float64)))


def avg_at_k(correct_by_problem: Mapping[str, Sequence[bool]]) -> tuple[float, float]:
    """Mean accuracy (per-problem mean, then mean over problems) and its standard error over problems.

    stderr = std(per-problem means, ddof=1) / sqrt(P); 0.0 when P == 1.
    """
    if not correct_by_problem:
        raise ValueError("avg_at_k needs at least one problem")
    means = []
    for pid, flags in correct_by_problem.items():
        if len(flags) == 0:
            raise ValueError(f"problem {pid!r} has no samples")
        means.append(float(np.mean(np.asarray(flags, dtype=np.float64))))
    arr = np.asarray(means)
    stderr = float(arr.std(ddof=1) / math.sqrt(len(arr))) if len(arr) > 1 else 0.0
    return float(arr.mean()), stderr


def _majority_index(answers: Sequence[str | None]) -> int | None:
    """Index of the first sample holding the majority answer; ties go to the answer seen first; None if no answers."""
    counts: dict[str, int] = {}
    first: dict[str, int] = {}
    for i, ans in enumerate(answers):
        if ans is None:
            continue
        key = ans.strip()
        counts[key] = counts.get(key, 0) + 1
        first.setdefault(key, i)
    if not counts:
        return None
    # max() keeps the first maximal key in insertion order, i.e. the tied answer that appeared first.
    winner = max(counts, key=lambda a: counts[a])
    return first[winner]


def maj_at_k(
    answers_by_problem: Mapping[str, Sequence[str | None]], correct_by_problem: Mapping[str, Sequence[bool]]
) -> float:
    """Majority-vote accuracy over problems.

    Answers are compared as exact strings after ``strip()``; None answers do not vote. Ties go to the tied answer
    whose first occurrence comes earliest in sample order. The vote is graded by the ``correct`` flag of that first
    occurrence. A problem with no extracted answer counts wrong.
    """
    if not answers_by_problem:
        raise ValueError("maj_at_k needs at least one problem")
    hits = 0
    for pid, answers in answers_by_problem.items():
        flags = correct_by_problem[pid]
        if len(flags) != len(answers):
            raise ValueError(f"problem {pid!r}: {len(answers)} answers but {len(flags)} correctness flags")
        idx = _majority_index(answers)
        hits += int(idx is not None and bool(flags[idx]))
    return hits / len(answers_by_problem)


def token_stats(values: Sequence[int]) -> dict[str, Any]:
    """mean, median, p10, p90 (numpy linear percentiles), min, max, count. Empty input: NaN mean/median/p10/p90, None
    min/max."""
    if len(values) == 0:
        nan = float("nan")
        return {"mean": nan, "median": nan, "p10": nan, "p90": nan, "min": None, "max": None, "count": 0}
    arr = np.asarray(values, dtype=np.float64)
    return {
        "mean": float(arr.mean()),
        "median": float(np.median(arr)),
        "p10": float(np.percentile(arr, 10)),
        "p90": float(np.percentile(arr, 90)),
        "min": int(arr.min()),
        "max": int(arr.max()),
        "count": int(arr.size),
    }


def group_by_problem(records: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Records grouped by ``problem_id`` and sorted by ``sample_index``; duplicate samples raise ValueError."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for rec in records:
        groups.setdefault(str(rec["problem_id"]), []).append(rec)
    for pid, recs in groups.items():
        recs.sort(key=lambda r: int(r["sample_index"]))
        indices = [int(r["sample_index"]) for r in recs]
        if len(set(indices)) != len(indices):
            raise ValueError(f"problem {pid!r} has duplicate sample_index values: {indices}")
    return groups


def _pass_ks(k: int) -> list[int]:
    """1, 2, 4, ... below k, plus k itself."""
    ks = [1 << i for i in range(k.bit_length()) if (1 << i) < k]
    return [*ks, k]


def compare_to_baseline(summary: Mapping[str, Any], baseline: Mapping[str, Any]) -> dict[str, float]:
    """compression_ratio = mean tokens / baseline mean tokens; accuracy_delta = accuracy - baseline (fraction 0..1);
    aes = the Accuracy-Efficiency Score against the baseline (`eval.aes`, O1-Pruner's weights)."""
    base_mean, base_acc = float(baseline["tokens"]["mean"]), float(baseline["accuracy"])
    mean, acc = float(summary["tokens"]["mean"]), float(summary["accuracy"])
    ratio = mean / base_mean if base_mean > 0 else float("nan")
    aes = accuracy_efficiency_score(acc, mean, base_acc, base_mean) if math.isfinite(mean + base_mean) else math.nan
    return {"compression_ratio": ratio, "accuracy_delta": acc - base_acc, "aes": aes}


def summarize(
    records: Sequence[Mapping[str, Any]], k: int | None = None, baseline: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Benchmark summary with stable keys.

    Keys: num_problems, samples_per_problem, accuracy, accuracy_stderr, pass_at_k ({"1": .., "2": .., .., str(k)}),
    maj_at_k, tokens, tokens_correct, tokens_think (``token_stats`` dicts), truncation_rate, accuracy_per_1k_tokens,
    and with ``baseline``: compression_ratio, accuracy_delta, aes.
    ``accuracy`` and ``maj_at_k`` use every sample of each problem. ``k`` is the largest pass@k reported (default:
    ``samples_per_problem``, the smallest per-problem sample count). ``accuracy_delta`` is in absolute fraction
    units (0.05 == five points). ``baseline`` is another ``summarize`` output.
    """
    if not records:
        raise ValueError("summarize needs at least one record")
    groups = group_by_problem(records)
    correct = {pid: [bool(r["correct"]) for r in recs] for pid, recs in groups.items()}
    answers = {pid: [r.get("answer") for r in recs] for pid, recs in groups.items()}
    n_min = min(len(v) for v in correct.values())
    k = n_min if k is None else k
    if k > n_min:
        raise ValueError(f"k={k} exceeds the smallest per-problem sample count {n_min}")

    accuracy, stderr = avg_at_k(correct)
    pass_k = {
        str(kk): float(np.mean([pass_at_k(len(flags), sum(flags), kk) for flags in correct.values()]))
        for kk in _pass_ks(k)
    }
    tokens = token_stats([int(r["num_tokens"]) for r in records])
    mean_tok = tokens["mean"]
    summary: dict[str, Any] = {
        "num_problems": len(groups),
        "samples_per_problem": n_min,
        "accuracy": accuracy,
        "accuracy_stderr": stderr,
        "pass_at_k": pass_k,
        "maj_at_k": maj_at_k(answers, correct),
        "tokens": tokens,
        "tokens_correct": token_stats([int(r["num_tokens"]) for r in records if r["correct"]]),
        "tokens_think": token_stats(
            [int(r["num_think_tokens"]) for r in records if r.get("num_think_tokens") is not None]
        ),
        "truncation_rate": sum(r["finish_reason"] == "length" for r in records) / len(records),
        "accuracy_per_1k_tokens": accuracy / (mean_tok / 1000.0) if mean_tok > 0 else float("nan"),
    }
    if baseline is not None:
        summary.update(compare_to_baseline(summary, baseline))
    return summary


def budget_sweep(records: Sequence[Mapping[str, Any]], cutoffs: Sequence[int]) -> list[dict[str, Any]]:
    """Accuracy vs token cutoff from one set of long samples, without generating again.

    At cutoff C a sample counts correct iff it is correct and ``num_tokens <= C``. This is conservative: an answer
    already written before C in a sample that kept going counts wrong. If a record carries
    ``cutoff_correct`` ({str(C): bool}, from re-grading the prefix of C tokens) that value is used instead.
    Per cutoff: ``cutoff``, ``accuracy`` / ``accuracy_stderr`` (avg@k over problems), ``finished_rate`` (fraction
    with ``num_tokens <= C`` and ``finish_reason == "stop"``) and ``mean_tokens_capped`` (mean of min(num_tokens, C)).
    """
    if not records:
        raise ValueError("budget_sweep needs at least one record")
    groups = group_by_problem(records)
    tokens = np.asarray([int(r["num_tokens"]) for r in records], dtype=np.float64)
    finished = np.asarray([r["finish_reason"] == "stop" for r in records])
    out = []
    for cutoff in cutoffs:
        if cutoff < 1:
            raise ValueError(f"cutoffs must be positive, got {cutoff}")
        correct = {pid: [_correct_at(r, cutoff) for r in recs] for pid, recs in groups.items()}
        acc, stderr = avg_at_k(correct)
        out.append(
            {
                "cutoff": int(cutoff),
                "accuracy": acc,
                "accuracy_stderr": stderr,
                "finished_rate": float(np.mean(finished & (tokens <= cutoff))),
                "mean_tokens_capped": float(np.minimum(tokens, cutoff).mean()),
            }
        )
    return out


def _correct_at(record: Mapping[str, Any], cutoff: int) -> bool:
    """Correctness within a cutoff: the precomputed prefix grade when present, else correct and finished by then."""
    pre = record.get("cutoff_correct")
    if pre is not None and str(cutoff) in pre:
        return bool(pre[str(cutoff)])
    return bool(record["correct"]) and int(record["num_tokens"]) <= cutoff


def noisy_warning(benchmark: str, k: int) -> str | None:
    """Warning text for AIME-style benchmarks (30 problems) evaluated with fewer than 16 samples per problem."""
    if not benchmark.lower().startswith("aime") or k >= NOISY_MIN_SAMPLES:
        return None
    return (
        f"{benchmark}: accuracy from k={k} samples per problem is noisy: AIME has 30 problems, so one problem is "
        f"3.3 points; quote the standard error and prefer k >= {NOISY_MIN_SAMPLES}."
    )
