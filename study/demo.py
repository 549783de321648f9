"""`brevity demo` (`make demo`): a short efficiency study on the 2-core CPU machine, offline, in a few minutes.

It runs `brevity study --config experiments/study/demo.yaml`: a small model trained from scratch into a verbose
reasoner on multi-term sums (the warm start), then the GRPO control and two methods (DLER and S-GRPO) from that warm
start, then every model evaluated on held-out problems; it prints the table of accuracy and tokens against the warm
start and writes `runs/demo/study.{md,json,png}`. The full seven-arm study is
`brevity study --config experiments/study/tiny.yaml`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

DEMO_PRESET = Path(__file__).resolve().parent.parent / "experiments" / "study" / "demo.yaml"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="brevity demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=str(DEMO_PRESET), help="study preset (default: %(default)s)")
    p.add_argument("--out", default="runs/demo", help="study folder; re-running resumes (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="new seed: new problems, new warm start, new arms")
    return p


def main(argv: list[str] | None = None) -> int:
    from study.run import main as study

    args = build_parser().parse_args(argv)
    return study(["--config", args.config, "--out", args.out, "--seed", str(args.seed)])
