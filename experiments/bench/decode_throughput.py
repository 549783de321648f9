"""Decode throughput of HFEngine (each mode) against TRL 1.16's stock transformers generate path; prints JSON.

Every run decodes exactly `--new-tokens` tokens for each of `--batch` random prompts (lengths uniform in
[prompt_len/2, prompt_len], fixed seed), sampling at temperature 1.0; tokens/s = batch * new_tokens / wall time,
prefill included. Weights are random unless a real checkpoint is at hand (only the architecture sets the speed).

The "stock" mode reproduces what `GRPOTrainer` does with `use_vllm=False` (trl 1.16.0, trl/trainer/grpo_trainer.py),
without the trainer (trl is not needed on the GPU machine):
- `__init__`: `generation_kwargs = {"max_new_tokens": max_completion_length, "do_sample": True, "pad_token_id": ...,
  "bos_token_id": ..., "eos_token_id": self.eos_token_ids, "temperature": ..., "top_p": ..., "top_k": ...,
  "min_p": ..., "repetition_penalty": ..., "cache_implementation": args.cache_implementation}` then
  `self.generation_config = GenerationConfig(**generation_kwargs, disable_compile=True)`, with GRPOConfig's defaults
  temperature 1.0, top_p 1.0, top_k 0, min_p None, repetition_penalty 1.0, cache_implementation None.
- `_generate_single_turn` (regular generation path): left-pad the prompt ids with `pad(..., padding_side="left")`,
  attention mask likewise, then under `torch.no_grad()`:
  `unwrapped_model.generate(input_ids=..., attention_mask=..., generation_config=self.generation_config)`.
One deviation, so that every run decodes the same number of tokens: `min_new_tokens = new_tokens` (TRL would stop a
row at EOS; the engine modes get `ignore_eos=True` for the same reason).

Memory-bandwidth bound (printed as `bandwidth_formula`): each decode step reads every weight once and the KV cache
filled so far, so bytes/step ~= W + B * 2 * layers * kv_heads * head_dim * bytes * (mean_prompt + new_tokens / 2);
ideal time = new_tokens * bytes/step / peak bandwidth; fraction = ideal time / measured wall time.

Each mode gets one untimed warm-up call first (graph capture; for "compiled" the torch.compile, reported as
`first_call_s`); dynamo is reset before each model so every model compiles as in a fresh process. `--check` first
compares static and dynamic modes in float32 on the device. "continuous" (transformers' continuous batching) is not in
the default modes: it ran at 1.7k tokens/s on SmolLM2 (H200), below the stock path, and takes minutes.

GPU:  python experiments/bench/decode_throughput.py --models smollm2-135m-instruct qwen2.5-1.5b --batch 256 \
          --new-tokens 512 --modes stock dynamic static compiled --check --out bench.json   (~4 min on an H200)
CPU:  python experiments/bench/decode_throughput.py --device cpu --batch 4 --new-tokens 16 --models tiny
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # runs from a plain checkout too (GPU machine)

from rollouts.hf_engine import HFEngine  # noqa: E402
from rollouts.types import Request, SamplingParams  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[2] / "rollouts" / "configs"
SMOLLM2_CONFIG = {  # the converted SmolLM2-135M-Instruct config, for machines without the GGUF package
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 576, "intermediate_size": 1536,
    "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3, "head_dim": 64, "vocab_size": 49152,
    "max_position_embeddings": 8192, "rms_norm_eps": 1e-5, "tie_word_embeddings": True, "bos_token_id": 1,
    "eos_token_id": 2, "pad_token_id": 2, "rope_parameters": {"rope_theta": 100000.0, "rope_type": "default"},
}  # fmt: skip
TINY_CONFIG = {
    "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 128, "intermediate_size": 256,
    "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 64, "vocab_size": 49152,
    "max_position_embeddings": 1024, "tie_word_embeddings": True, "eos_token_id": 2, "pad_token_id": 2,
}  # fmt: skip
PEAK_BANDWIDTH_GBS = {"H100": 3350.0, "H200": 4800.0}


def build_model(name: str, device: str, dtype: torch.dtype) -> tuple[Any, str]:
    """A causal LM and where its weights came from ("checkpoint" or "random")."""
    from transformers import AutoConfig, AutoModelForCausalLM

    if name == "smollm2-135m-instruct":
        try:
            from rollouts.models import resolve_model

            model = AutoModelForCausalLM.from_pretrained(resolve_model(name), dtype=dtype)
            return model.to(device), "checkpoint"
        except (ImportError, ModuleNotFoundError, FileNotFoundError) as exc:
            print(f"[bench] {name}: no checkpoint here ({exc}); random weights", file=sys.stderr)
            config = AutoConfig.for_model(**SMOLLM2_CONFIG)
    elif name == "tiny":
        config = AutoConfig.for_model(**TINY_CONFIG)
    elif (CONFIGS / f"{name}.json").is_file():
        config = AutoConfig.from_pretrained(str(CONFIGS / f"{name}.json"))
    else:
        raise SystemExit(f"unknown model {name!r}: tiny, smollm2-135m-instruct or a file in {CONFIGS}")
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    return model.eval(), "random"


def prompts(batch: int, prompt_len: int, vocab: int) -> list[list[int]]:
    g = torch.Generator().manual_seed(1234)
    lens = torch.randint(max(1, prompt_len // 2), prompt_len + 1, (batch,), generator=g)
    return [torch.randint(3, vocab, (int(n),), generator=g).tolist() for n in lens]


def run_stock(model: Any, ids: list[list[int]], new_tokens: int) -> int:
    """TRL 1.16's `_generate_single_turn` regular path (see the module docstring); returns tokens generated."""
    from transformers import GenerationConfig

    cfg = model.config
    gen = GenerationConfig(
        max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=True, pad_token_id=cfg.pad_token_id,
        bos_token_id=cfg.bos_token_id, eos_token_id=[cfg.eos_token_id], temperature=1.0, top_p=1.0, top_k=0,
        min_p=None, repetition_penalty=1.0, cache_implementation=None, disable_compile=True,
    )  # fmt: skip
    width = max(map(len, ids))
    input_ids = torch.tensor([[cfg.pad_token_id] * (width - len(x)) + x for x in ids], device=model.device)
    mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids], device=model.device)
    with torch.no_grad():
        out = model.generate(input_ids=input_ids, attention_mask=mask, generation_config=gen)
    return (out.shape[1] - width) * len(ids)


