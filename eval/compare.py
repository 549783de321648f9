"""Compare evaluation runs side by side: ``python -m eval.compare RUN_DIR [RUN_DIR ...] [--out DIR] [--baseline DIR]``.

Each run dir holds ``summary.json`` = ``{"model": str, "benchmarks": {name: summary}, "config": {...}}`` where each
summary comes from ``eval.metrics.summarize``. Prints one markdown table (one row per run × benchmark) and writes
``comparison.md`` and ``comparison.png`` (accuracy vs mean tokens) to ``--out`` (default: the current directory).
With ``--baseline``, compression and Δacc are computed per benchmark against that run.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from eval.metrics import compare_to_baseline, noisy_warning
from eval.report import efficiency_table, markdown_table, plot_accuracy_vs_tokens


def load_summary(run_dir: str | Path) -> dict[str, Any]:
    """Read ``RUN_DIR/summary.json``; a missing directory or file raises FileNotFoundError naming the path."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run dir not found: {run_dir}")
    path = run_dir / "summary.json"
    if not path.is_file():
        raise FileNotFoundError(f"summary.json not found in run dir {run_dir} (expected {path})")
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), dict):
        raise ValueError(f"{path}: expected an object with a 'benchmarks' mapping")
    return data


def _run_names(run_dirs: list[Path]) -> list[str]:
    """Directory names, or the paths as given where two names collide."""
    names = [d.resolve().name for d in run_dirs]
    return [name if names.count(name) == 1 else str(d) for name, d in zip(names, run_dirs)]


def _config_diff(runs: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Markdown lines for top-level config keys whose values differ between runs."""
    configs = {name: data.get("config") or {} for name, data in runs.items()}
    keys = sorted({k for c in configs.values() for k in c})
    differing = [k for k in keys if len({json.dumps(c.get(k), sort_keys=True) for c in configs.values()}) > 1]
    if not differing:
        return []
    lines = ["", "## Config differences", "", "| run | " + " | ".join(differing) + " |"]
    lines.append("|---|" + "---|" * len(differing))
    for name, c in configs.items():
        lines.append(f"| {name} | " + " | ".join(json.dumps(c.get(k)) for k in differing) + " |")
    return lines


def cli(argv: list[str] | None = None) -> int:
    """Command-line entry (`python -m eval.compare`, `brevity compare`): bad run dirs exit 2 with the message."""
    try:
        return main(argv)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns 0. Missing run dirs / summary.json raise FileNotFoundError naming them."""
    parser = argparse.ArgumentParser(
        prog="brevity compare",
        description="Put evaluation runs side by side (also python -m eval.compare): one markdown table of accuracy "
        "and token cost per run and benchmark, printed and written to OUT/comparison.md, and an accuracy-vs-tokens "
        "plot OUT/comparison.png.",
    )
    parser.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR", help="output folders of brevity eval")
    parser.add_argument("--out", type=Path, default=Path("."), help="where comparison.md/.png go (default: .)")
    parser.add_argument("--baseline", type=Path, default=None, help="run dir that compression/Δacc refer to")
    args = parser.parse_args(argv)

    run_dirs: list[Path] = list(args.run_dirs)
    resolved = [d.resolve() for d in run_dirs]
    if args.baseline is not None and args.baseline.resolve() not in resolved:
        run_dirs.insert(0, args.baseline)  # the baseline is shown as a row too
        resolved.insert(0, args.baseline.resolve())
    names = _run_names(run_dirs)
    runs = {name: load_summary(d) for name, d in zip(names, run_dirs)}
    base: Mapping[str, Any] = {}
    if args.baseline is not None:
        base = runs[names[resolved.index(args.baseline.resolve())]]["benchmarks"]

    rows: dict[str, dict[str, Any]] = {}
    plot_rows: list[tuple[str, str, dict[str, Any]]] = []
    warnings: list[str] = []
    for name, data in runs.items():
        for bench, summary in data["benchmarks"].items():
            row = dict(summary)
            if bench in base:
                row.update(compare_to_baseline(summary, base[bench]))
            rows[f"{name}/{bench}"] = row
            plot_rows.append((name, bench, row))
            warning = noisy_warning(bench, int(summary.get("samples_per_problem", 0)))
            if warning:
                warnings.append(f"{name}: {warning}")

    table = markdown_table(rows) + efficiency_table(rows)  # the second is empty for runs without those metrics
    models = [f"- `{name}`: model `{data.get('model', '?')}` ({d})" for (name, data), d in zip(runs.items(), run_dirs)]
    doc = ["# Run comparison", "", *models, "", table.rstrip("\n")]
    if args.baseline is not None:
        doc += [
            "",
            f"compression = mean tokens / baseline mean tokens; Δacc in points and AES (Accuracy-Efficiency Score, "
            f"eval/aes.py) vs `{args.baseline}`.",
        ]
    doc += [f"\n> warning: {w}" for w in warnings]
    doc += _config_diff(runs)
    text = "\n".join(doc) + "\n"

    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "comparison.md").write_text(text)
    plot_accuracy_vs_tokens(plot_rows, args.out / "comparison.png", title="Accuracy vs mean output tokens")
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())
