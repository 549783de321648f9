"""The benchmark arms of experiments/bench (issue 15) run on a CPU with tiny shapes, so they do not rot between GPU runs.

decode_throughput: every arm that runs on a CPU in seconds (stock, hf_static, hf_compiled = static without compile
here, paged, dynamic, static; "compiled" takes minutes on a CPU: tests/rollouts/test_hf_engine.py's
slow tests cover those modes). step_time: the stock TRL arms are built with the settings they claim (training them is
a slow test). grader_throughput: pools grade the same samples as the main thread.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[2] / "experiments" / "bench"
sys.path.insert(0, str(BENCH))

import decode_throughput as dt  # noqa: E402

CPU_ARMS = ["stock", "hf_static", "hf_compiled", "paged", "dynamic", "static"]


def test_decode_arms_run_on_cpu(tmp_path: Path) -> None:
    """The script end to end: every CPU arm decodes exactly batch x new_tokens tokens at two shapes, with the
    bandwidth fields, the commit and command, and a summary naming the best stock arm."""
    out = tmp_path / "decode.json"
    cmd = [
        sys.executable, str(BENCH / "decode_throughput.py"), "--device", "cpu", "--models", "tiny", "--shapes", "2x3",
        "3x4", "--prompt-len", "12", "--threads", "1", "--cb-num-blocks", "16", "--modes", *CPU_ARMS, "--out", str(out),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={"OMP_NUM_THREADS": "1", **_env()})
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert json.loads(proc.stdout) == report
    assert report["command"] and "commit" in report and report["copy_bandwidth_gbs"] > 0
    rows = report["results"]
    assert [(r["arm"], r["batch"]) for r in rows] == [(a, b) for a in CPU_ARMS for b in (2, 3)]
    for r in rows:
        assert "error" not in r, (r["arm"], r.get("error"), r.get("traceback"))
        assert r["tokens"] == r["expected_tokens"] == r["batch"] * r["new_tokens"]
        assert r["tokens_per_s"] > 0 and 0 < r["fraction_of_bandwidth_bound"] and r["bytes_per_step"] > 0
        assert r["attn_implementation"] == "sdpa"  # paged restores the model's attention for the arms after it
    assert not next(r for r in rows if r["arm"] == "hf_compiled")["hf_compile_active"]  # no compile on a CPU
    summary = {(s["batch"], s["new_tokens"]): s for s in report["summary"]}
    assert set(summary) == {(2, 3), (3, 4)}
    for s in summary.values():
        assert s["best_stock_arm"] in dt.STOCK_ARMS and not s["errors"]
        assert s["static_vs_best_stock"] > 0 and s["dynamic_vs_stock"] > 0


def test_failing_arm_is_recorded_and_the_others_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """An arm that raises (OOM, a missing API) leaves an error row per shape; the next arm still runs."""
    model, weights = dt.build_model("tiny", "cpu", torch.float32)

    def boom(*args: object, **kwargs: object) -> int:
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(dt, "run_paged", boom)
    args = argparse.Namespace(
        device="cpu", prompt_len=8, compile_warmup_steps=2, profile=False, out=None, cb_num_blocks=16,
        cb_block_size=32, cb_batch_tokens=256, arm_budget_s=None, paged_budget_s=None,
    )  # fmt: skip
    report: dict = {"results": [], "copy_bandwidth_gbs": 1.0}
    shapes = [(2, 2), (3, 2)]
    for arm in ("paged", "stock", "static"):
        dt.bench_arm(model, "tiny", weights, arm, shapes, args, report)
    errors = [r for r in report["results"] if "error" in r]
    assert [(r["arm"], r["batch"]) for r in errors] == [("paged", 2), ("paged", 3)]
    assert all("OutOfMemoryError" in r["error"] for r in errors)
    ok = [r for r in report["results"] if "error" not in r]
    assert [(r["arm"], r["tokens"]) for r in ok] == [("stock", 4), ("stock", 6), ("static", 4), ("static", 6)]
    summary = dt.summarize(report["results"])
    assert summary[0]["errors"] == {"paged": errors[0]["error"]} and summary[0]["best_stock_arm"] == "stock"


def test_arm_budget_skips_the_shapes_that_would_not_fit() -> None:
    """The first shape always runs (it gives the estimate); a later one that would overrun the budget is skipped."""
    model, weights = dt.build_model("tiny", "cpu", torch.float32)
    args = argparse.Namespace(
        device="cpu", prompt_len=8, compile_warmup_steps=2, profile=False, out=None, cb_num_blocks=None,
        arm_budget_s=1e-6, paged_budget_s=None,
    )  # fmt: skip
    report: dict = {"results": [], "copy_bandwidth_gbs": 1.0}
    dt.bench_arm(model, "tiny", weights, "stock", [(2, 2), (4, 3)], args, report)
    first, second = report["results"]
    assert first["tokens"] == 4 and "skipped" not in first
    assert "tokens" not in second and second["skipped"].startswith("--arm-budget-s")
    assert dt.summarize(report["results"])[1]["skipped"] == ["stock"]
    # paged also stops inside a call at the deadline: an error row, then the next shape is skipped
    args.cb_num_blocks, args.cb_block_size, args.cb_batch_tokens = 16, 32, 256
    report = {"results": [], "copy_bandwidth_gbs": 1.0}
    dt.bench_arm(model, "tiny", weights, "paged", [(2, 2), (4, 3)], args, report)
    first, second = report["results"]
    assert first["error"].startswith("PagedDeadline: paged: 0/2 requests finished") and "skipped" in second
    # nothing finished, so each request had at most new_tokens - 1 tokens: a bound on the arm's rate
    assert first["finished_requests"] == 0 and first["elapsed_s"] > 0
    assert first["tokens_per_s_upper_bound"] == pytest.approx(2 * (2 - 1) / first["elapsed_s"])


def test_generation_configs_follow_trl() -> None:
    """stock = TRL's config (no compile, dynamic cache); hf_static adds only the static cache; hf_compiled turns on
    transformers' compile; paged disables EOS instead of min_new_tokens."""
    model, _ = dt.build_model("tiny", "cpu", torch.float32)
    stock = dt.trl_generation_config(model, 7, "stock")
    assert stock.disable_compile and stock.cache_implementation is None and stock.min_new_tokens == 7
    assert stock.do_sample and stock.temperature == 1.0 and stock.top_k == 0 and stock.top_p == 1.0
    static = dt.trl_generation_config(model, 7, "hf_static")
    assert static.disable_compile and static.cache_implementation == "static"
    compiled = dt.trl_generation_config(model, 7, "hf_compiled")
    assert not compiled.disable_compile and compiled.cache_implementation == "static"
    assert compiled.compile_config is not None and compiled.compile_config.mode == "reduce-overhead"
    paged = dt.trl_generation_config(model, 7, "paged")
    assert paged.eos_token_id == -1 and paged.disable_compile