def run_engine(engine: HFEngine, ids: list[list[int]], new_tokens: int) -> int:
    params = SamplingParams(temperature=1.0, max_tokens=new_tokens, seed=0)
    out = engine.generate([Request(x, params) for x in ids])
    return sum(len(c.token_ids) for group in out for c in group)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn: Any, device: str) -> tuple[float, int]:
    sync(device)
    start = time.perf_counter()
    tokens = fn()
    sync(device)
    return time.perf_counter() - start, tokens


def bandwidth(model: Any, ids: list[list[int]], new_tokens: int, wall: float, peak_gbs: float) -> dict[str, Any]:
    cfg = model.config
    weights = sum({p.data_ptr(): p.numel() * p.element_size() for p in model.parameters()}.values())
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    itemsize = next(model.parameters()).element_size()
    per_token_kv = 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * head_dim * itemsize
    mean_ctx = sum(map(len, ids)) / len(ids) + new_tokens / 2
    step_bytes = weights + len(ids) * per_token_kv * mean_ctx
    ideal = new_tokens * step_bytes / (peak_gbs * 1e9)
    return {
        "bandwidth_formula": "new_tokens * (W + B*2*layers*kv_heads*head_dim*bytes*(mean_prompt+new_tokens/2)) / BW",
        "weight_bytes": weights, "kv_bytes_per_token": per_token_kv, "bytes_per_step": step_bytes,
        "peak_bandwidth_gbs": peak_gbs, "ideal_s": ideal, "fraction_of_bandwidth_bound": ideal / wall,
    }  # fmt: skip


def check(name: str, device: str) -> dict[str, Any]:
    """Static and dynamic modes agree on this device in float32: ids of greedy and seeded rows, and their logprobs."""
    model, _ = build_model(name, device, torch.float32)
    ids = prompts(6, 24, model.config.vocab_size)
    params = [SamplingParams(temperature=0 if i % 2 else 1.0, max_tokens=20, seed=i, logprobs=True) for i in range(6)]
    reqs = [Request(x, p) for x, p in zip(ids, params)]
    outs = {m: HFEngine(model, mode=m, max_model_len=4096).generate(reqs) for m in ("dynamic", "static")}
    pairs = [(a[0], b[0]) for a, b in zip(outs["dynamic"], outs["static"])]
    diff = max(abs(x - y) for a, b in pairs for x, y in zip(a.logprobs, b.logprobs))
    return {"same_ids": [a.token_ids == b.token_ids for a, b in pairs], "max_logprob_diff": diff}


