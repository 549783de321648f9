"""`brevity sft --config experiments/<...>.yaml`: a supervised warm start with TRL's `SFTTrainer`, offline.

The YAML holds TRL's `SFTConfig` and `ModelConfig` fields flat (so TRL's docs apply; parsed by TRL's `TrlParser` as in
`brevity train`, so `--learning_rate 1e-3` on the command line overrides the YAML) plus `model` (a path, hub id or
offline alias) and a `data` section naming a prompt/completion file. Prompts and completions are turned into chat messages, so the
model's chat template renders them exactly as `brevity train` and `brevity eval` will, and the loss covers the
completion only (TRL's default for prompt/completion data).

```yaml
model: runs/study/tiny/base
data: {train: runs/study/tiny/data/sft.jsonl, prompt_column: prompt, completion_column: completion}
learning_rate: 3.0e-3
lr_scheduler_type: linear
warmup_steps: 100
max_steps: 2000
per_device_train_batch_size: 32
output_dir: runs/study/tiny/warm_start
```

Checkpoints follow `save_steps`; `--resume latest` continues from the newest one in `output_dir`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rl.config import ConfigError, build_dataclass, load_yaml_file
from rl.policy import check_model_args, from_pretrained_kwargs
from rl.train import resolve_resume
from rl.trl_args import TrlSchema, parse_trl_args

logger = logging.getLogger("brevity.sft")


@dataclass
class SftDataSpec:
    train: str  # a .jsonl / .json / .parquet / .csv file with one prompt and one completion per row
    prompt_column: str = "prompt"
    completion_column: str = "completion"
    system_column: str | None = "system"  # an optional system turn per row (absent or empty: none)
    size: int | None = None  # None: every row


@dataclass
class SftExperiment:
    source: str
    model: str
    data: SftDataSpec
    sft: Any  # trl.SFTConfig
    model_args: Any = None  # trl.ModelConfig
    keys_set: frozenset[str] = frozenset()  # SFTConfig/ModelConfig keys the YAML or the command line set


def parse_sft_config(raw: Any, source: str = "<config>", argv: Sequence[str] = ()) -> SftExperiment:
    """`model` + `data` + flat SFTConfig/ModelConfig keys (`argv` overrides them); every error names the file (or the
    command line) and key, before any model is loaded."""
    from trl.trainer.model_config import ModelConfig
    from trl.trainer.sft_config import SFTConfig

    if not isinstance(raw, dict):
        raise ConfigError(source, "<top level>", "expected a mapping of keys")
    raw = dict(raw)
    model = raw.pop("model", None)
    if not isinstance(model, str) or not model:
        raise ConfigError(source, "model", "required: a model folder, hub id or alias")
    data = build_dataclass(SftDataSpec, raw.pop("data", None) or {}, source, "data.")
    if not Path(data.train).is_file():
        raise ConfigError(source, "data.train", f"no such file: {data.train}")
    schema = TrlSchema((SFTConfig, ModelConfig), sections=("model", "data"))
    sft, model_args, cli_keys = parse_trl_args(raw, source, frozenset(raw), argv, schema)
    check_model_args(model_args, source)
    return SftExperiment(source, model, data, sft, model_args, frozenset(raw) | cli_keys)


def load_sft_config(path: str | Path, argv: Sequence[str] = ()) -> SftExperiment:
    return parse_sft_config(load_yaml_file(path, "sft config"), str(path), argv)


def build_dataset(config: SftExperiment) -> Any:
    """Rows -> conversational prompt/completion pairs (TRL's "prompt-completion" format)."""
    from datasets import Dataset

    from rollouts.data import _read_file

    spec = config.data
    rows = _read_file(Path(spec.train))
    for col in (spec.prompt_column, spec.completion_column):
        if col not in rows[0]:
            raise ConfigError(config.source, "data", f"column {col!r} not in {spec.train} (it has {list(rows[0])})")
    if spec.size is not None:
        rows = rows[: spec.size]

    def prompt(row: dict[str, Any]) -> list[dict[str, str]]:
        system = row.get(spec.system_column) if spec.system_column else None
        user = {"role": "user", "content": row[spec.prompt_column]}
        return [{"role": "system", "content": system}, user] if system else [user]

    return Dataset.from_dict(
        {
            "prompt": [prompt(r) for r in rows],
            "completion": [[{"role": "assistant", "content": r[spec.completion_column]}] for r in rows],
        }
    )


def build_trainer(config: SftExperiment) -> Any:
    from transformers import AutoModelForCausalLM
    from trl.trainer.sft_trainer import SFTTrainer
    from trl.trainer.utils import get_peft_config

    from rollouts.models import load_tokenizer, resolve_model

    dataset = build_dataset(config)
    path = resolve_model(config.model)
    tokenizer = load_tokenizer(path)
    kwargs = from_pretrained_kwargs(config.model_args, config.sft, config.keys_set)  # as in brevity train
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    config.sft.model_init_kwargs = None  # applied above; TRL would warn that they are ignored for a loaded model
    return SFTTrainer(
        model=model,
        args=config.sft,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=get_peft_config(config.model_args),
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="brevity sft",
        description=__doc__.split("\n\n")[0],
        epilog="Any SFTConfig or ModelConfig field overrides the YAML, as in TRL's scripts: --learning_rate 1e-3.",
        allow_abbrev=False,
    )
    p.add_argument("--config", required=True, help="SFT experiment YAML")
    p.add_argument(
        "--resume",
        default=None,
        help="checkpoint folder, or 'latest' for the newest in output_dir (default: the YAML's resume_from_checkpoint)",
    )
    args, overrides = p.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        config = load_sft_config(args.config, overrides)
        # checked before the model loads, as in train
        if args.resume is not None:
            resume = resolve_resume(args.resume, config.sft.output_dir)
        else:
            resume = resolve_resume(
                config.sft.resume_from_checkpoint, config.sft.output_dir, flag="resume_from_checkpoint"
            )
        trainer = build_trainer(config)
    except (ValueError, FileNotFoundError, ModuleNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    trainer.train(resume_from_checkpoint=resume)
    trainer.save_model(config.sft.output_dir)
    trainer.processing_class.save_pretrained(config.sft.output_dir)
    if config.sft.push_to_hub:  # as TRL's sft.py ends
        trainer.push_to_hub()
    return 0


if __name__ == "__main__":
    sys.exit(main())
