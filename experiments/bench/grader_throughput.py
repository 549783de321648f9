"""CPU grader throughput: graded samples/s of `rewards.correctness.Correctness` (the shared grader), main thread vs
worker pools; prints JSON.

Workloads (every sample distinct, so `rewards.grading`'s LRU caches never answer; they are cleared between runs):
- "gsm8k": the offline GSM8K test set's reference solutions as completions, the final "#### N" rewritten as
  "\\boxed{N}"; every other sample gets a wrong answer (N + 1). Numbers never reach sympy (exact fractions).
- "symbolic": synthetic MATH-style answers with random coefficients, each written in an equivalent but different form
  (a\\sqrt{b} vs \\sqrt{a^2 b}, (x+a)^2 vs its expansion, \\frac{a\\pi}{b} vs a\\pi/b, 1/a + 1/b vs one
  fraction, x = roots vs a set) inside
  a few hundred characters of text, half of them wrong: every sample goes to math-verify in the grading helper
  subprocess (`rewards/grading.py`).
- "mixed": 90% gsm8k + 10% symbolic, shuffled (a math RL batch: mostly numeric answers).

Runs per workload:
- "main": every sample through `rewards.grading.grade` on the main thread, as the `Correctness` reward does
  (`Correctness.__call__` -> `grade_all` -> `grade` per completion);
- "threads_N": the samples split into N chunks graded by a `ThreadPoolExecutor` (the grader serialises its sympy
  helper on one lock, so threads help only the Python parsing, under the GIL);
- "processes_N": N chunks on a `ProcessPoolExecutor` (each worker starts its own grading helper on first use); the
  pool is created and warmed (one sample per worker, helper started) before the timed map. `pool_start_s` is that
  set-up.
Each run reports samples/s, the correct count (must equal the expected count: the pools grade the same samples as
the main thread) and timed-out checks.

CPU:  python experiments/bench/grader_throughput.py --out experiments/bench/results/cpu/grader_throughput.json
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

FILLER = (
    "Let me work through this step by step. First I restate the problem and name the unknowns, then I set up the "
    "relations between them and simplify. Checking the result against the conditions, it holds. "
)


def gsm8k_samples(n: int, seed: int) -> list[tuple[str, str, bool]]:
    """(completion, reference, expected correct) from GSM8K's reference solutions, cycled to n rows."""
    from rollouts.data import load_problems

    problems = load_problems("gsm8k", size=min(n, 1319))
    out = []
    for i in range(n):
        p = problems[i % len(problems)]
        body = p.metadata["solution"].rsplit("####", 1)[0].strip()
        right = i % 2 == 0
        answer = p.answer if right else str(int(float(p.answer.replace(",", ""))) + 1)
        out.append((f"[{i}] {body}\nThe answer is \\boxed{{{answer}}}.", p.answer, right))
    random.Random(seed).shuffle(out)
    return out


def symbolic_pair(rng: random.Random) -> tuple[str, str]:
    """(reference, an equivalent prediction written differently), random coefficients."""
    kind = rng.randrange(5)
    a, b = rng.randint(2, 999), rng.choice([2, 3, 5, 6, 7, 10, 11, 13, 14, 15, 17, 19])
    if kind == 0:
        return f"{a}\\sqrt{{{b}}}", f"\\sqrt{{{a * a * b}}}"
    if kind == 1:
        return f"(x+{a})^2", f"x^2+{2 * a}x+{a * a}"
    if kind == 2:
        c = rng.randint(a + 1, a + 99)
        return f"\\frac{{{a}\\pi}}{{{c}}}", f"{a}\\pi/{c}"
    if kind == 3:
        return f"\\frac{{1}}{{{a}}}+\\frac{{1}}{{{b}}}", f"\\frac{{{a + b}}}{{{a * b}}}"
    return f"x={a} \\text{{ or }} x=-{b}", f"x \\in \\{{-{b}, {a}\\}}"


def symbolic_samples(n: int, seed: int) -> list[tuple[str, str, bool]]:
    """n distinct (completion, reference, expected correct); odd rows answer another pair's prediction + 1."""
    rng = random.Random(seed)
    out: list[tuple[str, str, bool]] = []
    seen: set[tuple[str, str]] = set()
    while len(out) < n:
        gold, pred = symbolic_pair(rng)
        right = len(out) % 2 == 0
        if not right:
            pred = symbolic_pair(rng)[1] + "+1"
        if (gold, pred) in seen:
            continue
        seen.add((gold, pred))
        out.append((f"[{len(out)}] {FILLER}So the answer is $\\boxed{{{pred}}}$.", gold, right))
    return out


