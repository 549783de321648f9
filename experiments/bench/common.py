"""Helpers shared by the rollout and training benchmarks in this folder (not a library module: scripts import it).

- `add_common_args` / `load_model`: `--model` is an alias, a folder, or "tiny" (a random 2-layer Qwen2 with
  SmolLM2's tokenizer and chat template, built in a temp folder, as tests/conftest.py does; only for CPU smoke runs).
- `CountingEngine`: wraps an `Engine` and records, per `generate` call, what the engine actually computed: rows,
  tokens prefilled (prompt + prefix of every row, minus what HFEngine's prefix reuse copied from its KV cache: an
  exit's trace prefix, a resumed sample's tokens so far), tokens reused, tokens decoded, and decode slots (rows x
  steps the batch ran: static batching keeps a finished row in the batch until its chunk ends).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # runs from a plain checkout too (the GPU machine has no editable install)

from rollouts.types import Completion, Request  # noqa: E402

DEFAULT_MODEL = "smollm2-135m-instruct"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json")
_TINY_DIR: Path | None = None


def add_common_args(parser: argparse.ArgumentParser, *, engine: bool = True) -> None:
    cuda = torch.cuda.is_available()
    parser.add_argument(
        "--model", default=DEFAULT_MODEL,
        help="alias, HF folder, 'tiny' (random, CPU smoke), or a config in rollouts/configs (random weights)",
    )  # fmt: skip
    parser.add_argument("--device", default="cuda" if cuda else "cpu")
    parser.add_argument("--dtype", default="auto", help="auto: bfloat16 on CUDA, float32 on CPU")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON report here")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (1 is fastest on a busy CPU)")
    if engine:
        parser.add_argument(
            "--warmup", action=argparse.BooleanOptionalAction, default=None, help="untimed warm-up (default: on CUDA)"
        )
        parser.add_argument(
            "--mode", default="auto", help="HFEngine mode; auto = compiled (CUDA graphs) on CUDA, dynamic on CPU"
        )
        parser.add_argument(
            "--prefix-reuse", action=argparse.BooleanOptionalAction, default=True,
            help="HFEngine copies cached KV of a row's known prefix instead of prefilling it (static/compiled modes)",
        )  # fmt: skip
        parser.add_argument(
            "--phases", action="store_true",
            help="HFEngine times its phases per call (prepare, reuse, prefill, decode, collect; syncs the GPU)",
        )  # fmt: skip


def setup(args: argparse.Namespace) -> None:
    """Seed torch (HFEngine draws unseeded requests' seeds from it), set CPU threads, resolve `--warmup`."""
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    if getattr(args, "warmup", False) is None:
        args.warmup = str(args.device).startswith("cuda")


def model_path(name: str) -> str:
    """A path or alias `rollouts.models` loads; "tiny" is built once per process in a temp folder."""
    global _TINY_DIR
    if name != "tiny":
        return name
    if _TINY_DIR is None:
        from transformers import AutoTokenizer, GenerationConfig, Qwen2Config, Qwen2ForCausalLM

        from rollouts.models import resolve_model

        source = Path(resolve_model(DEFAULT_MODEL))
        tokenizer = AutoTokenizer.from_pretrained(source)
        config = Qwen2Config(
            vocab_size=len(tokenizer), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
            num_attention_heads=2, num_key_value_heads=1, head_dim=64, max_position_embeddings=2048,
            tie_word_embeddings=True, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
        )  # fmt: skip
        torch.manual_seed(0)
        model = Qwen2ForCausalLM(config).to(torch.float32)
        model.generation_config = GenerationConfig(
            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
        )
        out = Path(tempfile.mkdtemp(prefix="brevity-bench-tiny-"))
        model.save_pretrained(out)
        for file in TOKENIZER_FILES:
            if (source / file).is_file():
                shutil.copy(source / file, out / file)
        _TINY_DIR = out
    return str(_TINY_DIR)


def load_model(name: str, device: str, dtype: str) -> tuple[Any, Any]:
    """(model in eval mode on `device`, left-padding tokenizer).

    A name with a config in rollouts/configs (e.g. "qwen2.5-1.5b") builds that architecture with random weights and
    uses SmolLM2's tokenizer for ids only: every SmolLM2 id is a valid id of the larger vocabulary, and a random
    model almost never samples the EOS id, so its samples run to their caps (long traces: the regime of the paper).
    """
    from rollouts.models import load_model as _load
    from rollouts.models import load_tokenizer

    config_file = REPO / "rollouts" / "configs" / f"{name}.json"
    if config_file.is_file():
        from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

        torch_dtype = torch.bfloat16 if dtype == "auto" and str(device).startswith("cuda") else torch.float32
        if dtype not in ("auto", None):
            torch_dtype = getattr(torch, dtype)
        torch.manual_seed(0)
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(str(config_file)), dtype=torch_dtype)
        tokenizer = load_tokenizer(model_path(DEFAULT_MODEL))
        model.config.eos_token_id, model.config.pad_token_id = tokenizer.eos_token_id, tokenizer.pad_token_id
        model.generation_config = GenerationConfig(
            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
        )
        return model.eval(), tokenizer
    path = model_path(name)
    return _load(path, dtype=dtype, device=device).eval(), load_tokenizer(path)


def make_engine(model: Any, tokenizer: Any, args: argparse.Namespace, **kwargs: Any) -> Any:
    from rollouts.hf_engine import HFEngine

    kwargs.setdefault("prefix_reuse", getattr(args, "prefix_reuse", True))
    engine = HFEngine(model, tokenizer=tokenizer, mode=args.mode, **kwargs)
    if getattr(args, "phases", False):
        engine.phase_seconds = {}
    return engine


