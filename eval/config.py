"""What an evaluation is: `EvalConfig`, its checks, its command line, and the rule for resuming into a folder."""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

from eval.samples import slug, write_atomic
from rewards.grading import ANSWER_FORMATS
from rollouts.data import FIELDS, FILE_SUFFIXES, DataSourceError
from rollouts.engines import ENGINES, HF_MODES
from rollouts.models import DEFAULT_MODEL
from rollouts.templates import TEMPLATES
from rollouts.types import SamplingParams

logger = logging.getLogger("brevity.eval")

# Settings that change what a sample is: resuming into a folder made with other values would mix two runs.
GENERATION_KEYS = ("model", "max_tokens", "temperature", "top_p", "template", "budget", "columns", "seed")
GENERATION_KEYS += ("answer_format",)  # grades are stored in the records
USER_ERRORS = (ValueError, FileNotFoundError, ModuleNotFoundError, DataSourceError)  # what bad input raises


class EvalInputError(ValueError):
    """Bad input found before generation (benchmark, model, arguments, columns, an output folder made otherwise)."""


@dataclass
class EvalConfig:
    model: str = DEFAULT_MODEL
    benchmarks: list[str] = field(default_factory=lambda: ["gsm8k"])
    out: str = "runs/eval"
    k: int = 1
    size: int | None = None
    max_tokens: int = 512
    temperature: float = 0.0
    top_p: float = 1.0
    template: str = "boxed"
    answer_format: str | None = None  # None: "answer_tag" when the template asks for <answer> tags, else "boxed"
    budget: int | None = None  # tokens, for the `budget` template
    budgets: list[int] = field(default_factory=list)  # several budgets: one evaluation each (eval/budgets.py)
    columns: dict[str, str] | None = None  # local-file / hf: benchmarks: our field (prompt, answer, id) -> column
    engine: str = "auto"
    engine_mode: str = "auto"  # the transformers engine's mode (rollouts/hf_engine.py); "auto": compiled on CUDA
    seed: int = 0
    batch_size: int = 64
    baseline: str | None = None
    budget_cutoffs: list[int] = field(default_factory=list)
    regrade_prefixes: bool = False  # budget sweep: grade each sample's first C tokens instead of "finished by C"
    overthinking: bool = True  # tokens after the first correct answer (eval/overthinking.py; correct samples only)
    overthinking_format: str | None = None  # the answer format that finds that answer; None: answer_format
    difficulty_column: str | None = None  # bins of tokens_by_difficulty; None: each problem's solve rate
    label: str | None = None

    def __post_init__(self) -> None:
        if self.answer_format is None:
            template = TEMPLATES.get(self.template)
            asks_tags = template is not None and "<answer>" in (template.system or "") + template.suffix
            self.answer_format = "answer_tag" if asks_tags else "boxed"

    def validate(self) -> None:
        """Fail on bad arguments before anything expensive happens."""
        if self.k < 1:
            raise ValueError(f"--k must be >= 1 (samples per problem), got {self.k}")
        for name in ("max_tokens", "batch_size", "size", "budget"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if not self.benchmarks:
            raise ValueError("--benchmarks: give at least one benchmark")
        if len({slug(b) for b in self.benchmarks}) < len(self.benchmarks):
            raise ValueError(f"--benchmarks {self.benchmarks}: two of them would share a samples file")
        if self.template not in TEMPLATES:
            raise ValueError(f"unknown --template {self.template!r}; choose one of {sorted(TEMPLATES)}")
        if self.budget is not None and self.budgets:
            raise ValueError("give --budget N (one evaluation) or --budgets N [N ...] (one per budget), not both")
        if TEMPLATES[self.template].has_budget_slot != (self.budget is not None or bool(self.budgets)):
            raise ValueError("--budget N goes with --template budget (the only template with a token-budget slot)")
        if any(b < 1 for b in self.budgets):
            raise ValueError(f"--budgets must be positive token counts, got {self.budgets}")
        if self.engine_mode not in HF_MODES:
            raise ValueError(f"unknown --engine-mode {self.engine_mode!r}; choose one of {list(HF_MODES)}")
        if self.engine_mode != "auto" and self.engine == "vllm":
            raise ValueError("--engine-mode sets the transformers engine's mode; it does not apply to --engine vllm")
        for name in ("answer_format", "overthinking_format"):
            value = getattr(self, name)
            if value not in ANSWER_FORMATS and (value is not None or name == "answer_format"):
                flag = "--" + name.replace("_", "-")
                raise ValueError(f"unknown {flag} {value!r}; choose one of {list(ANSWER_FORMATS)}")
        if self.engine not in ENGINES:
            raise ValueError(f"unknown --engine {self.engine!r}; choose one of {list(ENGINES)}")
        if any(c < 1 for c in self.budget_cutoffs):
            raise ValueError(f"--budget-cutoffs must be positive token counts, got {self.budget_cutoffs}")
        if self.regrade_prefixes and not self.budget_cutoffs:
            raise ValueError("--regrade-prefixes needs --budget-cutoffs")
        if self.columns is not None:
            if unknown := set(self.columns) - set(FIELDS):
                raise ValueError(f"--columns: unknown fields {sorted(unknown)}; the fields are {list(FIELDS)}")
            if not any(takes_columns(b) for b in self.benchmarks):
                raise ValueError("--columns applies to local files and hf: datasets; no benchmark here is one")
        if self.baseline is not None and not (Path(self.baseline) / "summary.json").is_file():
            raise FileNotFoundError(f"--baseline {self.baseline}: no summary.json there")
        SamplingParams(temperature=self.temperature, top_p=self.top_p, max_tokens=self.max_tokens)
        if self.k > 1 and self.temperature == 0.0:
            logger.warning("k=%d samples with temperature 0 are identical greedy decodes", self.k)


def takes_columns(benchmark: str) -> bool:
    """Whether a benchmark spec is a table (local file or hf: dataset), the kind `--columns` maps."""
    return benchmark.startswith("hf:") or benchmark.lower().endswith(FILE_SUFFIXES)


def check_resume(out: Path, config: EvalConfig) -> None:
    """Refuse to resume into `out` with other generation settings; then record this run's config there."""
    path = out / "config.json"
    if path.is_file():
        before = json.loads(path.read_text())
        changed = [k for k in GENERATION_KEYS if before.get(k) != getattr(config, k)]
        if changed:
            diff = ", ".join(f"{k}: {before.get(k)!r} -> {getattr(config, k)!r}" for k in changed)
            raise ValueError(f"{out} holds samples made with other settings ({diff}); use another --out")
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(asdict(config), indent=2) + "\n")