def clear_caches() -> None:
    import functools

    from rewards import grading

    for value in vars(grading).values():
        if isinstance(value, functools._lru_cache_wrapper):
            value.cache_clear()


def grade_chunk(chunk: list[tuple[str, str]]) -> tuple[int, int]:
    """(correct, timed out) of a chunk (a pool worker runs this): `grading.grade` per sample, as
    `Correctness.__call__` -> `grade_all` does (it also returns the time-out flag the reward drops)."""
    from rewards.grading import grade

    grades = [grade(text, [ref], timeout=5.0, answer_format="boxed") for text, ref in chunk]
    return sum(g.correct for g in grades), sum(g.timed_out for g in grades)


def warm_worker(_: int) -> int:
    """Start this process's grading helper and run one check of each symbolic kind (math-verify's and sympy's lazy
    imports), so the timed map pays no start-up; returns how many were equal (5)."""
    from rewards.grading import is_equivalent

    rng = random.Random(12345)
    pairs = {}
    while len(pairs) < 5:
        gold, pred = symbolic_pair(rng)
        pairs.setdefault(gold.split("{")[0][:6], (gold, pred))
    return sum(is_equivalent(pred, gold) for gold, pred in pairs.values())


def chunks(samples: list[tuple[str, str, bool]], parts: int) -> list[list[tuple[str, str]]]:
    size = -(-len(samples) // parts)
    return [[(c, r) for c, r, _ in samples[i : i + size]] for i in range(0, len(samples), size)]


def run(samples: list[tuple[str, str, bool]], how: str, workers: int) -> dict[str, Any]:
    clear_caches()
    expected = sum(right for _, _, right in samples)
    pool_start = 0.0
    if how == "main":
        warm_worker(0)  # the main process's helper is started outside the timing too
        start = time.perf_counter()
        results = [grade_chunk(chunks(samples, 1)[0])]
        wall = time.perf_counter() - start
    else:
        parts = chunks(samples, workers * 4)
        start = time.perf_counter()
        pool_cls = ThreadPoolExecutor if how == "threads" else ProcessPoolExecutor
        with pool_cls(max_workers=workers) as pool:
            list(pool.map(warm_worker, range(workers)))
            pool_start = time.perf_counter() - start
            start = time.perf_counter()
            results = list(pool.map(grade_chunk, parts))
            wall = time.perf_counter() - start
    correct = sum(c for c, _ in results)
    return {
        "samples": len(samples), "wall_s": wall, "samples_per_s": len(samples) / wall, "correct": correct,
        "expected_correct": expected, "timed_out": sum(t for _, t in results), "pool_start_s": pool_start,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gsm8k", type=int, default=4000, help="samples of the gsm8k workload")
    parser.add_argument("--symbolic", type=int, default=300, help="samples of the symbolic workload")
    parser.add_argument("--mixed", type=int, default=2000, help="samples of the mixed workload")
    parser.add_argument("--workers", type=int, nargs="+", default=[2], help="pool sizes")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per (workload, run); the median is kept")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    workloads = {
        "gsm8k": gsm8k_samples(args.gsm8k, args.seed),
        "symbolic": symbolic_samples(args.symbolic, args.seed),
    }
    n_sym = args.mixed // 10
    mixed = gsm8k_samples(args.mixed - n_sym, args.seed + 1) + symbolic_samples(n_sym, args.seed + 1)
    random.Random(args.seed).shuffle(mixed)
    workloads["mixed"] = mixed
    report: dict[str, Any] = {
        "benchmark": "grader_throughput", **common.environment("cpu"), "commit": common.commit(),
        "command": " ".join(["python", *sys.argv]), "cpu_count": os.cpu_count(),
        "load_avg_at_start": os.getloadavg(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "repeats": args.repeats, "results": {},
    }  # fmt: skip
    runs = [("main", 1)] + [(how, w) for w in args.workers for how in ("threads", "processes")]
    for name, samples in workloads.items():
        if not samples:
            continue
        for how, workers in runs:
            key = how if how == "main" else f"{how}_{workers}"
            reps = [run(samples, how, workers) for _ in range(args.repeats)]
            best = sorted(reps, key=lambda r: r["wall_s"])[len(reps) // 2]
            best["samples_per_s_runs"] = [r["samples_per_s"] for r in reps]
            best["samples_per_s_median"] = statistics.median(best["samples_per_s_runs"])
            report["results"].setdefault(name, {})[key] = best
            common.log(
                f"{name} {key}: {best['samples_per_s_median']:.0f} samples/s "
                f"({best['correct']}/{best['expected_correct']} correct, {best['timed_out']} timed out)"
            )
            common.save(report, args.out)
    report["load_avg_at_end"] = os.getloadavg()
    common.emit(report, args.out)


if __name__ == "__main__":
    main()
