"""`python -m eval.run` (also `brevity eval`): accuracy and token cost of a model on benchmarks.

For each benchmark it samples k completions per problem, grades them with the shared grader (`rewards.grade`),
appends one JSON line per sample to `<out>/samples/<benchmark>.jsonl` as soon as the sample finishes (the
transformers engine reports each one mid-batch; other engines at the end of each call, whose size starts at 8 and
doubles up to `--batch-size` while calls take under 10 s; lines are in finish order and summaries sort them), and writes `summary.json`, `summary.md` and `accuracy_vs_tokens.png`. Re-running into the same folder resumes: samples already
on disk are not generated again, and a half-written last line (a crash mid-write) is dropped and redone. Re-running
a finished folder with `--budget-cutoffs` adds an accuracy-vs-token-cutoff sweep without generating again.
Bad input (benchmark, model, k, columns, template budget) fails before the model is loaded.
"""

from __future__ import annotations

import inspect
import json
import logging
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from eval.config import USER_ERRORS, EvalConfig, EvalInputError, build_parser, check_resume
from eval.plan import Plan, prepare
from eval.progress import SampleProgress
from eval.samples import append_samples, make_record, read_samples, slug
from eval.summary import write_summary
from rollouts.data import Problem
from rollouts.threads import configure_threads
from rollouts.types import Request, SamplingParams

__all__ = ["EvalConfig", "EvalInputError", "build_parser", "evaluate", "main", "prepare", "run_cli"]

logger = logging.getLogger("brevity.eval")


def _sample_seed(seed: int, problem_id: str, index: int) -> int:
    """A per-sample seed that does not depend on batching, so a resumed run draws the same samples."""
    return (seed * 1_000_003 + zlib.crc32(f"{problem_id}:{index}".encode())) % (2**31)


FIRST_BATCH = 8  # engines that return whole batches only: the first call's size
GROW_BELOW_S = 10.0  # ... doubled (up to --batch-size) after each call that took less than this


def _batches(items: list[Any], size: int, grow: bool) -> Iterator[list[Any]]:
    """Chunks of at most `size` items. With `grow` (an engine that hands back a batch only when all of it is done),
    start at FIRST_BATCH and double while a call takes under GROW_BELOW_S: an interruption then loses at most about
    that long of samples on a slow machine, and a fast one soon runs full batches."""
    pos, n = 0, min(size, FIRST_BATCH) if grow else size
    while pos < len(items):
        start = time.perf_counter()
        yield items[pos : pos + n]  # the caller generates and saves this chunk before the next one is asked for
        pos += n
        if grow and time.perf_counter() - start < GROW_BELOW_S:
            n = min(size, 2 * n)


def evaluate(config: EvalConfig) -> dict[str, Any]:
    """Run (or resume) an evaluation and write its files; returns the summary dict."""
    out = Path(config.out)
    try:
        plan = prepare(config)
        baseline = json.loads((Path(config.baseline) / "summary.json").read_text()) if config.baseline else None
        check_resume(out, config)
    except USER_ERRORS as e:
        raise EvalInputError(str(e)) from e
    todo = {}
    for bench, rows in plan.problems.items():
        done = {(r["problem_id"], r["sample_index"]) for r in read_samples(out / "samples" / f"{slug(bench)}.jsonl")}
        todo[bench] = [(p, i) for p in rows for i in range(config.k) if (p.id, i) not in done]
    if any(todo.values()):
        _generate(config, plan, todo, out)
    return write_summary(config, plan, baseline, out)


def _generate(config: EvalConfig, plan: Plan, todo: dict[str, list[tuple[Problem, int]]], out: Path) -> None:
    from rollouts.engines import make_engine  # looked up at call time: tests wrap the engine

    mode = {"mode": config.engine_mode} if plan.engine == "transformers" else {}
    engine = make_engine(plan.engine, plan.model_path, seed=config.seed, **mode)
    streams = _streams(engine)
    with SampleProgress(sum(len(v) for v in todo.values())) as progress:
        for bench, items in todo.items():
            if not items:
                continue
            progress.benchmark(bench, len(items))
            for chunk in _batches(items, config.batch_size, grow=not streams):
                requests = [
                    Request(
                        plan.prompts[bench][p.id],
                        SamplingParams(
                            temperature=config.temperature,
                            top_p=config.top_p,
                            max_tokens=config.max_tokens,
                            seed=_sample_seed(config.seed, p.id, i),
                        ),
                    )
                    for p, i in chunk
                ]
                _generate_chunk(
                    engine, requests, chunk, bench, out / "samples" / f"{slug(bench)}.jsonl", plan, config, progress
                )


def _generate_chunk(
    engine: Any,
    requests: list[Request],
    chunk: list[tuple[Problem, int]],
    bench: str,
    path: Path,
    plan: Plan,
    config: EvalConfig,
    progress: SampleProgress,
) -> None:
    """Generate one batch, grading and appending each sample as it finishes: an interruption loses only samples
    still being generated."""
    saved: set[int] = set()

    def record(index: int, completion: Any) -> dict[str, Any]:
        (p, i), think_open = chunk[index], plan.think_open[bench]
        saved.add(index)
        return make_record(bench, p, i, completion, plan.tokenizer, config.answer_format, think_open)

    def save(index: int, completion: Any) -> None:
        """One finished sample: written at once (kept if the process dies), synced to disk with the batch."""
        rec = record(index, completion)
        append_samples(path, [rec], fsync=False)
        progress.advance(1, rec["num_tokens"])

    if _streams(engine):
        outputs = engine.generate(requests, on_finish=save)
    else:  # this engine hands back the whole batch at once
        outputs = engine.generate(requests)
    rest = [record(index, completion) for index, (completion,) in enumerate(outputs) if index not in saved]
    append_samples(path, rest)  # also syncs the samples `save` wrote
    if rest:
        progress.advance(len(rest), sum(r["num_tokens"] for r in rest))


def _streams(engine: Any) -> bool:
    """Whether `engine.generate` takes `on_finish` (each sample as soon as it finishes; the transformers engine)."""
    try:
        return "on_finish" in inspect.signature(engine.generate).parameters
    except (TypeError, ValueError):
        return False


def run_cli(job: Callable[[], Any], out: str) -> int:
    """Run an evaluation job for a command line: bad input exits 2 with its message, Ctrl-C exits 130."""
    try:
        job()
    except EvalInputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        kept = sum(len(read_samples(path)) for path in sorted((Path(out) / "samples").glob("*.jsonl")))
        print(
            f"\ninterrupted: {kept} finished sample{'s' * (kept != 1)} kept in {out}/samples; run the same command "
            "again to resume (kept samples are not generated again)",
            file=sys.stderr,
        )
        return 130
    return 0


def main(argv: list[str] | None = None) -> int:
    config = EvalConfig(**vars(build_parser().parse_args(argv)))
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    configure_threads()
    if config.budgets:  # one evaluation per prompt budget, side by side
        from eval.budgets import evaluate_budgets

        code = run_cli(lambda: evaluate_budgets(config, evaluate), config.out)
        if code == 0:
            print((Path(config.out) / "budgets.md").read_text())
            print(f"wrote {config.out}/budgets.json, budgets.md and budget_<B>/ (one evaluation per budget)")
        return code
    code = run_cli(lambda: evaluate(config), config.out)
    if code == 0:
        print((Path(config.out) / "summary.md").read_text())
        print(f"wrote {config.out}/summary.json, summary.md, accuracy_vs_tokens.png and samples/")
    return code


if __name__ == "__main__":
    sys.exit(main())
