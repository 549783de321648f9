"""`python -m eval.run` (also `brevity eval`): accuracy and token cost of a model on benchmarks.

For each benchmark it samples k completions per problem, grades them with the shared grader (`rewards.grade`),
appends one JSON line per sample to `<out>/samples/<benchmark>.jsonl` as soon as a batch finishes, and writes
`summary.json`, `summary.md` and `accuracy_vs_tokens.png`. Re-running into the same folder resumes: samples already
on disk are not generated again, and a half-written last line (a crash mid-write) is dropped and redone.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from eval.metrics import budget_sweep, noisy_warning, summarize
from eval.report import markdown_table, plot_accuracy_vs_tokens, plot_budget_sweep
from rewards.grading import grade
from rollouts.data import Problem, load_problems
from rollouts.engines import ENGINES
from rollouts.models import DEFAULT_MODEL
from rollouts.templates import TEMPLATES, render
from rollouts.types import Request, SamplingParams

logger = logging.getLogger("brevity.eval")

# Settings that change what a sample is: resuming into a folder made with other values would mix two runs.
GENERATION_KEYS = ("model", "max_tokens", "temperature", "top_p", "template", "seed", "answer_format")


@dataclass
class EvalConfig:
    model: str = DEFAULT_MODEL
    benchmarks: list[str] = field(default_factory=lambda: ["gsm8k"])
    out: str = "runs/eval"
    k: int = 1
    size: int | None = None
    max_tokens: int = 512
    temperature: float = 0.0
    top_p: float = 1.0
    template: str = "boxed"
    answer_format: str = "boxed"
    engine: str = "auto"
    seed: int = 0
    batch_size: int = 64
    baseline: str | None = None
    budget_cutoffs: list[int] = field(default_factory=list)
    label: str | None = None

    def validate(self) -> None:
        """Fail on bad arguments before anything expensive happens."""
        if self.k < 1:
            raise ValueError(f"--k must be >= 1 (samples per problem), got {self.k}")
        if self.max_tokens < 1:
            raise ValueError(f"--max-tokens must be >= 1, got {self.max_tokens}")
        if self.batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.template not in TEMPLATES:
            raise ValueError(f"unknown --template {self.template!r}; choose one of {sorted(TEMPLATES)}")
        if self.engine not in ENGINES:
            raise ValueError(f"unknown --engine {self.engine!r}; choose one of {list(ENGINES)}")
        if self.k > 1 and self.temperature == 0.0:
            logger.warning("k=%d samples with temperature 0 are identical greedy decodes", self.k)
        if self.baseline is not None and not (Path(self.baseline) / "summary.json").is_file():
            raise FileNotFoundError(f"--baseline {self.baseline}: no summary.json there")
        SamplingParams(temperature=self.temperature, top_p=self.top_p, max_tokens=self.max_tokens)


def slug(benchmark: str) -> str:
    """A file-name-safe form of a benchmark spec (`rg:chain_sum?max_terms=2` -> `rg_chain_sum_max_terms_2`)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(benchmark).name if os.sep in benchmark else benchmark).strip("_")


def read_samples(path: Path) -> list[dict[str, Any]]:
    """Finished samples of a JSONL file; a torn last line (crash mid-write) is dropped, and the file is trimmed."""
    if not path.is_file():
        return []
    records, good_bytes = [], 0
    with open(path, "rb") as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                break
            good_bytes += len(line)
    if good_bytes != path.stat().st_size:
        logger.warning("%s: dropping a partially written line", path)
        with open(path, "r+b") as f:
            f.truncate(good_bytes)
    return records


def think_token_count(ids: Sequence[int], close_ids: Sequence[int], text: str) -> int | None:
    """Tokens before the last `</think>` (token level); all tokens if a think block opens and never closes."""
    n = len(close_ids)
    if n:
        for start in range(len(ids) - n, -1, -1):
            if list(ids[start : start + n]) == list(close_ids):
                return start
    return len(ids) if "<think>" in text else None


