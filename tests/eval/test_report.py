"""Tests for eval.report and the eval.compare CLI: table numbers, valid PNGs, run names, clear errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from eval.compare import main as compare_main
from eval.report import markdown_table, plot_accuracy_vs_tokens, plot_budget_sweep

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

SUMMARY = {
    "num_problems": 2,
    "samples_per_problem": 4,
    "accuracy": 0.375,
    "accuracy_stderr": 0.125,
    "pass_at_k": {"1": 0.375, "2": 2 / 3, "4": 1.0},
    "maj_at_k": 0.5,
    "tokens": {"mean": 231.25, "median": 225.0, "p90": 400.0, "min": 50, "max": 400, "count": 8},
    "truncation_rate": 0.25,
    "accuracy_per_1k_tokens": 0.375 / 0.23125,
}
BASE = {**SUMMARY, "accuracy": 0.5, "tokens": {**SUMMARY["tokens"], "mean": 462.5}}


def test_markdown_table_numbers() -> None:
    table = markdown_table({"short/math500": SUMMARY})
    for expected in ["short/math500", "37.5 ± 12.5", "pass@4 %", "66.7", "100.0", "50.0", "231", "225", "400"]:
        assert expected in table
    assert "25.0" in table and "1.622" in table
    assert "compression" not in table


def test_markdown_table_baseline_columns() -> None:
    table = markdown_table({"base": BASE, "short": SUMMARY}, baseline="base")
    short_row = next(line for line in table.splitlines() if line.startswith("| short"))
    assert "0.50×" in short_row and "-12.5" in short_row
    assert "1.00×" in table and "+0.0" in table
    with pytest.raises(KeyError, match="nope"):
        markdown_table({"short": SUMMARY}, baseline="nope")


def test_markdown_table_missing_values() -> None:
    s = {**SUMMARY, "tokens": {"mean": float("nan"), "median": float("nan"), "p90": float("nan")}}
    assert "| – | – | – |" in markdown_table({"x": s})


def test_plots_write_valid_pngs(tmp_path: Path) -> None:
    out = plot_accuracy_vs_tokens([("a", 1000.0, 0.4), ("b", 500.0, 0.38)], tmp_path / "sub" / "acc.png", title="t")
    assert out.read_bytes()[:8] == PNG_MAGIC
    curves = {"a": [{"cutoff": 100, "accuracy": 0.1}, {"cutoff": 50, "accuracy": 0.05}], "b": []}
    assert plot_budget_sweep(curves, tmp_path / "sweep.png").read_bytes()[:8] == PNG_MAGIC


def test_accuracy_plot_has_short_labels_error_bars_and_fitted_axes(tmp_path: Path, monkeypatch) -> None:
    import eval.report as report

    figures = []
    monkeypatch.setattr(report, "_save", lambda fig, path: figures.append(fig) or Path(path))
    after = {**SUMMARY, "accuracy": 0.12, "accuracy_stderr": 0.02, "tokens": {"mean": 50.0, "p10": 30.0, "p90": 64.0}}
    before = {**SUMMARY, "accuracy": 0.10, "accuracy_stderr": 0.03, "tokens": {"mean": 60.0, "p10": 40.0, "p90": 64.0}}
    rows = [("runs/demo/before", "rg:chain_sum?min_terms=2&max_terms=2", before), ("runs/demo/after", "gsm8k", after)]
    report.plot_accuracy_vs_tokens(rows, tmp_path / "acc.png")
    (ax,) = figures[0].axes
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["before: rg:chain_sum", "after: gsm8k"]
    low, high = ax.get_ylim()
    assert 0 <= low < 7 and 15 < high < 25  # fitted around 10-12 % ± se, not 0-100
    assert ax.get_xlim()[1] >= 64  # the p90 spread fits
    bars = [c for c in ax.containers]
    assert len(bars) == 2 and all(c.has_xerr and c.has_yerr for c in bars)
    assert report.short_label("a" * 40, "b") == "aaaaaaaaaaa…aaaaaaaaaaa: b"  # 23 characters


def _run_dir(root: Path, name: str, model: str, summaries: dict, config: dict) -> Path:
    d = root / name
    d.mkdir()
    (d / "summary.json").write_text(json.dumps({"model": model, "benchmarks": summaries, "config": config}))
    return d


def test_compare_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = _run_dir(tmp_path, "run_base", "qwen-base", {"math500": BASE, "aime24": BASE}, {"lr": 1e-6})
    short = _run_dir(tmp_path, "run_short", "qwen-short", {"math500": SUMMARY, "aime24": SUMMARY}, {"lr": 2e-6})
    out = tmp_path / "out"
    assert compare_main([str(base), str(short), "--out", str(out), "--baseline", str(base)]) == 0
    md = (out / "comparison.md").read_text()
    assert "run_base/math500" in md and "run_short/aime24" in md and "qwen-short" in md
    assert "0.50×" in md and "-12.5" in md
    assert "noisy" in md  # aime24 at 4 samples per problem
    assert "Config differences" in md
    assert (out / "comparison.png").read_bytes()[:8] == PNG_MAGIC
    assert "run_short/math500" in capsys.readouterr().out


def test_compare_errors_name_missing_paths(tmp_path: Path) -> None:
    good = _run_dir(tmp_path, "good", "m", {"gsm8k": SUMMARY}, {})
    missing = tmp_path / "does_not_exist"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        compare_main([str(good), str(missing), "--out", str(tmp_path)])
    empty = tmp_path / "no_summary"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=r"summary\.json.*no_summary"):
        compare_main([str(empty), "--out", str(tmp_path)])


def test_accuracy_plot_with_the_mean_outside_p10_p90(tmp_path: Path) -> None:
    """A skewed run (most samples at one length, a few far longer) has its mean above p90: still a plot."""
    summary = {**SUMMARY, "tokens": {"mean": 40.0, "p10": 30.0, "p90": 31.0}, "accuracy_stderr": 0.01}
    out = plot_accuracy_vs_tokens([("runs/x", "eval", summary)], tmp_path / "acc.png", title="t")
    assert out.read_bytes()[:8] == PNG_MAGIC