def load_prompts(tokenizer: Any, n: int, spec: str, template: str = "boxed") -> tuple[list[list[int]], str]:
    """`n` chat-templated prompt id lists from `spec`, cycling the rows if there are fewer; returns (ids, spec)."""
    from rollouts.data import load_problems
    from rollouts.templates import render

    problems = load_problems(spec, size=n)
    ids = []
    for i in range(n):
        messages = render(template, problems[i % len(problems)].prompt)
        out = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)
        ids.append(list(out["input_ids"]))
    return ids, spec


def sync(device: Any) -> None:
    if str(device).startswith("cuda") and torch.cuda.is_available():
        torch.cuda.synchronize()


@dataclass
class CallStats:
    rows: int
    prefill_tokens: int  # prompt + prefix tokens the engine prefilled (summed over rows, minus reused_tokens)
    reused_tokens: int  # prompt + prefix tokens copied from the engine's KV cache instead (HFEngine prefix reuse)
    decode_tokens: int  # new tokens returned
    decode_slots: int  # rows x decode steps run, per chunk (estimate from the returned lengths)
    wall_s: float
    phases: dict[str, float] | None = None  # HFEngine.phase_seconds spent in this call (`--phases`)


class CountingEngine:
    """An `Engine` that forwards to another and records `CallStats` per `generate` call (timed with a CUDA sync)."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.eos_token_ids = engine.eos_token_ids
        self.max_model_len = engine.max_model_len
        self.calls: list[CallStats] = []

    def generate(self, requests: Sequence[Request]) -> list[list[Completion]]:
        device = getattr(self.engine, "device", "cpu")
        sync(device)
        start = time.perf_counter()
        reused = getattr(self.engine, "reused_tokens", 0)
        phases_before = dict(getattr(self.engine, "phase_seconds", None) or {})
        out = self.engine.generate(requests)
        sync(device)
        wall = time.perf_counter() - start
        reused = getattr(self.engine, "reused_tokens", 0) - reused
        rows = [(r, c) for r, cs in zip(requests, out) for c in cs]
        self.calls.append(
            CallStats(
                rows=len(rows),
                prefill_tokens=sum(len(r.prompt_ids) + len(r.prefix_ids) for r, _ in rows) - reused,
                reused_tokens=reused,
                decode_tokens=sum(len(c.token_ids) for _, c in rows),
                decode_slots=self._slots(rows),
                wall_s=wall,
                phases=self._phases(phases_before),
            )
        )
        return out

    def _phases(self, before: dict[str, float]) -> dict[str, float] | None:
        after = getattr(self.engine, "phase_seconds", None)
        if after is None:
            return None
        return {k: round(v - before.get(k, 0.0), 6) for k, v in after.items()}

    def _slots(self, rows: list[tuple[Request, Completion]]) -> int:
        """HFEngine sorts rows by (max_tokens, context length), runs chunks of `max_batch_size`, and stops a chunk
        once every row finished (checked every `sync_every` steps) or at its largest max_tokens."""
        size = getattr(self.engine, "max_batch_size", len(rows)) or len(rows)
        every = getattr(self.engine, "sync_every", 1)
        order = sorted(rows, key=lambda rc: (rc[0].params.max_tokens, len(rc[0].prompt_ids) + len(rc[0].prefix_ids)))
        slots = 0
        for start in range(0, len(order), size):
            chunk = order[start : start + size]
            cap = max(r.params.max_tokens for r, _ in chunk)
            longest = max(len(c.token_ids) for _, c in chunk)
            slots += len(chunk) * min(cap, math.ceil(longest / every) * every)
        return slots

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        self.engine.load_weights(weights)

    def take(self) -> list[CallStats]:
        """The calls recorded since the last `take`, and forget them."""
        calls, self.calls = self.calls, []
        return calls


def totals(calls: Sequence[CallStats]) -> dict[str, Any]:
    t = {
        k: sum(getattr(c, k) for c in calls)
        for k in ("rows", "prefill_tokens", "reused_tokens", "decode_tokens", "decode_slots")
    }
    t["engine_calls"] = len(calls)
    if any(c.phases for c in calls):
        names = dict.fromkeys(k for c in calls for k in c.phases or {})
        t["phases_s"] = {k: round(sum((c.phases or {}).get(k, 0.0) for c in calls), 4) for k in names}
    t["engine_wall_s"] = sum(c.wall_s for c in calls)
    t["slot_utilization"] = t["decode_tokens"] / t["decode_slots"] if t["decode_slots"] else None
    return t


def calls_json(calls: Sequence[CallStats]) -> list[dict[str, Any]]:
    return [asdict(c) for c in calls]


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def environment(device: str) -> dict[str, Any]:
    import transformers

    info: dict[str, Any] = {
        "device": torch.cuda.get_device_name() if str(device).startswith("cuda") else "cpu",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    try:
        import trl

        info["trl"] = trl.__version__
    except ImportError:
        pass
    return info


def commit() -> str | None:
    """$BREVITY_COMMIT when set (the GPU machine's copy of the tree carries a stale .git: the caller names the
    commit it copied), else the checkout's HEAD (+dirty when rollouts/ or experiments/bench/ have changes)."""
    import os
    import subprocess

    if os.environ.get("BREVITY_COMMIT"):
        return os.environ["BREVITY_COMMIT"]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "rollouts", "experiments/bench"],
            cwd=REPO, capture_output=True, text=True, timeout=10,
        )  # fmt: skip
        if head.returncode == 0:
            return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return None


def save(report: dict[str, Any], out: Path | None) -> None:
    """Write the report to `out` (also mid-run, so a run cut short still leaves its numbers)."""
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")


def emit(report: dict[str, Any], out: Path | None) -> None:
    """Print the report as JSON (and write it to `out`)."""
    save(report, out)
    print(json.dumps(report, indent=2))


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)
