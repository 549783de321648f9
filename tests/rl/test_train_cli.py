"""`brevity train` start-up and interruption: --resume checked before the model, Ctrl-C names the checkpoint."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import yaml

import rl.train
from rl.train import TiedKeysFilter, main

RG = "rg:chain_sum?min_terms=2&max_terms=2&min_digits=1&max_digits=2"


def _config(tmp_path: Path) -> Path:
    config = {
        "model": "smollm2-135m-instruct",
        "data": {"train": RG, "size": 8},
        "num_generations": 4,
        "per_device_train_batch_size": 8,
        "max_completion_length": 16,
        "max_steps": 1,
        "output_dir": str(tmp_path / "run"),
    }
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


class FakeTrainer:
    """Stands in for BrevityTrainer: records what `train` was asked to resume from, or raises on `train`."""

    def __init__(self, raises: type[BaseException] | None = None) -> None:
        self.model = _tiny_tied_model()
        self.raises, self.resumed_from, self.saved, self.state_saved = raises, "never called", False, False
        self.pushed, self.ended = False, False
        self.accelerator = self  # finish() ends training through accelerate (the process group goes)

    def end_training(self) -> None:
        self.ended = True

    def wait_for_everyone(self) -> None:  # one process: nothing to wait for
        pass

    def train(self, resume_from_checkpoint: str | None = None) -> None:
        self.resumed_from = resume_from_checkpoint
        if self.raises is not None:
            raise self.raises()

    def save_model(self, output_dir: str) -> None:
        self.saved = True

    def save_state(self) -> None:
        self.state_saved = True

    def is_world_process_zero(self) -> bool:
        return True

    def push_to_hub(self) -> None:
        self.pushed = True


def _tiny_tied_model() -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=16, hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, tie_word_embeddings=True,
    )  # fmt: skip
    return LlamaForCausalLM(config)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> dict[str, FakeTrainer]:
    made: dict[str, FakeTrainer] = {}

    def build(config: Any) -> FakeTrainer:
        made["trainer"] = FakeTrainer(made.get("raises"))  # type: ignore[arg-type]
        return made["trainer"]

    monkeypatch.setattr(rl.train, "build_trainer", build)
    return made


@pytest.mark.parametrize(
    ("resume", "fragment"),
    [
        ("{tmp}/no/such/checkpoint", "no such folder"),
        ("{tmp}", "not a training checkpoint"),
        ("latest", "no checkpoint-* folder"),
    ],
)
def test_bad_resume_stops_before_the_model(
    tmp_path: Path, fake: dict[str, Any], capsys: pytest.CaptureFixture[str], resume: str, fragment: str
) -> None:
    path = _config(tmp_path)
    assert main(["--config", str(path), "--resume", resume.format(tmp=tmp_path)]) == 2
    err = capsys.readouterr().err
    assert fragment in err and err.count("\n") == 1 and "Traceback" not in err
    assert "trainer" not in fake  # nothing was built (no model load)


def test_resume_latest_picks_the_newest_or_starts_fresh_when_asked(tmp_path: Path, fake: dict[str, Any]) -> None:
    path = _config(tmp_path)
    assert main(["--config", str(path), "--resume", "latest", "--allow-fresh"]) == 0
    assert fake["trainer"].resumed_from is None and fake["trainer"].saved and fake["trainer"].state_saved
    assert fake["trainer"].ended, "a finished run ends accelerate's training (process group destroyed)"
    for step in (2, 10, 9):
        (tmp_path / "run" / f"checkpoint-{step}").mkdir(parents=True)
    (tmp_path / "run" / "checkpoint-notes").mkdir()  # not a checkpoint; must not crash the sort
    assert main(["--config", str(path), "--resume", "latest"]) == 0
    assert fake["trainer"].resumed_from == str(tmp_path / "run" / "checkpoint-10")


def test_ctrl_c_names_the_latest_checkpoint_and_the_resume_command(
    tmp_path: Path, fake: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    path = _config(tmp_path)
    fake["raises"] = KeyboardInterrupt
    assert main(["--config", str(path)]) == 130
    assert "no checkpoint was saved yet" in capsys.readouterr().err
    (tmp_path / "run" / "checkpoint-3").mkdir(parents=True)
    assert main(["--config", str(path)]) == 130
    err = capsys.readouterr().err
    assert str(tmp_path / "run" / "checkpoint-3") in err
    assert f"brevity train --config {path} --resume latest" in err and "Traceback" not in err
    assert not fake["trainer"].saved and not fake["trainer"].state_saved


def test_ctrl_c_while_loading_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    def interrupted(config: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(rl.train, "build_trainer", interrupted)
    assert main(["--config", str(_config(tmp_path))]) == 130
    assert capsys.readouterr().err.strip() == "interrupted before training started; nothing was written"


def test_tied_lm_head_missing_on_resume_is_not_reported() -> None:
    quiet = TiedKeysFilter(_tiny_tied_model())

    def kept(message: str) -> bool:
        return quiet.filter(logging.LogRecord("transformers.trainer", logging.WARNING, "", 0, message, None, None))

    assert not kept("There were missing keys in the checkpoint model loaded: ['lm_head.weight'].")
    assert kept("There were missing keys in the checkpoint model loaded: ['lm_head.weight', 'model.norm.weight'].")
    assert kept("some other warning")


def test_train_and_compare_help_describe_themselves(capsys: pytest.CaptureFixture[str]) -> None:
    from eval.compare import main as compare_main

    for command in (main, compare_main):
        with pytest.raises(SystemExit):
            command(["--help"])
    out = capsys.readouterr().out
    assert "usage: brevity train" in out and "Train with one of brevity's GRPO variants" in out
    assert "--allow-fresh" in out and "accelerate launch" in out
    assert "usage: brevity compare" in out and "side by side" in out and "output folders of brevity eval" in out
