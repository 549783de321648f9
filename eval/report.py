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
    rate (%), accuracy per 1k tokens, and compression / Δacc (points) when rows carry them or ``baseline`` names a
    row to compare every row against.
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
        header += ["compression", "Δacc pts"]

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
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, format="png", dpi=120)
    return path


def plot_accuracy_vs_tokens(
    points: Sequence[tuple[str, float, float]], path: str | Path, *, title: str = "Accuracy vs mean output tokens"
) -> Path:
    """Scatter of (label, mean tokens, accuracy fraction) points, each annotated with its label; saves a PNG."""
    fig = Figure(figsize=(7, 5), layout="constrained")
    ax = fig.add_subplot()
    for i, (label, tokens, acc) in enumerate(points):
        if _num(tokens) is None or _num(acc) is None:
            continue
        ax.scatter(tokens, 100 * acc)
        short = label if len(label) <= 32 else label[:29] + "..."
        # Alternate above/below so neighbouring runs (before/after) stay readable.
        offset = (4, 6) if i % 2 == 0 else (4, -14)
        ax.annotate(short, (tokens, 100 * acc), textcoords="offset points", xytext=offset, fontsize=8)
    # Both axes start at 0 so distances read as real savings, not as zoomed-in noise.
    ax.set_xlim(left=0, right=max([t for _, t, _ in points if _num(t) is not None] or [1]) * 1.25)
    ax.set_ylim(0, 100)
    ax.set_xlabel("mean output tokens")
    ax.set_ylabel("accuracy (%)")
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
