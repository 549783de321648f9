"""`brevity study --config experiments/study/<preset>.yaml`: warm start, the GRPO control and six methods, one table.

Stages, each kept when it finishes (a `DONE.json` beside its output), so re-running resumes at the first unfinished
one and an interrupted run loses no finished arm:

1. data: held-out evaluation splits, warm-start traces and RL prompts (`study/data.py`);
2. base: the `tiny` preset's from-scratch model and character tokenizer (a named model is used as it is);
3. warm start: `brevity sft` turns the base into a verbose reasoner;
4. arms: `brevity train` for the control and every method, from the same warm start with the same steps, prompts and
   samples (`parallel` arms side by side, one process each);
5. eval: `brevity eval` of the base, the warm start and every arm on both held-out splits, k samples per problem;
6. table: `study.json`, `study.md`, `study.png`.

Every stage is an ordinary brevity command on a YAML written into the study folder (`<out>/.../config.yaml`), so
any number in the table can be reproduced by hand. Each stage's output goes to its `log.txt`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

from rl.config import ConfigError
from rl.train import checkpoints
from study.config import EvalSpec, StudyConfig, load_study

__all__ = ["Study", "main"]


# The budget every arm shares, whatever its paper's defaults say: the same steps, prompts, samples per prompt and
# optimiser schedule (GRPO-lambda's and DLER's papers use G = 16, for instance; the study holds G fixed).
CONTROLLED = frozenset(
    {
        "num_generations",
        "per_device_train_batch_size",
        "gradient_accumulation_steps",
        "steps_per_generation",
        "max_steps",
        "learning_rate",
        "lr_scheduler_type",
        "warmup_steps",
        "warmup_ratio",
        "seed",
    }
)


class StageError(RuntimeError):
    """A stage's command failed; its log names why."""


def _done(folder: Path) -> dict[str, Any] | None:
    marker = folder / "DONE.json"
    return json.loads(marker.read_text()) if marker.is_file() else None


def _mark(folder: Path, **info: Any) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "DONE.json.tmp"
    tmp.write_text(json.dumps(info, indent=2) + "\n")
    tmp.replace(folder / "DONE.json")


def _git_commit() -> str:
    """The commit the study ran at (`$BREVITY_COMMIT` where the copy has no .git, as on the GPU machine)."""
    if os.environ.get("BREVITY_COMMIT"):
        return os.environ["BREVITY_COMMIT"]
    root = Path(__file__).resolve().parents[1]
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True)
        return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "") if out.returncode == 0 else "unknown"
    except OSError:
        return "unknown"


def _machine() -> str:
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} (x{torch.cuda.device_count()}), torch {torch.__version__}"
    return f"CPU, {os.cpu_count()} cores ({platform.processor() or platform.machine()}), torch {torch.__version__}"


