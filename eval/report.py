"""Reporting for evaluation summaries: a markdown table and accuracy-vs-tokens / budget-sweep plots (S11).

Tables show accuracies in percent (one decimal) and ``Δacc`` in percentage points; the summaries themselves keep
fractions. Plots use matplotlib's Agg canvas directly, so no GUI backend or pyplot global state is touched.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from eval.metrics import compare_to_baseline

MISSING = "–"


def _num(x: Any) -> float | None:
    """x as a finite float, else None."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _pct(x: Any) -> str:
    v = _num(x)
    return MISSING if v is None else f"{100 * v:.1f}"


def _fmt(x: Any, spec: str, suffix: str = "") -> str:
    v = _num(x)
    return MISSING if v is None else f"{v:{spec}}{suffix}"


def markdown_table(summaries: Mapping[str, Mapping[str, Any]], *, baseline: str | None = None) -> str:
    """One markdown row per summary (keyed by a label such as ``run/benchmark``).

    Columns: accuracy ± stderr (%), pass@k for every k present (%), maj@k (%), mean/median/p90 tokens, truncation
    rate (%), accuracy per 1k tokens, and compression / Δacc (points) / AES when rows carry them or ``baseline`` names
    a row to compare every row against.
    """
    if baseline is not None and baseline not in summaries:
        raise KeyError(f"baseline {baseline!r} is not one of the rows: {list(summaries)}")
    rows: dict[str, dict[str, Any]] = {}
    for label, s in summaries.items():
        row = dict(s)
        if baseline is not None and "compression_ratio" not in row:
            row.update(compare_to_baseline(s, summaries[baseline]))
        rows[label] = row

    pass_keys = sorted({key for s in rows.values() for key in s.get("pass_at_k", {})}, key=int)
    relative = any("compression_ratio" in s for s in rows.values())
    header = ["run", "acc % ± se", *[f"pass@{key} %" for key in pass_keys], "maj@k %"]
    header += ["mean tok", "median tok", "p90 tok", "trunc %", "acc/1k tok"]
    if relative:
        header += ["compression", "Δacc pts", "AES"]

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    for label, s in rows.items():
        tok = s.get("tokens", {})
        acc = _pct(s.get("accuracy"))
        se = _num(s.get("accuracy_stderr"))
        cells = [label, acc if se is None or acc == MISSING else f"{acc} ± {100 * se:.1f}"]
        cells += [_pct(s.get("pass_at_k", {}).get(key)) for key in pass_keys]
        cells += [_pct(s.get("maj_at_k"))]
        cells += [_fmt(tok.get("mean"), ".0f"), _fmt(tok.get("median"), ".0f"), _fmt(tok.get("p90"), ".0f")]
        cells += [_pct(s.get("truncation_rate")), _fmt(s.get("accuracy_per_1k_tokens"), ".3f")]
        if relative:
            delta = _num(s.get("accuracy_delta"))
            cells += [
                _fmt(s.get("compression_ratio"), ".2f", "×"),
                MISSING if delta is None else f"{100 * delta:+.1f}",
                _fmt(s.get("aes"), "+.3f"),
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def efficiency_table(summaries: Mapping[str, Mapping[str, Any]]) -> str:
    """Markdown: per row, tokens written after the first correct answer (mean, median, p90), their share of correct
    samples' tokens (%), outcome efficiency, and the budget sweep's area (`eval.overthinking`, `eval.efficiency`).
    Empty when no row carries these keys."""
    rows = {k: s for k, s in summaries.items() if "overthinking" in s or "budget_auc" in s}
    if not rows:
        return ""
    lines = [
        "",
        "Efficiency: tokens after the first correct answer (correct samples), outcome efficiency, budget-curve area:",
        "",
        "| run | after 1st correct: mean | median | p90 | share % | outcome eff. | budget AUC |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, s in rows.items():
        o = s.get("overthinking") or {}
        cells = [_fmt(o.get(f"tokens_after_first_correct{k}"), ".1f") for k in ("", "_median", "_p90")]
        cells += [_pct(o.get("share_after_first_correct")), _fmt(o.get("outcome_efficiency"), ".3f")]
        cells += [_fmt(s.get("budget_auc"), ".3f")]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def difficulty_table(summaries: Mapping[str, Mapping[str, Any]]) -> str:
    """Markdown: accuracy and mean tokens (all samples / correct ones) per difficulty bin of each row."""
    rows = {k: s["tokens_by_difficulty"] for k, s in summaries.items() if s.get("tokens_by_difficulty")}
    if not rows:
        return ""
    lines = [
        "",
        "Tokens by difficulty bin:",
        "",
        "| run | by | bin | problems | acc % | mean tok | mean tok correct |",
    ]
    lines.append("|---|---|---|---:|---:|---:|---:|")
    for label, d in rows.items():
        for b in d["bins"]:
            cells = [label, d["by"], b["bin"], str(b["problems"]), _pct(b["accuracy"])]
            cells += [_fmt(b["mean_tokens"], ".1f"), _fmt(b["mean_tokens_correct"], ".1f")]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def budgets_table(rows: list[dict[str, Any]]) -> str:
    """Markdown: one row per (budget, benchmark): accuracy, mean tokens and how closely the budget was kept."""
    lines = [
        "| budget | benchmark | acc % ± se | mean tok | within budget % | mean abs deviation % | mean overshoot tok |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        acc, se = _pct(r["accuracy"]), r.get("accuracy_stderr")
        cells = [str(r["budget"]), r["benchmark"], acc if se is None or acc == MISSING else f"{acc} ± {100 * se:.1f}"]
        cells += [_fmt(r["mean_tokens"], ".1f"), _pct(r["within_budget_rate"]), _pct(r["mean_abs_deviation"])]
        cells += [_fmt(r["mean_overshoot"], ".1f")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, format="png", dpi=120)
    return path


def short_label(run: str, benchmark: str, width: int = 24) -> str:
    """`run: benchmark` for a legend: a task's options (`rg:chain_sum?min_terms=2&...`) and a path's folders are
    dropped, and long names are cut in the middle."""

    def cut(text: str) -> str:
        return text if len(text) <= width else text[: width // 2 - 1] + "…" + text[-(width // 2) + 1 :]

    return f"{cut(Path(run).name or run)}: {cut(benchmark.split('?', 1)[0])}"


def plot_accuracy_vs_tokens(
    rows: Sequence[tuple[str, str, Any]], path: str | Path, *, title: str = "Accuracy vs mean output tokens"
) -> Path:
    """Accuracy (%) against mean output tokens, one marker per (run, benchmark, summary) row; saves a PNG.

    Each marker has a vertical bar of ± one standard error of the accuracy and a horizontal bar spanning the p10–p90
    output tokens (`eval.metrics.summarize` keys; either is left out where the summary lacks it), and a legend entry
    `run: benchmark`. The axes fit the data: tokens from 0 to past the widest spread, accuracy around the points
    (within 0–100; a marker at 0 % or 100 % is drawn over the frame). Legacy rows `(label, mean tokens, accuracy)`
    are drawn without bars.
    """
    fig = Figure(figsize=(7.5, 5), layout="constrained")
    ax = fig.add_subplot()
    markers = "osD^vP*Xh"
    x_max, y_lo, y_hi = 0.0, 100.0, 0.0
    for i, row in enumerate(rows):
        if isinstance(row[2], Mapping):
            run, bench, summary = row
            label = short_label(run, bench)
            tokens = summary.get("tokens", {})
            mean, acc = _num(tokens.get("mean")), _num(summary.get("accuracy"))
            se, p10, p90 = _num(summary.get("accuracy_stderr")), _num(tokens.get("p10")), _num(tokens.get("p90"))
        else:
            label, mean, acc = str(row[0]), _num(row[1]), _num(row[2])
            se = p10 = p90 = None
        if mean is None or acc is None:
            continue
        y, yerr = 100 * acc, 100 * (se or 0.0)
        # the mean can fall outside p10-p90 in a skewed distribution (most samples at one length, a few far off)
        xerr = [[max(mean - p10, 0.0)], [max(p90 - mean, 0.0)]] if p10 is not None and p90 is not None else None
        ax.errorbar(
            mean, y, yerr=yerr if se is not None else None, xerr=xerr, fmt=markers[i % len(markers)],
            markersize=7, capsize=3, elinewidth=1, label=label, clip_on=False,
        )  # fmt: skip
        x_max = max(x_max, p90 if p90 is not None and xerr is not None else mean)
        y_lo, y_hi = min(y_lo, y - yerr), max(y_hi, y + yerr)
    if y_hi >= y_lo:  # at least one point was drawn
        pad = max(2.0, 0.15 * (y_hi - y_lo))
        ax.set_ylim(max(0.0, y_lo - pad), min(100.0, y_hi + pad))
        ax.set_xlim(0, max(x_max, 1.0) * 1.1)
        ax.legend(fontsize=8, loc="best")
    else:
        ax.set_ylim(0, 100)
    ax.set_xlabel("mean output tokens (bar: p10–p90)")
    ax.set_ylabel("accuracy (%) ± standard error")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_budget_sweep(
    curves: Mapping[str, list[dict[str, Any]]], path: str | Path, *, title: str = "Accuracy vs token budget"
) -> Path:
    """One accuracy-vs-cutoff line per label from ``metrics.budget_sweep`` outputs; saves a PNG."""
    fig = Figure(figsize=(7, 5), layout="constrained")
    ax = fig.add_subplot()
    for label, curve in curves.items():
        pts = sorted(curve, key=lambda p: p["cutoff"])
        ax.plot([p["cutoff"] for p in pts], [100 * p["accuracy"] for p in pts], marker="o", label=label)
    ax.set_xlabel("token cutoff")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if curves:
        ax.legend(fontsize=8)
    return _save(fig, path)
