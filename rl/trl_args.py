"""TRL's own settings of an experiment: the flat `GRPOConfig` and `ModelConfig` keys, parsed by TRL's `TrlParser`.

A YAML writes them flat beside brevity's sections, as TRL's example configs do, and the command line overrides them
as in TRL's scripts: `brevity train --config x.yaml --learning_rate 2e-6 --use_peft --lora_r 8`.

What this relies on in TRL 1.16's `TrlParser` (trl/scripts/utils.py, trl/scripts/_hf_argparser.py; TRL is pinned):
- `parse_args_and_config(argv)` is two steps: `set_defaults_with_config(**yaml)` makes each YAML key that names a
  dataclass field the default of that option (other keys come back as `["--key", str(value)]`), then
  `parse_args_into_dataclasses(argv)` parses the command line over those defaults and builds the dataclasses, whose
  `__post_init__` checks run there. brevity runs the same two steps on the YAML it has read itself, because
  `parse_args_and_config` reads with PyYAML's YAML 1.1 loader (`1e-5` is a string) and turns brevity's sections into
  `str(dict)` strings that it refuses as "Unknown arguments from config file".
- argparse converts a string default with the option's type and leaves other values alone, so YAML values reach the
  dataclasses with YAML's types: they are checked here first, so a wrong type names its key.
- `dict | str | None` fields (`generation_kwargs`, `chat_template_kwargs`, `model_init_kwargs`) take JSON on the
  command line (`TrainingArguments.__post_init__` decodes it); bool fields take `--flag`, `--flag false` and, where the
  default is true, `--no_flag`.
brevity builds the parser with `allow_abbrev=False` (a typo never matches a longer option) and
`exit_on_error=False` (a bad value is a ConfigError, not argparse's exit), and reads no `<script>.args` file.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import functools
import os
import re
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rl.config import SECTIONS, ConfigError, type_name, type_ok

COMMAND_LINE = "command line"
RENAMED = {"torch_dtype": "dtype"}  # old spellings TRL's docs and scripts no longer accept


@dataclass(frozen=True)
class TrlSchema:
    """The TRL dataclasses a YAML's flat keys fill (GRPOConfig + ModelConfig for `brevity train`) and the brevity
    sections beside them."""

    classes: tuple[type, ...]
    sections: tuple[str, ...] = SECTIONS

    @functools.cached_property
    def fields(self) -> dict[str, Any]:
        """Every init field -> its annotation."""
        out: dict[str, Any] = {}
        for cls in self.classes:
            hints = typing.get_type_hints(cls)
            out.update({f.name: hints.get(f.name, Any) for f in dataclasses.fields(cls) if f.init})
        return out

    @functools.cached_property
    def negatable(self) -> frozenset[str]:
        """Bool fields whose default is true: argparse also gives them a `--no_<name>` option."""
        return frozenset(f.name for c in self.classes for f in dataclasses.fields(c) if f.init and f.default is True)

    def unknown(self, key: str, what: str) -> str:
        if key in RENAMED:
            return f"unknown {what}: TRL calls it {RENAMED[key]!r} now"
        close = difflib.get_close_matches(key, [*self.fields, *self.sections], n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        names = " or ".join(c.__name__ for c in self.classes)
        return f"unknown {what} (neither a brevity section {self.sections} nor a {names} field){hint}"


def grpo_schema() -> TrlSchema:
    from trl.trainer.grpo_config import GRPOConfig
    from trl.trainer.model_config import ModelConfig

    return TrlSchema((GRPOConfig, ModelConfig))


def check_flat_keys(flat: Mapping[str, Any], source: str, schema: TrlSchema) -> None:
    """Unknown keys (with the closest known name) and values of the wrong type, named as the YAML wrote them."""
    for key, value in flat.items():
        if key not in schema.fields:
            raise ConfigError(source, key, schema.unknown(key, "key"))
        annotation = schema.fields[key]
        if isinstance(value, int) and not isinstance(value, bool) and type_ok(1.0, annotation):
            continue  # YAML writes 1e-6 as a float but 1 as an int; TRL accepts ints for float fields
        if not type_ok(value, annotation) and not (isinstance(value, str) and type_ok("x", annotation)):
            quoted = isinstance(value, str) and _is_number(value) and type_ok(1.0, annotation)
            hint = " (a quoted string: write the number without quotes)" if quoted else ""
            raise ConfigError(source, key, f"expected {type_name(annotation)}, got {value!r}{hint}")


def command_line_keys(argv: Sequence[str], schema: TrlSchema) -> frozenset[str]:
    """The fields `--key value`, `--key=value`, `--no_key` options set; an unknown option is a ConfigError."""
    keys = set()
    for token in argv:
        if not token.startswith("--"):
            continue
        name = token[2:].split("=", 1)[0].replace("-", "_")
        if name not in schema.fields and name.startswith("no_") and name[3:] in schema.negatable:
            name = name[3:]
        if name not in schema.fields:
            raise ConfigError(COMMAND_LINE, f"--{name}", schema.unknown(name, "option"))
        keys.add(name)
    return frozenset(keys)


def environment_defaults(flat: dict[str, Any], source: str) -> None:
    """Settings that depend on the machine, for keys the YAML leaves out: the same YAML runs on a CPU and a GPU."""
    import torch

    flat.setdefault("output_dir", "runs/" + Path(source).stem)
    flat.setdefault("report_to", "none")
    if "bf16" not in flat:  # TRL defaults to bf16, which a CPU refuses
        flat["bf16"] = torch.cuda.is_available()
    if "dataloader_pin_memory" not in flat and not torch.cuda.is_available():
        flat["dataloader_pin_memory"] = False  # nothing to pin for; torch warns about it on every run otherwise
    if not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        if os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
            # DeepSpeed on a CPU machine: accelerate drops DeepSpeed when told it is on a CPU, and without a backend
            # each process would train alone; gloo lets DeepSpeed's CPU accelerator join the processes
            flat.setdefault("ddp_backend", "gloo")
        elif "use_cpu" not in flat:
            # several processes on a CPU machine (experiments/accelerate/cpu_2proc.yaml): accelerate only picks its
            # MULTI_CPU (gloo) mode when told it is on a CPU; otherwise each process would train alone
            flat["use_cpu"] = True


def parse_trl_args(
    flat: Mapping[str, Any],
    source: str,
    yaml_keys: frozenset[str] = frozenset(),
    argv: Sequence[str] = (),
    schema: TrlSchema | None = None,
) -> tuple[Any, ...]:
    """(one instance per schema class, then the keys the command line set) from the flat keys (YAML over paper
    defaults) and the command-line overrides, through TrlParser's two steps (module docstring). The schema defaults
    to GRPOConfig + ModelConfig."""
    from trl.scripts.utils import TrlParser

    schema = schema or grpo_schema()
    check_flat_keys(flat, source, schema)
    cli_keys = command_line_keys(argv, schema)
    values = dict(flat)
    environment_defaults(values, source)
    parser = TrlParser(typing.cast(Any, schema.classes), allow_abbrev=False, exit_on_error=False)
    left = parser.set_defaults_with_config(**values)
    if left:  # every key was checked above; a TRL upgrade that drops a field lands here
        raise ConfigError(source, left[0].lstrip("-"), "not an option of TRL's parser")
    try:
        *parsed, rest = parser.parse_args_into_dataclasses(
            args=list(argv), return_remaining_strings=True, look_for_args_file=False
        )
    except argparse.ArgumentError as e:
        key = (e.argument_name or "").split("/")[0].lstrip("-")
        raise ConfigError(COMMAND_LINE if key in cli_keys else source, key or "<arguments>", e.message) from None
    except (TypeError, ValueError) as e:
        raise ConfigError(source, _keys_named(str(e), schema.fields, yaml_keys | cli_keys), str(e)) from None
    if rest:
        names = " or ".join(c.__name__ for c in schema.classes)
        raise ConfigError(COMMAND_LINE, rest[0], f"not a {names} option (write --key value)")
    return (*parsed, cli_keys)


def grpo_config(flat: Mapping[str, Any], source: str) -> Any:
    """A GRPOConfig from flat keys alone (no command line), with the machine's defaults."""
    return parse_trl_args(flat, source)[0]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _keys_named(message: str, fields: Mapping[str, Any], set_keys: frozenset[str]) -> str:
    """The keys a TRL error message talks about, as the user would fix them (else "GRPOConfig")."""
    named = [k for k in fields if re.search(rf"\b{re.escape(k)}\b", message)]
    if "generation_batch_size" in named and "generation_batch_size" not in set_keys:
        # TRL derives it from per_device_train_batch_size × processes × steps_per_generation
        named = [k for k in named if k != "generation_batch_size"]
        named = ["per_device_train_batch_size", *(k for k in ("steps_per_generation",) if k in set_keys), *named]
    return ", ".join(dict.fromkeys(named)) or "GRPOConfig"
