"""Wall time of the efficiency study by stage, arm and evaluation (issue 15, item 5): so a regression shows.

Runs `brevity study --config PRESET` into a fresh folder (or reads a finished one with `--from DIR`) and reports the
stage times from `DONE.json`, each arm's training time and each model's evaluation time from the stages' own
`DONE.json` files, with the machine, commit and command. The study's table and results are not the point here;
`study.md` stays in the folder.

    python experiments/bench/study_stages.py --config experiments/study/tiny.yaml \
        --out experiments/bench/results/cpu/study_tiny_stages.json          # ~7.5 min on the idle 2-core machine
    python experiments/bench/study_stages.py --from runs/study/tiny-seed0   # a study that already ran
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO, commit, emit  # noqa: E402


def _wall(folder: Path) -> float | None:
    done = folder / "DONE.json"
    return json.loads(done.read_text()).get("wall_s") if done.is_file() else None


def stages(folder: Path) -> dict[str, Any]:
    """Stage, arm and evaluation wall times of a finished study folder (seconds)."""
    done = folder / "DONE.json"
    if not done.is_file():
        raise FileNotFoundError(f"{folder} holds no finished study (no DONE.json): run it first or drop --from")
    study = json.loads((folder / "study.json").read_text())
    return {
        "preset": study["meta"]["preset"],
        "seed": study["meta"]["seed"],
        "machine": study["meta"]["machine"],
        "study_commit": study["meta"]["commit"],
        "study_command": study["meta"]["command"],
        "wall_s": study["meta"]["wall_s"],
        "stage_wall_s": json.loads(done.read_text()).get("stage_wall_s", {}),
        "arm_train_wall_s": {p.name: _wall(p) for p in sorted((folder / "arms").iterdir()) if p.is_dir()},
        "eval_wall_s": {p.name: _wall(p) for p in sorted((folder / "eval").iterdir()) if p.is_dir()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="experiments/study/tiny.yaml", help="study preset to run")
    parser.add_argument("--from", dest="source", type=Path, default=None, help="a finished study folder to read")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON report here")
    args = parser.parse_args()
    folder = args.source
    ran: dict[str, Any] = {}
    if folder is None:
        folder = Path(tempfile.mkdtemp(prefix="brevity-study-stages-")) / "study"
        cmd = [sys.executable, "-m", "rl.cli", "study", "--config", args.config, "--seed", str(args.seed)]
        start = time.perf_counter()
        proc = subprocess.run([*cmd, "--out", str(folder)], cwd=REPO, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"study failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        ran = {"command_wall_s": time.perf_counter() - start, "study_folder": str(folder)}
    report = {
        "benchmark": "study_stages",
        "commit": commit(),
        "command": " ".join(["experiments/bench/study_stages.py", *sys.argv[1:]]),
        **stages(folder),
        **ran,
    }
    emit(report, args.out)


if __name__ == "__main__":
    main()
