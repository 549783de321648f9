"""The study runner: config errors before any stage, finished stages kept, a re-run resumes at the first unfinished one.

The fast test runs the real data, base and warm-start stages (2 SFT steps) and an arm whose config is broken, so
the run stops at the arms; the slow test kills a real run after the warm start, resumes it, and runs the `tiny`
study with very few steps end to end.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from rl.config import ConfigError
from study.config import load_study, parse_study
from study.run import StageError, Study

ROOT = Path(__file__).resolve().parents[2]
TINY = yaml.safe_load((ROOT / "experiments" / "study" / "tiny.yaml").read_text())


def small_preset(**methods: dict) -> dict:
    raw = copy.deepcopy(TINY)
    raw["parallel"] = 1
    raw["sizes"] = {"sft": 256, "train": 64, "eval": 4, "hard": 4}
    raw["model"] = {"init": {"hidden_size": 32, "layers": 1, "heads": 2, "max_positions": 256}}
    raw["sft"].update(max_steps=2, per_device_train_batch_size=8, warmup_steps=0, save_steps=1000)
    raw["train"].update(max_steps=1, per_device_train_batch_size=8, max_completion_length=16, logging_steps=1)
    raw["eval"] = {"k": 1, "temperature": 0.0, "max_tokens": 16, "batch_size": 8}
    raw["methods"] = methods or {"grpo": {"variant": {"name": "grpo"}}}
    return raw


def test_preset_errors_name_the_file_and_key():
    with pytest.raises(ConfigError, match=r"p.yaml: methods: .*`grpo`"):
        parse_study({**TINY, "methods": {"dler": {}}}, "p.yaml")
    with pytest.raises(ConfigError, match=r"p.yaml: methods.dler.varaint: unknown key"):
        parse_study({**TINY, "methods": {"grpo": {}, "dler": {"varaint": {}}}}, "p.yaml")
    with pytest.raises(ConfigError, match=r"task.redundancy.max_checks: expected int"):
        parse_study({**TINY, "task": {"redundancy": {"max_checks": "two"}}}, "p.yaml")
    with pytest.raises(ConfigError, match=r"p.yaml: paralel: unknown key"):
        parse_study({**TINY, "paralel": 2}, "p.yaml")


def test_presets_parse_with_every_method():
    for preset in ("tiny", "smollm2"):
        config = parse_study(yaml.safe_load((ROOT / "experiments/study" / f"{preset}.yaml").read_text()), preset)
        names = [m.name for m in config.methods]
        assert names[0] == "grpo" and set(names) == {
            "grpo",
            "s_grpo",
            "grpo_lambda",
            "dler",
            "curriculum_budget",
            "ulorl",
            "format_length",
        }
        # every arm's experiment YAML is a valid brevity experiment (checked by rl.config, no model loaded)
        from rl.experiment import parse_config

        study = Study(config, Path("/nonexistent"), seed=0)
        for method in config.methods:
            raw = study.arm_config(method, Path("."))
            raw["data"]["train"] = str(ROOT / "experiments/smoke/questions.jsonl")
            parse_config(raw, f"{preset}:{method.name}")


def test_presets_that_extend_another_parse_to_valid_arms():
    """tiny-rewards and the smollm2 GRPO-λ diagnostic extend a preset: the parent's warm start recipe and budget,
    their own arms; every arm is a valid experiment (rewards included)."""
    from rl.experiment import parse_config

    tiny, rewards = (
        load_study(ROOT / "experiments/study/tiny.yaml"),
        load_study(ROOT / "experiments/study/tiny-rewards.yaml"),
    )
    assert rewards.name == "tiny-rewards" and (rewards.task, rewards.sizes, rewards.sft) == (
        tiny.task,
        tiny.sizes,
        tiny.sft,
    )
    assert rewards.train == tiny.train and rewards.eval == tiny.eval
    names = [m.name for m in rewards.methods]
    assert names == ["grpo", "kimi_length", "shortest_correct", "group_length", "hard_limit", "solve_rate_length",
                     "budget_conditioned"]  # fmt: skip
    diagnostic = load_study(ROOT / "experiments/study/diagnostics/smollm2-grpo-lambda.yaml")
    assert diagnostic.sft == load_study(ROOT / "experiments/study/smollm2.yaml").sft and diagnostic.parallel == 5
    lr = load_study(ROOT / "experiments/study/diagnostics/tiny-lr.yaml")
    assert (lr.task, lr.sft, lr.eval) == (tiny.task, tiny.sft, tiny.eval)
    lr_arms = {m.name: Study(lr, Path("/nonexistent"), seed=1).arm_config(m, Path(".")) for m in lr.methods}
    assert [a["learning_rate"] for a in lr_arms.values()] == [2.0e-4, 1.0e-4, 2.0e-4, 1.0e-4]
    for config in (rewards, diagnostic, lr):
        study = Study(config, Path("/nonexistent"), seed=0)
        for method in config.methods:
            raw = study.arm_config(method, Path("."))
            raw["data"]["train"] = str(ROOT / "experiments/smoke/questions.jsonl")
            parse_config(raw, f"{config.name}:{method.name}")
    arms = {
        m.name: Study(diagnostic, Path("/nonexistent"), seed=0).arm_config(m, Path(".")) for m in diagnostic.methods
    }
    assert arms["grpo_lambda_lr3e6"]["learning_rate"] == 3.0e-6 and arms["grpo_lambda"]["learning_rate"] == 1.0e-5


def test_extends_merges_sections_and_names_bad_parents(tmp_path):
    (tmp_path / "parent.yaml").write_text(yaml.safe_dump({**TINY, "name": "parent"}))
    child = tmp_path / "child.yaml"
    child.write_text(yaml.safe_dump({"extends": "parent.yaml", "train": {"learning_rate": 1.0e-5}, "parallel": 3,
                                     "methods": {"grpo": {}}}))  # fmt: skip
    config = load_study(child)
    assert config.name == "child" and config.parallel == 3 and [m.name for m in config.methods] == ["grpo"]
    assert config.train["learning_rate"] == 1.0e-5 and config.train["max_steps"] == TINY["train"]["max_steps"]
    (tmp_path / "loop.yaml").write_text(yaml.safe_dump({"extends": "loop2.yaml"}))
    (tmp_path / "loop2.yaml").write_text(yaml.safe_dump({"extends": "loop.yaml"}))
    with pytest.raises(ConfigError, match=r"loop.*extends: .*a cycle"):
        load_study(tmp_path / "loop.yaml")
    (tmp_path / "orphan.yaml").write_text(yaml.safe_dump({"extends": "missing.yaml"}))
    with pytest.raises(ConfigError, match=r"orphan.yaml: extends: no preset file .*missing.yaml"):
        load_study(tmp_path / "orphan.yaml")


def test_arms_share_the_budget_and_keep_their_papers_settings():
    config = parse_study(TINY, "tiny.yaml")
    study = Study(config, Path("/nonexistent"), seed=0)
    arms = {m.name: study.arm_config(m, Path("warm")) for m in config.methods}
    for arm in arms.values():  # the controlled budget, whatever a paper's default (GRPO-lambda's and DLER's G = 16)
        assert arm["num_generations"] == 8 and arm["max_steps"] == 60 and arm["learning_rate"] == 2.0e-4
        assert arm["per_device_train_batch_size"] == 64 and arm["model"] == "warm"
    assert "temperature" not in arms["ulorl"] and "max_completion_length" not in arms["dler"]  # the papers' own
    assert arms["grpo"]["temperature"] == 1.0 and arms["grpo"]["max_completion_length"] == 192
    assert arms["curriculum_budget"]["data"]["template"] == "budget" and arms["grpo"]["data"]["template"] == "plain"


def test_failed_arm_keeps_finished_stages_and_the_rerun_skips_them(tmp_path):
    raw = small_preset(grpo={"variant": {"name": "grpo"}, "train": {"learning_rat": 1.0}})
    config = parse_study(raw, "small.yaml")
    study = Study(config, tmp_path, seed=0, log=lambda m: None)
    with pytest.raises(StageError, match=r"(?s)arm grpo failed.*learning_rat.*did you mean .learning_rate."):
        study.run("test")
    assert json.loads((tmp_path / "data" / "DONE.json").read_text())["rows"]["sft"] == 256
    assert (tmp_path / "warm_start" / "DONE.json").is_file() and (
        tmp_path / "warm_start" / "model.safetensors"
    ).is_file()
    assert not (tmp_path / "arms" / "grpo" / "DONE.json").exists()
    sft_log = (tmp_path / "warm_start" / "log.txt").read_text()
    data_mtime = (tmp_path / "data" / "eval.jsonl").stat().st_mtime_ns
    # a fresh runner on the same folder: the finished stages run no command and change no file
    again = Study(parse_study(small_preset(), "small.yaml"), tmp_path, seed=0, log=lambda m: None)
    again.stage_data()
    assert again.stage_warm_start() == tmp_path / "warm_start"
    assert (tmp_path / "warm_start" / "log.txt").read_text() == sft_log
    assert (tmp_path / "data" / "eval.jsonl").stat().st_mtime_ns == data_mtime


@pytest.mark.slow
def test_killed_study_resumes_at_the_first_unfinished_stage_and_writes_the_table(tmp_path):
    preset = tmp_path / "small.yaml"
    raw = small_preset(
        grpo={"variant": {"name": "grpo"}},
        dler={"variant": {"name": "dler", "target_length": 16, "max_resample_rounds": 1}},
    )
    raw["sft"]["max_steps"] = 40  # long enough to be killed during the arms, not before
    preset.write_text(yaml.safe_dump(raw))
    out = tmp_path / "study"
    cmd = [sys.executable, "-m", "rl.cli", "study", "--config", str(preset), "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 600
    while not (out / "warm_start" / "DONE.json").exists():
        assert proc.poll() is None and time.time() < deadline, proc.stdout.read() if proc.stdout else ""
        time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    output = proc.communicate(timeout=120)[0]
    assert "finished stages are kept" in output
    first_sft = (out / "warm_start" / "log.txt").read_text()
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (out / "warm_start" / "log.txt").read_text() == first_sft  # the warm start was not run again
    study = json.loads((out / "study.json").read_text())
    assert set(study["arms"]) == {"base", "warm_start", "grpo", "dler"}
    for arm in study["arms"].values():
        assert {"accuracy", "accuracy_stderr", "mean_tokens", "minimal_tokens"} <= set(arm)
        assert 0.0 <= arm["accuracy"] <= 1.0 and arm["minimal_tokens"] > 5
    assert (out / "study.png").is_file() and "| dler |" in (out / "study.md").read_text()
    log = study["arms"]["dler"]["train_log"]  # from the trainer_state.json that brevity train writes
    assert [row["step"] for row in log] == list(range(1, len(log) + 1)) and len(log) == raw["train"]["max_steps"]
    assert all({"accuracy", "mean_length", "reward"} <= set(row) for row in log)


def test_study_evaluations_carry_the_efficiency_metrics_into_the_table(tmp_path, tiny_model_path, monkeypatch):
    """The eval commands the study writes, run in this process on the tiny model, feed study.json and study.md with
    tokens after the first correct answer, the budget-curve area and tokens by number of terms."""
    import eval.run

    raw = small_preset()
    raw["model"] = {"base": tiny_model_path}
    study = Study(parse_study(raw, "small.yaml"), tmp_path, seed=0, log=lambda m: None)
    study.stage_data()
    commands = []

    def run_here(name, argv, folder, slot=0, threads=None):
        commands.append(argv)
        assert argv[0] == "eval.run" and eval.run.main(argv[1:]) == 0
        return 1.0

    monkeypatch.setattr(study, "_run", run_here)
    monkeypatch.setenv("BREVITY_THREADS", "1")
    study.stage_eval(Path(tiny_model_path))
    assert len(commands) == 2  # base and warm start (no arm finished)
    argv = commands[0]
    assert argv[argv.index("--budget-cutoffs") + 1 :][:4] == ["2", "4", "8", "16"]  # 1/8 .. 1 of max_tokens 16
    assert argv[argv.index("--difficulty-column") + 1] == "terms"

    study.stage_wall = {"eval": 2.0}
    table = study.stage_table(Path(tiny_model_path), "brevity study --config small.yaml", 2.0)

    def refuse(constant):
        raise ValueError(constant)

    on_disk = json.loads((tmp_path / "study.json").read_text(), parse_constant=refuse)  # strict JSON
    warm = on_disk["arms"]["warm_start"]
    assert warm["accuracy"] == table["arms"]["warm_start"]["accuracy"]
    for split in ("eval", "hard"):
        s = warm[split]
        assert 0.0 <= s["budget_auc"] <= 1.0 and s["difficulty_by"] == "terms"
        assert s["outcome_efficiency"] is not None  # 0.0 when nothing is correct
        terms = {json.loads(line)["terms"] for line in (tmp_path / "data" / f"{split}.jsonl").read_text().splitlines()}
        assert set(s["tokens_by_difficulty"]) == {str(t) for t in terms}
    assert "| arm | tokens after 1st correct | outcome eff. | budget AUC |" in (tmp_path / "study.md").read_text()