def test_shapes_and_copy_bandwidth() -> None:
    parser = argparse.ArgumentParser()
    args = argparse.Namespace(shapes=None, batch=[64, 256], new_tokens=[512, 2048])
    assert dt.parse_shapes(args, parser) == [(64, 512), (64, 2048), (256, 512), (256, 2048)]
    args.shapes = ["1024x2048", "256X512"]
    assert dt.parse_shapes(args, parser) == [(1024, 2048), (256, 512)]
    bw = dt.copy_bandwidth("cpu", nbytes=1 << 20, repeats=2)
    assert bw["copy_bandwidth_gbs"] > 0 and bw["copy_bytes"] == 1 << 20


@pytest.mark.parametrize("arm", ["stock_paged", "stock_static", "stock_static_compile"])
def test_step_time_stock_arms_are_built_as_claimed(arm: str, tmp_path: Path) -> None:
    import step_time

    args = argparse.Namespace(
        model="tiny", steps=1, batch=4, num_generations=2, max_completion_length=8, data="gsm8k",
        max_resample_rounds=None, seed=0, device="cpu", cb_num_blocks=16,
    )  # fmt: skip
    trainer = step_time.build(arm, args, str(tmp_path))
    gen = trainer.generation_config
    if arm == "stock_paged":
        assert trainer.use_transformers_continuous_batching
        assert trainer.continuous_batching_config.num_blocks == 16
        assert trainer.continuous_batching_config.max_memory_percent == 0.5  # TRL's default, kept
    else:
        assert not trainer.use_transformers_continuous_batching and gen.cache_implementation == "static"
        assert gen.disable_compile == (arm == "stock_static")
        assert (gen.compile_config is not None) == (arm == "stock_static_compile")


@pytest.mark.slow
def test_step_time_stock_arms_train(tmp_path: Path) -> None:
    """One timed step of each stock arm and grpo (about a minute on 2 busy cores)."""
    out = tmp_path / "step.json"
    cmd = [
        sys.executable, str(BENCH / "step_time.py"), "--device", "cpu", "--model", "tiny", "--variants", "stock",
        "stock_paged", "stock_static", "stock_static_compile", "grpo", "--steps", "1", "--batch", "4",
        "--num-generations", "2", "--max-completion-length", "8", "--threads", "1", "--cb-num-blocks", "16",
        "--out", str(out),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env={"OMP_NUM_THREADS": "1", **_env()})
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert all("error" not in r for r in report["results"].values()), report["results"]
    assert report["best_stock_arm"] in ("stock", "stock_paged", "stock_static", "stock_static_compile")
    assert set(report["ratio_vs_best_stock"]) == set(report["results"])


