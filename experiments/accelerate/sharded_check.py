"""DDP vs FSDP2 vs DeepSpeed ZeRO-3 and ZeRO-2 on the GPUs of one machine: a smoke experiment for a few steps under
each launcher config, with the rollout engine's weights checked at every sync. Prints one JSON report (and writes it
to OUT/report.json).

    python experiments/accelerate/sharded_check.py --out OUT              # 2 GPUs, grpo, 3 steps each
    python experiments/accelerate/sharded_check.py --out OUT --variant s_grpo --runs ddp zero3

Each run is `accelerate launch --config_file experiments/accelerate/<multi_gpu|fsdp2|zero3|zero2>.yaml
--num_processes N -m tests.rl.sharded_run`: the production training path (`rl.train.build_trainer`, transformers
engine, `rl.train.finish`) plus, after each weight sync, a check on every rank that the engine's weights equal the
gathered policy's (cast to the engine's dtype). The experiment is `experiments/smoke/<variant>.yaml` with: `data.train` = `--data` (default gsm8k, the offline
GSM8K test set: reasoning-gym is not needed), `max_steps` = `--steps`, no checkpoints, no reporting, and
`--model` if given, and one more reward, `tests.rl.sharded_run:even_tokens` (the fraction of even token ids: it
varies inside every group, so the weights move at every step even while the model solves nothing; `--no-moving-reward`
keeps the variant's rewards only). What "ok" means per run: exit code 0, every rank reached `--steps`, one sync per
step, no weight mismatch; under FSDP2 and ZeRO-3 also: the policy is sharded, the engine holds a separate plain copy,
and that copy changed at every step. `<name>_step0_samples_equal` (each run vs DDP, same initial weights) is
reported, not required. Needs trl==1.16.0, deepspeed for the zero runs, and brevity's other dependencies, no install
of brevity itself (the processes import from the repository root); the model resolves as usual (`SMOLLM2_GGUF` for
the offline SmolLM2 GGUF). `--cpu` runs them on this machine's CPU over gloo, in float32 (a check of the script;
FSDP2 then goes through the driver's CPU shim, ZeRO through DeepSpeed's CPU accelerator).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
LAUNCHERS = {"ddp": "multi_gpu.yaml", "fsdp2": "fsdp2.yaml", "zero3": "zero3.yaml", "zero2": "zero2.yaml"}
SHARDED = ("fsdp2", "zero3")  # ZeRO-2 shards optimizer states and gradients only: the engine decodes on the live model
MOVING_REWARD = "tests.rl.sharded_run:even_tokens"
sys.path.insert(0, str(REPO))  # runs from a plain checkout (no install of brevity)


def experiment(args: argparse.Namespace, output_dir: Path) -> dict[str, Any]:
    """The smoke YAML of `--variant` with the overrides of the module docstring."""
    raw: dict[str, Any] = yaml.safe_load((REPO / "experiments" / "smoke" / f"{args.variant}.yaml").read_text())
    data = raw.setdefault("data", {})
    if args.data != "yaml":
        data["train"] = args.data
        data.pop("columns", None)
    data["size"] = max(int(data.get("size") or 0), 256)
    raw.update(max_steps=args.steps, save_strategy="no", report_to="none", logging_steps=1, output_dir=str(output_dir))
    raw.setdefault("rollout", {})["engine"] = "transformers"
    if args.model:
        raw["model"] = args.model
    if args.moving_reward:
        from rl.experiment import parse_config  # the variant's default rewards, when the YAML names none

        rewards = raw.get("rewards") or [
            {"name": r.name, "weight": r.weight, "params": r.params} for r in parse_config(copy.deepcopy(raw)).rewards
        ]
        raw["rewards"] = [*rewards, {"name": MOVING_REWARD}]
    return raw


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def summary(name: str, logs: list[dict[str, Any]], steps: int) -> dict[str, Any]:
    """Pass/fail of one run from its per-rank logs (see the module docstring)."""
    syncs = [s for log in logs for s in log["syncs"]]
    problems = []
    for log in logs:
        if log["final_global_step"] != steps:
            problems.append(f"rank {log['rank']} stopped at step {log['final_global_step']}")
        if [s["global_step"] for s in log["syncs"]] != list(range(steps)):
            problems.append(f"rank {log['rank']} synced at steps {[s['global_step'] for s in log['syncs']]}")
    problems += [f"step {s['global_step']}: {len(s['mismatched'])} weights differ" for s in syncs if s["mismatched"]]
    if name in SHARDED:
        if not all(s["sharded"] and not s["engine_is_live_model"] for s in syncs):
            problems.append("the engine does not hold a separate copy of a sharded policy")
        prints = [s["fingerprint"] for s in logs[0]["syncs"]]
        if any(a == b for a, b in zip(prints, prints[1:])):
            problems.append("an optimizer step did not reach the engine's copy")
    return {
        "ok": not problems,
        "problems": problems,
        "train_seconds": [round(log["train_seconds"], 1) for log in logs],
        "max_memory_gib": [round(log.get("max_memory_gib", 0.0), 2) for log in logs],
        "sharded": logs[0]["syncs"][0]["sharded"] if logs[0]["syncs"] else None,
        "engine_is_live_model": logs[0]["syncs"][0]["engine_is_live_model"] if logs[0]["syncs"] else None,
        "live_param_types": logs[0]["syncs"][0]["live_param_types"] if logs[0]["syncs"] else None,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="folder for configs, logs and report.json")
    p.add_argument("--variant", default="grpo", help="experiments/smoke/<variant>.yaml")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--num-processes", type=int, default=2)
    p.add_argument("--data", default="gsm8k", help="data.train override; 'yaml' keeps the smoke file's own")
    p.add_argument("--model", default=None, help="model override (alias, folder or hub id)")
    p.add_argument("--runs", nargs="+", default=list(LAUNCHERS), choices=list(LAUNCHERS))
    p.add_argument("--timeout", type=int, default=900, help="seconds per run")
    p.add_argument("--moving-reward", action=argparse.BooleanOptionalAction, default=True, help="add even_tokens")
    p.add_argument("--cpu", action="store_true", help="run on the CPU over gloo, float32 (checks the script)")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    cpu = ["--mixed_precision", "no"] if args.cpu else []
    if args.cpu:
        env.update(OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "1"))
    report: dict[str, Any] = {"variant": args.variant, "steps": args.steps, "num_processes": args.num_processes}
    logs: dict[str, list[dict[str, Any]]] = {}
    for name in args.runs:
        config = args.out / f"{name}.yaml"
        config.write_text(yaml.safe_dump(experiment(args, args.out / "runs" / name), sort_keys=False))
        command = [
            sys.executable, "-m", "accelerate.commands.launch",
            "--config_file", str(REPO / "experiments" / "accelerate" / LAUNCHERS[name]),
            "--num_processes", str(args.num_processes), "--main_process_port", str(free_port()), *cpu,
            "-m", "tests.rl.sharded_run", "--config", str(config), "--out", str(args.out / name),
        ]  # fmt: skip
        # on a CPU, accelerate's MULTI_CPU (gloo) mode needs ACCELERATE_USE_CPU; DeepSpeed must not get it (accelerate
        # would drop DeepSpeed): rl/trl_args.py gives it gloo instead
        run_env = {**env, "ACCELERATE_USE_CPU": "1"} if args.cpu and not name.startswith("zero") else env
        print(f"[{name}] {' '.join(command)}", file=sys.stderr, flush=True)
        start = time.perf_counter()
        with open(args.out / f"{name}.log", "w") as log_file:
            try:
                rc = subprocess.run(
                    command, cwd=REPO, env=run_env, stdout=log_file, stderr=subprocess.STDOUT, timeout=args.timeout
                ).returncode
            except subprocess.TimeoutExpired:
                rc = 124
        wall = round(time.perf_counter() - start, 1)
        paths = [args.out / name / f"rank{r}.json" for r in range(args.num_processes)]
        if rc != 0 or not all(path.is_file() for path in paths):
            tail = (args.out / f"{name}.log").read_text()[-3000:]
            report[name] = {"ok": False, "rc": rc, "wall_seconds": wall, "log_tail": tail}
            continue
        logs[name] = [json.loads(path.read_text()) for path in paths]
        report[name] = {"rc": rc, "wall_seconds": wall, **summary(name, logs[name], args.steps)}
    if "ddp" in logs:
        first = [log["batches"][0]["completion_ids"] if log["batches"] else None for log in logs["ddp"]]
        for name in (n for n in logs if n != "ddp"):
            report[f"{name}_step0_samples_equal"] = first == [
                log["batches"][0]["completion_ids"] if log["batches"] else None for log in logs[name]
            ]
    report["ok"] = all(report.get(name, {}).get("ok") for name in args.runs)
    text = json.dumps(report, indent=2)
    (args.out / "report.json").write_text(text)
    print(text)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
