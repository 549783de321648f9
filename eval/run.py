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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from eval.config import USER_ERRORS, EvalConfig, EvalInputError, build_parser, check_resume, takes_columns
from eval.efficiency import budget_adherence, budget_auc, problem_difficulty, tokens_by_difficulty
from eval.metrics import budget_sweep, noisy_warning, summarize
from eval.overthinking import mark_first_correct, overthinking_stats
from eval.progress import SampleProgress
from eval.report import (
    difficulty_table,
    efficiency_table,
    markdown_table,
    plot_accuracy_vs_tokens,
    plot_budget_sweep,
)
from eval.samples import (
    append_samples,
    make_record,
    nan_to_none,
    opens_think,
    read_samples,
    regrade_prefixes,
    slug,
    write_atomic,
)
from rollouts.data import Problem, load_problems
from rollouts.engines import resolve_engine_name
from rollouts.templates import encode_prompt, render
from rollouts.threads import configure_threads
from rollouts.types import Request, SamplingParams

__all__ = ["EvalConfig", "EvalInputError", "build_parser", "evaluate", "main", "prepare", "run_cli"]

logger = logging.getLogger("brevity.eval")


@dataclass
class Plan:
    """What the checks before generation produced: the problems, their prompt token ids and the model."""

    problems: dict[str, list[Problem]]
    prompts: dict[str, dict[str, list[int]]]  # benchmark -> problem id -> prompt token ids
    think_open: dict[str, bool]  # benchmark -> its prompts end inside a think block (the template opened it)
    model_path: str
    engine: str
    tokenizer: Any
    difficulty: dict[str, dict[str, Any]] = field(default_factory=dict)  # benchmark -> problem id -> its value


def prepare(config: EvalConfig) -> Plan:
    """Everything that can fail cheaply, before a model is loaded: arguments, data, model, prompts, engine."""
    config.validate()
    engine = resolve_engine_name(config.engine)  # vllm not installed -> ModuleNotFoundError naming the extra
    if engine != "transformers" and config.engine_mode != "auto":
        raise ValueError(
            f"--engine-mode {config.engine_mode} needs the transformers engine; this machine resolves {engine}"
        )
    problems = {}
    for bench in config.benchmarks:
        columns = config.columns if takes_columns(bench) else None
        rows = load_problems(bench, size=config.size, seed=config.seed, columns=columns)
        if not rows:
            raise ValueError(f"benchmark {bench!r} has no rows")
        if any(p.answer is None for p in rows):
            raise ValueError(f"benchmark {bench!r} has problems without a reference answer; it cannot be graded")
        if len({p.id for p in rows}) < len(rows):
            raise ValueError(f"benchmark {bench!r} has duplicate problem ids; map a unique column with --columns id=")
        if (warning := noisy_warning(bench, config.k)) is not None:
            logger.warning(warning)
        problems[bench] = rows
    difficulty = {bench: _difficulty(bench, rows, config.difficulty_column) for bench, rows in problems.items()}
    from rollouts.models import load_config, load_tokenizer, resolve_model

    model_path = resolve_model(config.model)  # unknown alias / missing path -> error naming it
    context = getattr(load_config(model_path).get_text_config(), "max_position_embeddings", None)
    tokenizer = load_tokenizer(model_path)
    prompts: dict[str, dict[str, list[int]]] = {}
    for bench, rows in problems.items():
        prompts[bench] = {}
        for p in rows:
            # a raw template (think_raw, budget_raw) is a plain string: no chat template around it
            ids = prompts[bench][p.id] = encode_prompt(
                tokenizer, render(config.template, p.prompt, budget=config.budget)
            )
            if context and len(ids) + config.max_tokens > context:
                raise ValueError(
                    f"{bench} problem {p.id}: prompt ({len(ids)} tokens) + --max-tokens {config.max_tokens} exceeds "
                    f"the model's context of {context} tokens"
                )
    think_open = {bench: opens_think(tokenizer, next(iter(ids.values()))) for bench, ids in prompts.items()}
    return Plan(
        problems, prompts, think_open, model_path, engine, tokenizer, {b: d for b, d in difficulty.items() if d}
    )


