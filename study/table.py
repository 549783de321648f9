"""The study's table: every arm's accuracy and token cost against the warm start and the minimal trace.

Inputs are eval's own files (`summary.json` for accuracy and its standard error, `samples/*.jsonl` for token
percentiles), so the study reports exactly what `brevity eval` measured. Arithmetic, per split:

- compression = warm start's mean tokens / arm's mean tokens (2.0 = half the tokens);
- Δaccuracy = arm's accuracy − warm start's accuracy, in points;
- over minimal = arm's mean tokens − the minimal trace's mean tokens (+1 for the end-of-sequence token, which eval
  counts) on the same problems: the part of the cost no method needs;
- the efficiency table, from the same summaries (`eval/overthinking.py`, `eval/efficiency.py`, `eval/aes.py`): tokens
  written after the first correct answer (mean over correct samples), outcome efficiency, the area under accuracy
  within a token budget, the Accuracy-Efficiency Score against the warm start, and mean tokens per number of terms.
  A summary written before these metrics existed gives null (`–`); re-running `brevity eval` into its folder adds
  them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from eval.aes import accuracy_efficiency_score

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
        **efficiency_stats(summary),
    }


def efficiency_stats(summary: dict[str, Any]) -> dict[str, Any]:
    """The efficiency metrics of eval's summary of one split; None where the summary lacks them."""
    over = summary.get("overthinking") or {}
    by = summary.get("tokens_by_difficulty") or {}
    return {
        "tokens_after_first_correct": over.get("tokens_after_first_correct"),
        "outcome_efficiency": over.get("outcome_efficiency"),
        "budget_auc": summary.get("budget_auc"),
        "difficulty_by": by.get("by"),
        "tokens_by_difficulty": {b["bin"]: b["mean_tokens"] for b in by.get("bins", [])} or None,
    }


def arm_row(stats: dict[str, Any], warm: dict[str, Any] | None) -> dict[str, Any]:
    """Add compression, Δaccuracy and the Accuracy-Efficiency Score (`eval.aes`, O1-Pruner's weights) against the warm
    start (None for the warm start itself or the base, and AES None where the warm start solved nothing)."""
    row = dict(stats)
    row["compression"] = row["delta_accuracy"] = row["aes"] = None
    if warm is not None and stats["mean_tokens"] > 0:
        row["compression"] = warm["mean_tokens"] / stats["mean_tokens"]
        row["delta_accuracy"] = 100.0 * (stats["accuracy"] - warm["accuracy"])
        aes = accuracy_efficiency_score(stats["accuracy"], stats["mean_tokens"], warm["accuracy"], warm["mean_tokens"])
        row["aes"] = None if math.isnan(aes) else aes
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
        lines += ["", *_efficiency_lines(study, split), ""]
    lines += [
        f"{meta['eval']}. Compression = warm start's mean tokens / arm's; over minimal = mean tokens − the minimal "
        "correct trace's tokens on the same problems (the floor no method can beat). Tokens after 1st correct: mean "
        "over correct samples of the tokens written after the answer first appeared; outcome efficiency = mean of "
        "(tokens to the first correct answer / tokens) with wrong samples at 0; budget AUC = mean accuracy over token "
        "budgets up to the largest cutoff; AES = (L_warm − L)/L_warm + 3·ΔA/A_warm if accuracy rose, "
        "else − 5·|ΔA|/A_warm (O1-Pruner).",
        "",
        f"Command: `{meta['command']}`  ",
        f"Commit: `{meta['commit']}`  ",
        f"Machine: {meta['machine']}  ",
        f"Wall time: {meta['wall_s']:.0f} s ({', '.join(f'{k} {v:.0f} s' for k, v in meta['stage_wall_s'].items())})",
        "",
    ]
    return "\n".join(lines)


def _efficiency_lines(study: dict[str, Any], split: str) -> list[str]:
    """The split's efficiency table: over-thinking, budget-curve area, AES vs the warm start, tokens by difficulty."""
    arms = study["arms"]
    by = next((a[split]["difficulty_by"] for a in arms.values() if a[split].get("difficulty_by")), "difficulty")
    lines = [
        f"| arm | tokens after 1st correct | outcome eff. | budget AUC | AES vs warm start | mean tokens by {by} |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for name, arm in arms.items():
        s = arm[split]
        bins = s.get("tokens_by_difficulty") or {}
        lines.append(
            f"| {name} | {_fmt(s.get('tokens_after_first_correct'), '.1f')} "
            f"| {_fmt(s.get('outcome_efficiency'), '.3f')} | {_fmt(s.get('budget_auc'), '.3f')} "
            f"| {_fmt(s.get('aes'), '+.3f')} "
            f"| {', '.join(f'{k}: {v:.1f}' for k, v in bins.items()) or '–'} |"
        )
    return lines


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