def _columns(text: str) -> dict[str, str]:
    """`prompt=question,answer=solution` -> {"prompt": "question", "answer": "solution"}."""
    pairs = [item.partition("=") for item in text.split(",") if item.strip()]
    if not pairs or any(not eq or not key.strip() or not col.strip() for key, eq, col in pairs):
        raise argparse.ArgumentTypeError(f"expected FIELD=COLUMN[,FIELD=COLUMN...], got {text!r}")
    return {key.strip(): col.strip() for key, _, col in pairs}


def build_parser() -> argparse.ArgumentParser:
    d = EvalConfig()
    p = argparse.ArgumentParser(
        prog="brevity eval",
        description="Accuracy and token cost of a model on benchmarks (python -m eval.run).",
        epilog="Re-running into the same --out resumes (finished samples are kept); with --budget-cutoffs added, a "
        "finished folder gets an accuracy-vs-token-cutoff sweep without generating again.",
    )
    p.add_argument("--model", default=d.model, help="local path, .gguf file, hub id or alias (default: %(default)s)")
    p.add_argument(
        "--benchmarks",
        nargs="+",
        default=d.benchmarks,
        help="gsm8k aime25 champ (offline copies), aime24 math500 amc23 (hub), rg:<task>[?key=value&...], "
        "hf:<owner>/<name>, or a .jsonl/.json/.parquet/.csv file",
    )
    p.add_argument(
        "--columns", type=_columns, help="for local files / hf: datasets, e.g. prompt=question,answer=solution"
    )
    p.add_argument("--out", default=d.out, help="output folder; re-running into it resumes")
    p.add_argument("--k", type=int, default=d.k, help="samples per problem")
    p.add_argument("--size", type=int, default=d.size, help="first N problems of each benchmark (rg: N generated)")
    p.add_argument("--max-tokens", type=int, default=d.max_tokens)
    p.add_argument("--temperature", type=float, default=d.temperature)
    p.add_argument("--top-p", type=float, default=d.top_p)
    p.add_argument("--template", default=d.template, choices=sorted(TEMPLATES))
    p.add_argument("--budget", type=int, default=None, help="token budget of --template budget")
    p.add_argument(
        "--budgets",
        type=int,
        nargs="+",
        default=[],
        help="several budgets of --template budget: one evaluation each in OUT/budget_<B>/, compared in budgets.md",
    )
    p.add_argument("--answer-format", choices=ANSWER_FORMATS, help="default: answer_tag for think/budget, else boxed")
    p.add_argument("--engine", default=d.engine, choices=list(ENGINES))
    p.add_argument(
        "--engine-mode",
        default=d.engine_mode,
        choices=list(HF_MODES),
        help="transformers engine: 'static' skips compiling (faster for a few thousand samples; default: %(default)s)",
    )
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="most requests per engine call")
    p.add_argument("--baseline", default=None, help="a finished eval folder: adds compression ratio and Δaccuracy")
    p.add_argument("--budget-cutoffs", type=int, nargs="*", default=[], help="token cutoffs for a budget sweep")
    p.add_argument("--regrade-prefixes", action="store_true", help="sweep: grade the first C tokens of each sample")
    p.add_argument(
        "--no-overthinking",
        dest="overthinking",
        action="store_false",
        help="skip finding each correct sample's first correct answer (one pass over its tokens, quadratic in length)",
    )
    p.add_argument(
        "--overthinking-format",
        choices=ANSWER_FORMATS,
        help="answer format that finds the first correct answer (default: --answer-format; 'any': a bare number too)",
    )
    p.add_argument(
        "--difficulty-column",
        help="bin tokens by this column of the benchmark (e.g. level, num_terms); default: each problem's solve rate",
    )
    p.add_argument("--label", default=None, help="run name in tables and plots")
    return p
