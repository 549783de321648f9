"""The progress line shows the key metrics of whichever variant is running, and skips what a step did not log."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

from rl.progress import ProgressLine, progress_line


def test_progress_line_formats_present_metrics() -> None:
    logs = {"brevity/accuracy": 0.25, "completions/mean_length": "41.6", "brevity/budget": 87.0, "loss": 0.1}
    line = progress_line(3, 10, logs)
    assert "step 3/10" in line
    assert "acc [cyan]0.25[/cyan]" in line
    assert "len [cyan]42[/cyan]" in line
    assert "B(t) [cyan]87[/cyan]" in line
    assert "|E|" not in line and "refills" not in line


def test_progress_line_skips_unparsable_values() -> None:
    assert "acc" not in progress_line(1, 2, {"brevity/accuracy": "n/a"})


def _state(step: int = 3) -> Any:
    return SimpleNamespace(is_world_process_zero=True, global_step=step, max_steps=10)


def test_one_summary_line_per_log_step_and_the_raw_dict_to_the_logger(capsys, caplog) -> None:
    """No raw metric dict on the terminal (transformers' callbacks are removed in build_trainer): a summary line."""
    callback = ProgressLine()
    args = SimpleNamespace(disable_tqdm=True)
    callback.on_train_begin(args, _state(0), None)
    logs = {"loss": 0.5, "brevity/accuracy": 0.25, "completions/mean_length": 41.0, "num_tokens": 288}
    with caplog.at_level(logging.DEBUG, logger="brevity.metrics"):
        callback.on_log(args, _state(), None, logs=logs)
        callback.on_log(args, _state(), None, logs={"train_runtime": 20.7, "train_loss": 0.1})
    err = capsys.readouterr().err
    assert "step 3/10" in err and "acc 0.25" in err and "trained to step 3 in 21 s" in err
    assert "num_tokens" not in err and "{" not in err
    assert "'num_tokens': 288" in caplog.text  # the raw dict, for whoever wants it


def test_grpo_config_does_not_pin_memory_on_cpu() -> None:
    import torch

    from rl.trl_args import grpo_config as _grpo_config

    config = _grpo_config({"output_dir": "/tmp/x"}, "test.yaml")
    assert config.dataloader_pin_memory is torch.cuda.is_available()


def test_tokenizer_load_silences_the_bpe_clean_up_warning(smollm2_path: str) -> None:
    from rollouts.models import load_tokenizer

    tokenizer = load_tokenizer(smollm2_path)
    assert tokenizer.clean_up_tokenization_spaces is False
    assert tokenizer.decode(tokenizer.encode("Hello , world !")) == "Hello , world !"  # BPE text kept as is
