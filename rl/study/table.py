"""The study's table: every arm's accuracy and token cost against the warm start and the minimal trace.

Inputs are eval's own files (`summary.json` for accuracy and its standard error, `samples/*.jsonl` for token
percentiles), so the study reports exactly what `brevity eval` measured. Arithmetic, per split:

- compression = warm start's mean tokens / arm's mean tokens (2.0 = half the tokens);
- Δaccuracy = arm's accuracy − warm start's accuracy, in points;
- over minimal = arm's mean tokens − the minimal trace's mean tokens (+1 for the end-of-sequence token, which eval
  counts) on the same problems: the part of the cost no method needs.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["arm_row", "markdown", "plot", "split_stats"]


def _percentile(values: list[int], q: float) -> float:
    return float(np.percentile(values, q)) if values else math.nan


def split_stats(summary: dict[str, Any], tokens: list[int], minimal_tokens: float) -> dict[str, Any]:
    """One arm on one split, from eval's summary of that benchmark and the samples' token counts."""
    mean = float(np.mean(tokens)) if tokens else math.nan
    return {
        "accuracy": float(summary["accuracy"]),
        "accuracy_stderr": float(summary["accuracy_stderr"]),
        "mean_tokens": mean,
        "p10_tokens": _percentile(tokens, 10),
        "p90_tokens": _percentile(tokens, 90),
        "truncation_rate": float(summary["truncation_rate"]),
        "minimal_tokens": minimal_tokens,
        "tokens_over_minimal": mean - minimal_tokens,
        "samples": len(tokens),
    }


def arm_row(stats: dict[str, Any], warm: dict[str, Any] | None) -> dict[str, Any]:
    """Add compression and Δaccuracy against the warm start (None for the warm start itself or the base)."""
    row = dict(stats)
    if warm is not None and stats["mean_tokens"] > 0:
        row["compression"] = warm["mean_tokens"] / stats["mean_tokens"]
        row["delta_accuracy"] = 100.0 * (stats["accuracy"] - warm["accuracy"])
    else:
        row["compression"] = None
        row["delta_accuracy"] = None
    return row


def _fmt(value: Any, spec: str, suffix: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:{spec}}{suffix}"


def markdown(study: dict[str, Any]) -> str:
    """`study.md`: one table per split, then how it was made."""
    meta = study["meta"]
    lines = [f"# Efficiency study `{meta['preset']}` (seed {meta['seed']})", ""]
    for split, title in (("eval", "in-distribution"), ("hard", "harder split")):
        minimal = next(iter(study["arms"].values()))[split]["minimal_tokens"]
        lines += [
            f"## {title} ({study['splits'][split]}; minimal trace {minimal:.1f} tokens)",
            "",
            "| arm | accuracy | Δacc vs warm start | mean tokens | p90 | compression | over minimal | truncated "
            "| train wall |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name, arm in study["arms"].items():
            s = arm[split]
            lines.append(
                f"| {name} | {100 * s['accuracy']:.1f}% ± {100 * s['accuracy_stderr']:.1f} "
                f"| {_fmt(s['delta_accuracy'], '+.1f')} | {s['mean_tokens']:.1f} | {s['p90_tokens']:.0f} "
                f"| {_fmt(s['compression'], '.2f', 'x')} | {s['tokens_over_minimal']:+.1f} "
                f"| {100 * s['truncation_rate']:.1f}% | {_fmt(arm.get('train_wall_s'), '.0f', ' s')} |"
            )
        lines.append("")
    lines += [
        f"{meta['eval']}. Compression = warm start's mean tokens / arm's; over minimal = mean tokens − the minimal "
        "correct trace's tokens on the same problems (the floor no method can beat).",
        "",
        f"Command: `{meta['command']}`  ",
        f"Commit: `{meta['commit']}`  ",
        f"Machine: {meta['machine']}  ",
        f"Wall time: {meta['wall_s']:.0f} s ({', '.join(f'{k} {v:.0f} s' for k, v in meta['stage_wall_s'].items())})",
        "",
    ]
    return "\n".join(lines)


def plot(study: dict[str, Any], path: Path) -> None:
    """Accuracy vs mean tokens per arm (stderr bars, p10–p90 token spread), the minimal trace as a floor."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    for ax, (split, title) in zip(axes, (("eval", "in-distribution"), ("hard", "harder split"))):
        for i, (name, arm) in enumerate(study["arms"].items()):
            s = arm[split]
            x, y = s["mean_tokens"], 100 * s["accuracy"]
            xerr = [[max(x - s["p10_tokens"], 0)], [max(s["p90_tokens"] - x, 0)]]
            ax.errorbar(
                x, y, yerr=100 * s["accuracy_stderr"], xerr=xerr, fmt="o", capsize=3, color=f"C{i}", label=name
            )
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
        minimal = next(iter(study["arms"].values()))[split]["minimal_tokens"]
        ax.axvline(minimal, color="gray", linestyle="--", linewidth=1, label="minimal trace")
        ax.set_xlabel("tokens per completion (mean; bars p10–p90)")
        ax.set_ylabel("accuracy (%; bars ± stderr)")
        ax.set_title(f"{study['meta']['preset']}: {title}")
        ax.set_xlim(left=0)
        ax.set_ylim(-2, 102)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def read_tokens(samples_file: Path) -> list[int]:
    """Token counts of an eval samples file (JSON Lines, one record per sample)."""
    with samples_file.open(encoding="utf-8") as f:
        return [int(json.loads(line)["num_tokens"]) for line in f if line.strip()]