def _sample_seed(seed: int, problem_id: str, index: int) -> int:
    """A per-sample seed that does not depend on batching, so a resumed run draws the same samples."""
    return (seed * 1_000_003 + zlib.crc32(f"{problem_id}:{index}".encode())) % (2**31)


def _check_resume(out: Path, config: EvalConfig) -> None:
    path = out / "config.json"
    if path.is_file():
        before = json.loads(path.read_text())
        changed = [k for k in GENERATION_KEYS if before.get(k) != getattr(config, k)]
        if changed:
            diff = ", ".join(f"{k}: {before.get(k)!r} -> {getattr(config, k)!r}" for k in changed)
            raise ValueError(f"{out} holds samples made with other settings ({diff}); use another --out")
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(config), indent=2) + "\n")


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def evaluate(config: EvalConfig) -> dict[str, Any]:
    """Run (or resume) an evaluation and write its files; returns the summary dict."""
    config.validate()
    out = Path(config.out)
    # Everything that can fail cheaply fails here, before the model is loaded.
    problems = {b: load_problems(b, size=config.size, seed=config.seed) for b in config.benchmarks}
    for bench, rows in problems.items():
        if not rows:
            raise ValueError(f"benchmark {bench!r} has no rows")
        if any(p.answer is None for p in rows):
            raise ValueError(f"benchmark {bench!r} has problems without a reference answer; it cannot be graded")
    baseline = json.loads((Path(config.baseline) / "summary.json").read_text()) if config.baseline else None
    from rollouts.models import resolve_model

    model_path = resolve_model(config.model)
    _check_resume(out, config)

    todo = {}
    for bench, rows in problems.items():
        done = {(r["problem_id"], r["sample_index"]) for r in read_samples(out / "samples" / f"{slug(bench)}.jsonl")}
        todo[bench] = [(p, i) for p in rows for i in range(config.k) if (p.id, i) not in done]
    total_todo = sum(len(v) for v in todo.values())
    if total_todo:
        _generate(config, model_path, todo, out)
    return _summarize(config, problems, baseline, out)


def _generate(config: EvalConfig, model_path: str, todo: dict[str, list[tuple[Problem, int]]], out: Path) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from rollouts.engines import make_engine
    from rollouts.models import load_tokenizer

    tokenizer = load_tokenizer(model_path)
    engine = make_engine(config.engine, model_path)
    close_ids = tokenizer.encode("</think>", add_special_tokens=False)
    prompt_cache: dict[str, list[int]] = {}

    def prompt_ids(problem: Problem) -> list[int]:
        if problem.id not in prompt_cache:
            messages = render(config.template, problem.prompt)
            prompt_cache[problem.id] = list(
                tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)[
                    "input_ids"
                ]
            )
        return prompt_cache[problem.id]

    total = sum(len(v) for v in todo.values())
    generated_tokens, start = 0, time.perf_counter()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[tps]}"))
    with Progress(*columns, TimeRemainingColumn(), disable=not sys.stderr.isatty() and "CI" in os.environ) as bar:
        task = bar.add_task("sampling", total=total, tps="")
        for bench, items in todo.items():
            path = out / "samples" / f"{slug(bench)}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            bar.update(task, description=bench)
            for chunk in _chunks(items, config.batch_size):
                requests = [
                    Request(
                        prompt_ids(p),
                        SamplingParams(
                            temperature=config.temperature,
                            top_p=config.top_p,
                            max_tokens=config.max_tokens,
                            seed=_sample_seed(config.seed, p.id, i),
                        ),
                    )
                    for p, i in chunk
                ]
                outputs = engine.generate(requests)
                lines = []
                for (problem, index), (completion,) in zip(chunk, outputs):
                    text = tokenizer.decode(completion.token_ids, skip_special_tokens=True)
                    g = grade(text, problem.answer or "", answer_format=config.answer_format)
                    record = {
                        "benchmark": bench,
                        "problem_id": problem.id,
                        "sample_index": index,
                        "completion": text,
                        "num_tokens": len(completion.token_ids),
                        "num_think_tokens": think_token_count(completion.token_ids, close_ids, text),
                        "answer": g.answer,
                        "reference": problem.answer,
                        "correct": g.correct,
                        "finish_reason": completion.finish_reason,
                    }
                    lines.append(json.dumps(record) + "\n")
                    generated_tokens += record["num_tokens"]
                with open(path, "a") as f:  # one write per batch, flushed: a crash loses at most this batch
                    f.writelines(lines)
                    f.flush()
                    os.fsync(f.fileno())
                tps = generated_tokens / max(time.perf_counter() - start, 1e-9)
                bar.update(task, advance=len(chunk), tps=f"{tps:,.0f} tok/s")


