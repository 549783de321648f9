"""An evaluation's summary from the samples on disk: `summary.json` (strict JSON), `summary.md` and the plots."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from eval.config import EvalConfig, takes_columns
from eval.efficiency import budget_adherence, budget_auc, tokens_by_difficulty
from eval.metrics import budget_sweep, noisy_warning, summarize
from eval.overthinking import mark_first_correct, overthinking_stats
from eval.plan import Plan
from eval.report import (
    difficulty_table,
    efficiency_table,
    markdown_table,
    plot_accuracy_vs_tokens,
    plot_budget_sweep,
)
from eval.samples import nan_to_none, read_samples, regrade_prefixes, slug, write_atomic


def write_summary(config: EvalConfig, plan: Plan, baseline: dict[str, Any] | None, out: Path) -> dict[str, Any]:
    """Summaries of every benchmark's samples (sorted back into problem order), with the optional overthinking,
    difficulty, budget-sweep and budget-adherence statistics; written to `out`, and returned."""
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
    tables = markdown_table(labelled) + efficiency_table(labelled) + difficulty_table(labelled) + sweep_table(sweeps)
    write_atomic(out / "summary.md", tables + "".join(f"\n> {w}\n" for w in warnings))
    rows = [(label, slug(b) if takes_columns(b) else b, s) for b, s in summaries.items()]
    plot_accuracy_vs_tokens(rows, out / "accuracy_vs_tokens.png", title=f"{label}: accuracy vs mean tokens")
    if sweeps:
        plot_budget_sweep(sweeps, out / "budget_sweep.png")
    return summary


def sweep_table(sweeps: dict[str, list[dict[str, Any]]]) -> str:
    """Markdown: accuracy (%) per benchmark at each token cutoff."""
    if not sweeps:
        return ""
    cutoffs = [p["cutoff"] for p in next(iter(sweeps.values()))]
    lines = ["", "Accuracy (%) within a token cutoff:", "", "| benchmark | " + " | ".join(map(str, cutoffs)) + " |"]
    lines.append("|---|" + "---:|" * len(cutoffs))
    lines += [f"| {b} | " + " | ".join(f"{100 * p['accuracy']:.1f}" for p in c) + " |" for b, c in sweeps.items()]
    return "\n".join(lines) + "\n"