def test_grader_pools_grade_like_the_main_thread() -> None:
    import grader_throughput as gt

    samples = gt.gsm8k_samples(40, 0) + gt.symbolic_samples(6, 0)
    expected = sum(right for _, _, right in samples)
    assert expected == 23
    for how, workers in (("main", 1), ("threads", 2), ("processes", 2)):
        result = gt.run(samples, how, workers)
        assert (result["correct"], result["timed_out"]) == (expected, 0), how
        assert result["samples"] == len(samples) and result["samples_per_s"] > 0


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}


def test_engine_memory_run_on_cpu(tmp_path: Path) -> None:
    """engine_memory end to end in static mode: three batch sizes cycle through an engine holding two workspaces,
    so workspaces are evicted, never accumulated; every call decodes its full shape; the series has every call."""
    out = tmp_path / "memory.json"
    cmd = [
        sys.executable, str(BENCH / "engine_memory.py"), "--device", "cpu", "--model", "tiny", "--mode", "static",
        "--calls", "30", "--shapes", "4x6", "2x3", "3x5", "--prompt-len", "10", "--threads", "1", "--warm-calls", "3",
        "--out", str(out),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={"OMP_NUM_THREADS": "1", **_env()})
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["engine_mode"] == "static" and report["warm_until_call"] == 6
    assert report["complete"] and report["calls_done"] == 30  # (a cut run leaves its last tenth's snapshot)
    assert [r["call"] for r in report["series"]] == list(range(1, 31))
    assert report["max_workspaces_seen"] == report["max_workspaces"] == 2
    assert all(r["workspaces"] <= 2 and r["rss"] > 0 for r in report["series"])
    assert set(report["growth"]) == {"rss"} and report["command"].startswith("experiments/bench/engine_memory.py")


def test_engine_memory_growth_arithmetic() -> None:
    """A leak of 1 MiB per call after the warm phase: slope 1 MiB/call; last tenth minus first tenth of 40 calls
    (4 calls each, means 38.5 and 2.5 calls in) = 36 MiB. Flat memory: zero."""
    import engine_memory as em

    mib = 2**20
    leaking = [{"call": c, "rss": 100 * mib + max(0, c - 10) * mib} for c in range(1, 51)]
    g = em.growth(leaking, "rss", start_call=10)
    assert g["slope_bytes_per_call"] == pytest.approx(mib)
    assert g["growth_bytes"] == pytest.approx(36 * mib)
    flat = em.growth([{"call": c, "rss": 5 * mib} for c in range(1, 51)], "rss", start_call=10)
    assert flat == {"slope_bytes_per_call": 0.0, "growth_bytes": 0.0}
    with pytest.raises(argparse.ArgumentTypeError, match="ROWSxNEW_TOKENS"):
        em.parse_shape("128by512")


def test_study_stages_reads_a_finished_study(tmp_path: Path) -> None:
    """study_stages reports the stage times of the study's DONE.json and each arm's and evaluation's own wall time;
    an unfinished folder is named."""
    import study_stages as ss

    folder = tmp_path / "study"
    meta = {"preset": "tiny", "seed": 0, "machine": "CPU", "commit": "abc", "command": "brevity study", "wall_s": 9.0}
    (folder / "arms" / "grpo").mkdir(parents=True)
    (folder / "eval" / "grpo").mkdir(parents=True)
    (folder / "eval" / "base").mkdir(parents=True)
    (folder / "study.json").write_text(json.dumps({"meta": meta}))
    with pytest.raises(FileNotFoundError, match="no finished study"):
        ss.stages(folder)
    (folder / "DONE.json").write_text(json.dumps({"stage_wall_s": {"warm start": 5.0, "arms": 3.0}}))
    (folder / "arms" / "grpo" / "DONE.json").write_text(json.dumps({"wall_s": 2.5}))
    (folder / "eval" / "grpo" / "DONE.json").write_text(json.dumps({"wall_s": 1.0}))
    report = ss.stages(folder)
    assert report["stage_wall_s"] == {"warm start": 5.0, "arms": 3.0} and report["wall_s"] == 9.0
    assert report["arm_train_wall_s"] == {"grpo": 2.5}
    assert report["eval_wall_s"] == {"base": None, "grpo": 1.0}  # base's evaluation did not finish