def _summarize(
    config: EvalConfig, problems: dict[str, list[Problem]], baseline: dict[str, Any] | None, out: Path
) -> dict[str, Any]:
    label = config.label or Path(config.model).name
    summaries, sweeps, warnings = {}, {}, []
    for bench, rows in problems.items():
        wanted = {p.id for p in rows}
        records = [
            r
            for r in read_samples(out / "samples" / f"{slug(bench)}.jsonl")
            if r["problem_id"] in wanted and r["sample_index"] < config.k
        ]
        base = (baseline or {}).get("benchmarks", {}).get(bench)
        summaries[bench] = summarize(records, k=config.k, baseline=base)
        if config.budget_cutoffs:
            sweeps[bench] = budget_sweep(records, config.budget_cutoffs)
            summaries[bench]["budget_sweep"] = sweeps[bench]
        if (w := noisy_warning(bench, config.k)) is not None:
            warnings.append(w)
    summary = {"model": config.model, "label": label, "benchmarks": summaries, "config": asdict(config)}
    if warnings:
        summary["warnings"] = warnings
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    table = markdown_table({f"{label}/{b}": s for b, s in summaries.items()})
    (out / "summary.md").write_text(table + "\n" + "".join(f"\n> {w}\n" for w in warnings))
    points = [(b, s["tokens"]["mean"], s["accuracy"]) for b, s in summaries.items()]
    plot_accuracy_vs_tokens(points, out / "accuracy_vs_tokens.png", title=f"{label}: accuracy vs mean tokens")
    if sweeps:
        plot_budget_sweep(sweeps, out / "budget_sweep.png")
    return summary


def build_parser() -> argparse.ArgumentParser:
    d = EvalConfig()
    p = argparse.ArgumentParser(prog="brevity eval", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=d.model, help="local path, hub id or alias (default: %(default)s)")
    p.add_argument("--benchmarks", nargs="+", default=d.benchmarks, help="gsm8k aime24 aime25 math500 amc23 rg:<task> FILE")
    p.add_argument("--out", default=d.out, help="output folder; re-running into it resumes")
    p.add_argument("--k", type=int, default=d.k, help="samples per problem")
    p.add_argument("--size", type=int, default=d.size, help="first N problems of each benchmark (rg: N generated)")
    p.add_argument("--max-tokens", type=int, default=d.max_tokens)
    p.add_argument("--temperature", type=float, default=d.temperature)
    p.add_argument("--top-p", type=float, default=d.top_p)
    p.add_argument("--template", default=d.template, choices=sorted(TEMPLATES))
    p.add_argument("--answer-format", default=d.answer_format, choices=["boxed", "answer_tag", "any"])
    p.add_argument("--engine", default=d.engine, choices=list(ENGINES))
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="requests per engine call")
    p.add_argument("--baseline", default=None, help="a finished eval folder: adds compression ratio and Δaccuracy")
    p.add_argument("--budget-cutoffs", type=int, nargs="*", default=[], help="token cutoffs for a budget sweep")
    p.add_argument("--label", default=None, help="run name in tables and plots")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = EvalConfig(**{k.replace("-", "_"): v for k, v in vars(args).items()})
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        summary = evaluate(config)
    except (ValueError, FileNotFoundError, ModuleNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print((Path(config.out) / "summary.md").read_text())
    print(f"wrote {config.out}/summary.json, summary.md, accuracy_vs_tokens.png and samples/")
    return 0 if summary else 1


if __name__ == "__main__":
    sys.exit(main())