def _difficulty(bench: str, rows: list[Problem], column: str | None) -> dict[str, Any]:
    """Problem id -> its value in `column` ({} without a column); a problem without one fails before generation."""
    if column is None:
        return {}
    values = {p.id: problem_difficulty(p.metadata, column) for p in rows}
    if missing := [pid for pid, v in values.items() if v is None]:
        raise ValueError(f"--difficulty-column {column!r}: benchmark {bench!r} has no such value for {missing[:3]}")
    return values


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
    return _summarize(config, plan, baseline, out)


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


def _summarize(config: EvalConfig, plan: Plan, baseline: dict[str, Any] | None, out: Path) -> dict[str, Any]:
    label = config.label or Path(config.model).name
    summaries, sweeps, warnings = {}, {}, []
    for bench, rows in plan.problems.items():
        position = {p.id: n for n, p in enumerate(rows)}
        records = [
            r
            for r in read_samples(out / "samples" / f"{slug(bench)}.jsonl")
            if r["problem_id"] in position and r["sample_index"] < config.k
        ]
        records.sort(key=lambda r: (position[r["problem_id"]], r["sample_index"]))  # the file is in finish order
        if len(records) != len(rows) * config.k:
            raise RuntimeError(f"{bench}: {len(records)} samples on disk, expected {len(rows) * config.k}")
        base = (baseline or {}).get("benchmarks", {}).get(bench)
        s = summaries[bench] = summarize(records, k=config.k, baseline=base)
        if config.overthinking:  # only correct samples are searched
            mark_first_correct(records, plan.tokenizer, config.overthinking_format or config.answer_format)
            s["overthinking"] = overthinking_stats(records)
        s["tokens_by_difficulty"] = tokens_by_difficulty(
            records, plan.difficulty.get(bench), name=config.difficulty_column or "column"
        )
        if config.budget_cutoffs:
            if config.regrade_prefixes:
                regrade_prefixes(records, config.budget_cutoffs, plan.tokenizer, config.answer_format)
            sweeps[bench] = s["budget_sweep"] = budget_sweep(records, sorted(config.budget_cutoffs))
            s["budget_auc"] = budget_auc(sweeps[bench])
        if config.budget is not None:  # the prompt asked for `budget` tokens
            s["budget_adherence"] = budget_adherence(records, config.budget)
        if (w := noisy_warning(bench, config.k)) is not None:
            warnings.append(w)
    summary: dict[str, Any] = {"model": config.model, "label": label, "engine": plan.engine, "benchmarks": summaries}
    summary["config"] = asdict(config)
    if sweeps:
        method = "regraded_prefix" if config.regrade_prefixes else "finished_within"
        summary["budget_sweep"] = {"cutoffs": sorted(config.budget_cutoffs), "method": method}
    if warnings:
        summary["warnings"] = warnings
    summary = nan_to_none(summary)  # strict JSON: a statistic over no samples is null, not NaN
    write_atomic(out / "summary.json", json.dumps(summary, indent=2, allow_nan=False) + "\n")
    labelled = {f"{label}/{slug(b) if takes_columns(b) else b}": s for b, s in summaries.items()}
    tables = markdown_table(labelled) + efficiency_table(labelled) + difficulty_table(labelled) + _sweep_table(sweeps)
    write_atomic(out / "summary.md", tables + "".join(f"\n> {w}\n" for w in warnings))
    rows = [(label, slug(b) if takes_columns(b) else b, s) for b, s in summaries.items()]
    plot_accuracy_vs_tokens(rows, out / "accuracy_vs_tokens.png", title=f"{label}: accuracy vs mean tokens")
    if sweeps:
        plot_budget_sweep(sweeps, out / "budget_sweep.png")
    return summary


def _sweep_table(sweeps: dict[str, list[dict[str, Any]]]) -> str:
    """Markdown: accuracy (%) per benchmark at each token cutoff."""
    if not sweeps:
        return ""
    cutoffs = [p["cutoff"] for p in next(iter(sweeps.values()))]
    lines = ["", "Accuracy (%) within a token cutoff:", "", "| benchmark | " + " | ".join(map(str, cutoffs)) + " |"]
    lines.append("|---|" + "---:|" * len(cutoffs))
    lines += [f"| {b} | " + " | ".join(f"{100 * p['accuracy']:.1f}" for p in c) + " |" for b, c in sweeps.items()]
    return "\n".join(lines) + "\n"


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
