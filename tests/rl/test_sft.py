"""`brevity sft`: config errors name the file and key before any model is loaded; a warm start trains and resumes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rl.config import ConfigError
from rl.sft import build_dataset, main, parse_sft_config
from rl.train import checkpoints
from study.tiny_model import save_base


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "sft.jsonl"
    rows = [
        {"prompt": f"{i}+1=?", "completion": f"<think>{i}+1={i + 1}.</think>\n<answer>{i + 1}</answer>"}
        for i in range(9)
    ]
    rows[0]["system"] = "IMPORTANT: You should use exactly 40 tokens in your response."
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_config_errors_name_the_key(data: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"s.yaml: learning_rat: unknown key.*did you mean 'learning_rate'"):
        parse_sft_config({"model": "m", "data": {"train": str(data)}, "learning_rat": 1e-3}, "s.yaml")
    with pytest.raises(ConfigError, match=r"s.yaml: data.train: no such file"):
        parse_sft_config({"model": "m", "data": {"train": str(tmp_path / "nope.jsonl")}}, "s.yaml")
    with pytest.raises(ConfigError, match=r"s.yaml: model: required"):
        parse_sft_config({"data": {"train": str(data)}}, "s.yaml")


def test_dataset_is_conversational_with_optional_system_turn(data: Path, tmp_path: Path) -> None:
    config = parse_sft_config({"model": "m", "data": {"train": str(data)}, "output_dir": str(tmp_path)}, "s.yaml")
    ds = build_dataset(config)
    assert ds[0]["prompt"][0]["role"] == "system" and ds[0]["prompt"][1] == {"role": "user", "content": "0+1=?"}
    assert ds[1]["prompt"] == [{"role": "user", "content": "1+1=?"}]
    assert ds[1]["completion"][0]["role"] == "assistant"


def test_warm_start_trains_saves_checkpoints_and_resumes(data: Path, tmp_path: Path) -> None:
    base = save_base(tmp_path / "base", hidden_size=16, layers=1, heads=2, max_positions=64)
    out = tmp_path / "out"
    cfg = tmp_path / "s.yaml"
    cfg.write_text(
        f"model: {base}\ndata: {{train: {data}}}\nmax_steps: 2\nper_device_train_batch_size: 4\n"
        f"save_steps: 1\nlearning_rate: 1.0e-2\noutput_dir: {out}\nreport_to: none\ndisable_tqdm: true\n"
    )
    before = (base / "model.safetensors").read_bytes()
    assert main(["--config", str(cfg)]) == 0
    assert checkpoints(out)[-1] == out / "checkpoint-2"
    assert (out / "model.safetensors").read_bytes() != before  # the weights moved
    assert (out / "tokenizer.json").is_file() and (out / "tokenizer_config.json").is_file()
    cfg.write_text(cfg.read_text().replace("max_steps: 2", "max_steps: 3"))
    assert main(["--config", str(cfg), "--resume", "latest"]) == 0  # continues from checkpoint-2
    assert checkpoints(out)[-1] == out / "checkpoint-3"
    assert main(["--config", str(cfg), "--resume", str(tmp_path / "nowhere")]) == 2