def bench_model(name: str, args: argparse.Namespace, dtype: torch.dtype, peak: float, report: dict[str, Any]) -> None:
    """Every mode on one model: a warm-up call (graph capture, compilation), then the timed call."""
    cuda = args.device.startswith("cuda")
    torch._dynamo.reset()  # compile each model as a fresh process would (a second compile in a process is slower)
    model, weights = build_model(name, args.device, dtype)
    ids = prompts(args.batch, args.prompt_len, model.config.vocab_size)
    stock_tps = None
    for mode in args.modes:
        if mode == "stock":
            warm = functools.partial(run_stock, model, ids[:8], 4)
            run = functools.partial(run_stock, model, ids, args.new_tokens)
        else:
            engine = HFEngine(model, mode=mode, max_batch_size=args.batch, ignore_eos=True)
            warm = run = functools.partial(run_engine, engine, ids, args.new_tokens)
        try:
            first_s, _ = timed(warm, args.device)
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            if args.profile:
                from torch.profiler import ProfilerActivity, profile

                with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                    wall, tokens = timed(run, args.device)
                table = prof.key_averages().table(
                    sort_by="self_device_time_total", row_limit=15, max_name_column_width=60
                )
                print(f"[bench] profile {name} {mode}\n{table}", file=sys.stderr)
            else:
                wall, tokens = timed(run, args.device)
        except Exception as exc:  # noqa: BLE001 - one failing mode must not hide the others
            report["results"].append({"model": name, "mode": mode, "error": f"{type(exc).__name__}: {exc}"})
            print(f"[bench] {name} {mode} failed: {exc}", file=sys.stderr)
            continue
        finally:
            engine = warm = run = None
            gc.collect()
        row: dict[str, Any] = {
            "model": name, "weights": weights, "mode": mode, "tokens": tokens, "wall_s": wall,
            "tokens_per_s": tokens / wall, "first_call_s": first_s,
            "peak_gpu_mem_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
        }  # fmt: skip
        stock_tps = row["tokens_per_s"] if mode == "stock" else stock_tps
        row["speedup_vs_stock"] = row["tokens_per_s"] / stock_tps if stock_tps else None
        if name == "qwen2.5-1.5b" or args.peak_bandwidth_gbs:
            row.update(bandwidth(model, ids, args.new_tokens, wall, peak))
        report["results"].append(row)
        if args.out:  # after every mode, so a run cut short still leaves its numbers
            args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"[bench] {name} {mode}: {row['tokens_per_s']:.0f} tok/s, {wall:.2f} s", file=sys.stderr)
        if cuda:
            torch.cuda.empty_cache()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["smollm2-135m-instruct", "qwen2.5-1.5b"])
    parser.add_argument(
        "--modes", nargs="+", default=None, help="default: stock dynamic static, + compiled on CUDA; also continuous"
    )
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--new-tokens", type=int, default=512)
    parser.add_argument("--prompt-len", type=int, default=128, help="longest prompt; lengths are uniform in [L/2, L]")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="auto", help="auto: bfloat16 on CUDA, float32 on CPU")
    parser.add_argument("--peak-bandwidth-gbs", type=float, default=None, help="default: H100 SXM 3350, H200 4800")
    parser.add_argument("--check", action="store_true", help="first check that static and dynamic modes agree")
    parser.add_argument("--profile", action="store_true", help="print the top CUDA kernels of each timed run")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    cuda = args.device.startswith("cuda")
    args.modes = args.modes or ["stock", "dynamic", "static"] + (["compiled"] if cuda else [])
    dtype = getattr(torch, args.dtype) if args.dtype != "auto" else (torch.bfloat16 if cuda else torch.float32)
    gpu = torch.cuda.get_device_name() if cuda else "cpu"
    peak = args.peak_bandwidth_gbs or next((v for k, v in PEAK_BANDWIDTH_GBS.items() if k in gpu), 3350.0)
    report: dict[str, Any] = {
        "device": gpu, "torch": torch.__version__, "batch": args.batch, "new_tokens": args.new_tokens,
        "prompt_len": args.prompt_len, "dtype": str(dtype), "temperature": 1.0, "results": [],
    }  # fmt: skip
    import transformers

    report["transformers"] = transformers.__version__
    for name in args.models:
        if args.check:
            report.setdefault("check", {})[name] = check(name, args.device)
            print(f"[bench] {name} check: {report['check'][name]}", file=sys.stderr)
        bench_model(name, args, dtype, peak, report)
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