class Study:
    """One study run in `out`: the stages above, resumable."""

    def __init__(self, config: StudyConfig, out: Path, seed: int, *, log: Any = print) -> None:
        self.config, self.out, self.seed, self.log = config, out, seed, log
        self.data = out / "data"
        self.stage_wall: dict[str, float] = {}
        self.failed: dict[str, str] = {}  # arm -> error, this run
        self.gpus = _cuda_count()
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        # One torch thread per process when several run side by side on a CPU: two threads per process on a
        # shared core slow every process down several-fold (study-feasibility.md). The warm start runs alone and
        # gets every core. $BREVITY_THREADS sets both (e.g. when other work shares the machine).
        fixed = int(os.environ["BREVITY_THREADS"]) if os.environ.get("BREVITY_THREADS") else None
        self.threads = fixed or max(1, cpus // config.parallel)
        self.sft_threads = fixed or cpus

    # --- helpers ---------------------------------------------------------------------------------------------------

    def _run(self, name: str, argv: list[str], folder: Path, slot: int = 0, threads: int | None = None) -> float:
        """Run one brevity command as a subprocess; its output goes to `folder/log.txt`. Returns the wall time.

        With several GPUs, job `slot` sees only GPU `slot % count` (arms spread over the GPUs, several per GPU)."""
        folder.mkdir(parents=True, exist_ok=True)
        threads = threads or self.threads
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        if self.gpus > 1:
            env["CUDA_VISIBLE_DEVICES"] = str(slot % self.gpus)
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        command = [sys.executable, "-m", *argv]
        start = time.time()
        with (folder / "log.txt").open("a", encoding="utf-8") as log:
            log.write(f"$ {shlex.join(command)}\n")
            log.flush()
            code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
        if code != 0:
            tail = (folder / "log.txt").read_text(errors="replace").strip().splitlines()[-15:]
            raise StageError(f"{name} failed (exit {code}); last lines of {folder / 'log.txt'}:\n" + "\n".join(tail))
        return time.time() - start

    def _write_yaml(self, path: Path, data: dict[str, Any]) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    def _parallel(self, jobs: list[tuple[str, Any]]) -> dict[str, str]:
        """Run (name, callable) jobs, `parallel` at a time; returns {name: error} of the jobs that failed."""
        errors: dict[str, str] = {}
        with ThreadPoolExecutor(max_workers=self.config.parallel) as pool:
            futures = {pool.submit(fn): name for name, fn in jobs}
            for future, name in futures.items():
                try:
                    future.result()
                except StageError as e:
                    errors[name] = str(e)
                    self.log(f"  {name}: FAILED (see its log.txt)")
        return errors

    # --- stages ----------------------------------------------------------------------------------------------------

    def stage_data(self) -> None:
        if _done(self.data):
            return
        from study.data import write_study_data

        c = self.config
        budgets = self.budget_range()
        info = write_study_data(
            self.data, c.task, seed=self.seed, **asdict(c.sizes), hard_terms=c.hard_terms, budget_range=budgets
        )

        _mark(self.data, **info, task=asdict(c.task), hard_terms=c.hard_terms)

    def budget_range(self) -> tuple[int, int] | None:
        """(lowest, highest) token budget any arm states in its prompts: a curriculum_budget arm's B(t) from start to
        end, an arm's per-prompt `data.budget` range; None if no arm states one. A quarter of the warm-start prompts
        carry a budget from this range, so the warm start has seen the budget line."""
        ranges = []
        for m in self.config.methods:
            variant = m.experiment.get("variant", {})
            budget = (m.experiment.get("data") or {}).get("budget")
            if isinstance(budget, list) and len(budget) == 2:
                ranges.append((int(budget[0]), int(budget[1])))
            if isinstance(variant, dict) and variant.get("name") == "curriculum_budget":
                from rewards.schedules import make_schedule
                from rl.variants.curriculum_budget import Spec

                raw = dict(variant.get("schedule") or Spec().schedule)
                schedule = make_schedule(raw)
                total = int(raw.get("total_steps", 1))
                ends = (int(schedule(0)), int(schedule(total)))
                ranges.append((min(ends), max(ends)))
        return (min(r[0] for r in ranges), max(r[1] for r in ranges)) if ranges else None

    def base_model(self) -> str:
        """The model the study starts from: a from-scratch tiny model written once, or the named base model."""
        if "base" in self.config.model:
            return str(self.config.model["base"])
        folder = self.out / "base"
        if not _done(folder):
            from study.tiny_model import save_base

            save_base(folder, **self.config.model["init"], seed=self.seed)
            _mark(folder)
        return str(folder)

    def stage_warm_start(self) -> Path:
        folder = self.out / "warm_start"
        if _done(folder):
            return folder
        sft = dict(self.config.sft)
        sft.setdefault("seed", self.seed)
        sft.update(output_dir=str(folder), report_to="none", disable_tqdm=True)
        config = self._write_yaml(
            folder / "config.yaml",
            {"model": self.base_model(), "data": {"train": str(self.data / "sft.jsonl")}, **sft},
        )
        resume = ["--resume", "latest"] if checkpoints(folder) else []
        self.log("  warm start: brevity sft ...")
        wall = self._run("warm start", ["rl.sft", "--config", str(config), *resume], folder, threads=self.sft_threads)
        _mark(folder, wall_s=wall)
        return folder

    def arm_config(self, method: Any, warm_start: Path) -> dict[str, Any]:
        """The arm's complete experiment YAML: the shared train settings, except those its variant sets from its
        paper (e.g. UloRL's temperature, DLER's length cap) and that are not the shared budget (`CONTROLLED`),
        then the method's own `train` overrides."""
        exp = dict(method.experiment)
        data = {"train": str(self.data / "train.jsonl"), "template": self.config.template, "seed": self.seed}
        data.update(exp.pop("data", {}) or {})
        paper = _variant_trl_defaults(exp["variant"], self.config.source, method.name)
        train = {k: v for k, v in self.config.train.items() if k not in paper or k in CONTROLLED}
        train.update(exp.pop("train", {}) or {})
        train.setdefault("seed", self.seed)
        train.update(output_dir=str(self.out / "arms" / method.name / "model"), report_to="none")
        return {"model": str(warm_start), "data": data, **exp, **train}

    def stage_arms(self, warm_start: Path) -> None:
        todo = [m for m in self.config.methods if not _done(self.out / "arms" / m.name)]
        if not todo:
            return
        self.log(f"  training {len(todo)} arm(s), {self.config.parallel} at a time: {', '.join(m.name for m in todo)}")

        def job(method: Any, slot: int) -> None:
            folder = self.out / "arms" / method.name
            config = self._write_yaml(folder / "config.yaml", self.arm_config(method, warm_start))
            resume = ["--resume", "latest"] if checkpoints(folder / "model") else []
            wall = self._run(f"arm {method.name}", ["rl.train", "--config", str(config), *resume], folder, slot)
            _mark(folder, wall_s=wall)
            self.log(f"  arm {method.name}: trained in {wall:.0f} s")

        self.failed.update(self._parallel([(m.name, lambda m=m, i=i: job(m, i)) for i, m in enumerate(todo)]))

    def eval_targets(self, warm_start: Path) -> dict[str, tuple[str, EvalSpec]]:
        targets = {
            "base": (self.base_model(), self.config.eval),
            "warm_start": (str(warm_start), self.config.eval),
        }
        for m in self.config.methods:
            if _done(self.out / "arms" / m.name):  # an arm that failed is left out (and retried by a re-run)
                targets[m.name] = (str(self.out / "arms" / m.name / "model"), m.eval)
        return targets

    def stage_eval(self, warm_start: Path) -> None:
        targets = self.eval_targets(warm_start)
        todo = [name for name in targets if not _done(self.out / "eval" / name)]
        if not todo:
            return
        self.log(f"  evaluating {len(todo)} model(s): {', '.join(todo)}")

        def job(name: str, slot: int) -> None:
            model, spec = targets[name]
            folder = self.out / "eval" / name
            argv = ["eval.run", "--model", model, "--benchmarks", str(self.data / "eval.jsonl")]
            argv += [str(self.data / "hard.jsonl"), "--out", str(folder), "--label", name, "--seed", str(self.seed)]
            argv += ["--k", str(spec.k), "--temperature", str(spec.temperature), "--top-p", str(spec.top_p)]
            argv += ["--max-tokens", str(spec.max_tokens), "--batch-size", str(spec.batch_size)]
            argv += ["--template", spec.template, "--answer-format", spec.answer_format]
            argv += ["--engine-mode", spec.engine_mode]
            argv += ["--budget", str(spec.budget)] if spec.budget is not None else []
            # efficiency metrics: tokens by number of terms; the accuracy-within-budget curve at 1/8..1 of the cap;
            # the first correct answer read as the last number written (a partial sum of positive terms never equals
            # the total, so it is the moment the sum was first computed, not only when it was boxed)
            argv += ["--difficulty-column", "terms", "--overthinking-format", "any", "--budget-cutoffs"]
            argv += [str(max(1, spec.max_tokens * n // 8)) for n in (1, 2, 4, 8)]
            wall = self._run(f"eval {name}", argv, folder, slot)
            _mark(folder, wall_s=wall)
            self.log(f"  eval {name}: {wall:.0f} s")

        failed = self._parallel([(n, lambda n=n, i=i: job(n, i)) for i, n in enumerate(todo)])
        if failed:  # the table needs every evaluation it lists
            raise StageError(next(iter(failed.values())))

    def stage_table(self, warm_start: Path, command: str, wall_s: float) -> dict[str, Any]:
        from eval.samples import nan_to_none
        from rollouts.models import load_tokenizer
        from study.table import arm_row, markdown, plot, read_tokens, split_stats

        tokenizer = load_tokenizer(str(warm_start))
        splits: dict[str, dict[str, Any]] = {}
        for split in ("eval", "hard"):
            rows = [json.loads(line) for line in (self.data / f"{split}.jsonl").read_text().splitlines() if line]
            # +1: eval counts the end-of-sequence token of a finished sample; the minimal trace ends with one too
            minimal = [len(tokenizer(r["minimal"], add_special_tokens=False)["input_ids"]) + 1 for r in rows]
            splits[split] = {"problems": len(rows), "minimal_tokens": sum(minimal) / len(minimal)}
        arms: dict[str, Any] = {}
        stats: dict[str, dict[str, Any]] = {}
        for name in self.eval_targets(warm_start):
            folder = self.out / "eval" / name
            # keyed by the benchmark file's name, not its path: a study folder that was moved or copied still tables
            summary = {
                Path(k).name: v for k, v in json.loads((folder / "summary.json").read_text())["benchmarks"].items()
            }
            stats[name] = {
                split: split_stats(
                    summary[f"{split}.jsonl"],
                    read_tokens(folder / "samples" / f"{split}.jsonl"),
                    splits[split]["minimal_tokens"],
                )
                for split in ("eval", "hard")
            }
        for name, per_split in stats.items():
            warm = stats["warm_start"] if name not in ("base", "warm_start") else None
            arms[name] = {split: arm_row(s, warm[split] if warm else None) for split, s in per_split.items()}
            arms[name].update(arms[name]["eval"])  # the in-distribution split at top level (arms.<name>.accuracy)
            arm_done = _done(self.out / "arms" / name) or {}
            arms[name]["train_wall_s"] = arm_done.get("wall_s")
            if name not in ("base", "warm_start"):
                arms[name]["train_log"] = train_log(self.out / "arms" / name / "model" / "trainer_state.json")
        e = self.config.eval
        study = {
            "meta": {
                "preset": self.config.name,
                "seed": self.seed,
                "command": command,
                "commit": _git_commit(),
                "machine": _machine(),
                "wall_s": wall_s,
                "stage_wall_s": self.stage_wall,
                "eval": f"k = {e.k} samples per problem at T = {e.temperature}, top-p {e.top_p}, "
                f"≤ {e.max_tokens} new tokens",
                "created": time.strftime("%Y-%m-%d %H:%M:%S"),
            },
            "splits": {
                "eval": f"{splits['eval']['problems']} held-out problems of the training distribution",
                "hard": f"{splits['hard']['problems']} held-out {self.config.hard_terms}-term sums",
            },
            "arms": arms,
            "failed_arms": sorted(self.failed),
        }
        (self.out / "study.json").write_text(json.dumps(nan_to_none(study), indent=2, allow_nan=False) + "\n")
        (self.out / "study.md").write_text(markdown(study))
        plot(study, self.out / "study.png")
        return study

    def run(self, command: str) -> dict[str, Any]:
        """All stages in order; a finished stage is skipped (its time from the earlier run is kept)."""
        start = time.time()
        self.stage_wall = dict((_done(self.out) or {}).get("stage_wall_s", {}))
        self._timed("data", 1, self.stage_data)
        warm = self._timed("warm start", 2, self.stage_warm_start)
        self._timed("arms", 3, lambda: self.stage_arms(warm))
        self._timed("eval", 4, lambda: self.stage_eval(warm))
        self.log("[5/5] table")
        study = self.stage_table(warm, command, sum(self.stage_wall.values()))
        _mark(self.out, stage_wall_s=self.stage_wall)
        self.log(f"wrote {self.out}/study.md, study.json, study.png ({time.time() - start:.0f} s this run)")
        if self.failed:
            names = ", ".join(sorted(self.failed))
            raise StageError(
                f"arm(s) {names} failed; the table holds the others.\n" + next(iter(self.failed.values()))
            )
        return study

    def _timed(self, name: str, index: int, fn: Any) -> Any:
        self.log(f"[{index}/5] {name}")
        t0 = time.time()
        result = fn()
        elapsed = time.time() - t0
        if name not in self.stage_wall or elapsed > 1.0:  # a skipped stage keeps the time it took when it ran
            self.stage_wall[name] = self.stage_wall.get(name, 0.0) + elapsed
        return result


TRAIN_LOG_KEYS = {  # study.json's per-step training curve: its key -> TRL/brevity's log key
    "accuracy": "brevity/accuracy",
    "mean_length": "completions/mean_length",
    "truncated": "completions/clipped_ratio",
    "reward": "reward",
    "entropy": "entropy",
}


def train_log(state_file: Path) -> list[dict[str, float]]:
    """An arm's logged training steps (accuracy, length, truncation, reward, entropy at the training temperature),
    from the `trainer_state.json` that `brevity train` writes beside the model; [] if there is none."""
    if not state_file.exists():
        return []
    rows = []
    for logs in json.loads(state_file.read_text()).get("log_history", []):
        row = {key: logs[src] for key, src in TRAIN_LOG_KEYS.items() if isinstance(logs.get(src), (int, float))}
        if row and "step" in logs:
            rows.append({"step": logs["step"], **row})
    return rows


def _variant_trl_defaults(variant: Any, source: str, arm: str) -> dict[str, Any]:
    """The GRPOConfig settings a variant takes from its paper, for the arm's variant section."""
    from rl.config import build_dataclass
    from rl.variants import VARIANTS

    raw = {"name": variant} if isinstance(variant, str) else dict(variant)
    name = raw.pop("name", arm)
    if name not in VARIANTS:
        raise ConfigError(
            source, f"methods.{arm}.variant.name", f"unknown variant {name!r}; known: {sorted(VARIANTS)}"
        )
    spec = build_dataclass(VARIANTS[name].Spec, raw, source, f"methods.{arm}.variant.")
    return dict(VARIANTS[name].trl_defaults(spec))


def _cuda_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="brevity study", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="study preset YAML (experiments/study/<preset>.yaml)")
    p.add_argument("--out", default=None, help="study folder (default: runs/study/<preset>-seed<N>); re-run resumes")
    p.add_argument("--seed", type=int, default=0, help="new seed: new problems, new warm start, new arms")
    p.add_argument("--methods", nargs="*", default=None, help="run only these arms (the control `grpo` is kept)")
    p.add_argument("--steps", type=int, default=None, help="override every arm's max_steps (short runs)")
    p.add_argument(
        "--smoke", action="store_true", help="check the whole pipeline in minutes: few rows, steps and samples"
    )
    return p


def smoke(config: StudyConfig) -> None:
    """Shrink a preset to a pipeline check: every stage and arm runs with its own settings, for a handful of steps
    (lengths are kept, since the methods' length settings are checked against them)."""
    config.sizes.sft, config.sizes.train, config.sizes.eval, config.sizes.hard = 128, 64, 8, 8
    config.sft.update(max_steps=4, per_device_train_batch_size=8, warmup_steps=0, save_steps=1000)
    g = int(config.train.get("num_generations", 8))
    config.train.update(max_steps=1, per_device_train_batch_size=2 * g, logging_steps=1)
    for spec in [config.eval, *(m.eval for m in config.methods)]:
        spec.k, spec.batch_size = 1, 16


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = load_study(args.config)
        if args.methods is not None:
            known = {m.name for m in config.methods}
            if unknown := set(args.methods) - known:
                raise ValueError(f"--methods: unknown arm(s) {sorted(unknown)}; the preset has {sorted(known)}")
            config.methods = [m for m in config.methods if m.name == "grpo" or m.name in args.methods]
        if args.smoke:
            smoke(config)
        if args.steps is not None:
            config.train["max_steps"] = args.steps
    except (ConfigError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out or f"runs/study/{config.name}{'-smoke' if args.smoke else ''}-seed{args.seed}")
    command = "brevity study " + shlex.join(argv if argv is not None else sys.argv[1:])
    print(f"study {config.name!r}, seed {args.seed}, into {out} (re-running resumes)", flush=True)
    try:
        study = Study(config, out, args.seed, log=lambda m: print(m, flush=True)).run(command)
    except StageError as e:
        print(f"error: {e}\nFinished stages are kept in {out}; re-run the same command to resume.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\ninterrupted: finished stages are kept in {out}; re-run the same command to resume.", file=sys.stderr)
        return 130
    print((out / "study.md").read_text())
    del study
    return 0


if __name__ == "__main__":
    sys.exit(main())
