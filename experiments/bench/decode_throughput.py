"""Decode throughput: brevity's HFEngine against the stock transformers/TRL paths, same run and shapes; prints JSON.

Every run decodes exactly `new_tokens` tokens for each of `batch` random prompts (lengths uniform in
[prompt_len/2, prompt_len], fixed seed), sampling at temperature 1.0; tokens/s = batch * new_tokens / wall time,
prefill included. Weights are random unless a real checkpoint is at hand (only the architecture sets the speed).
`--batch` and `--new-tokens` take several values (every combination runs), or `--shapes 256x512 1024x2048` a list.

Arms (`--modes`):
- "stock": what `GRPOTrainer` does with `use_vllm=False` (trl 1.16.0, trl/trainer/grpo_trainer.py), without the
  trainer (trl is not needed on the GPU machine):
  `__init__`: `generation_kwargs = {"max_new_tokens": max_completion_length, "do_sample": True, "pad_token_id": ...,
  "bos_token_id": ..., "eos_token_id": self.eos_token_ids, "temperature": ..., "top_p": ..., "top_k": ...,
  "min_p": ..., "repetition_penalty": ..., "cache_implementation": args.cache_implementation}`, updated by
  `args.generation_kwargs`, then `self.generation_config = GenerationConfig(**generation_kwargs, disable_compile=True)`,
  with GRPOConfig's defaults temperature 1.0, top_p 1.0, top_k 0, min_p None, repetition_penalty 1.0,
  cache_implementation None. `_generate_single_turn` (regular path): left-pad the prompt ids and the attention mask,
  then under `torch.no_grad()`: `unwrapped_model.generate(input_ids=..., attention_mask=...,
  generation_config=self.generation_config)`.
- "hf_static": the same with `cache_implementation="static"` (GRPOConfig's `cache_implementation`). TRL keeps
  `disable_compile=True` (it is hard-coded, and putting `disable_compile` in `generation_kwargs` raises a TypeError),
  so this is what TRL 1.16 can give: a static cache, decoded eagerly.
- "hf_compiled": transformers' static cache + torch.compile as `generate` does it by itself
  (`cache_implementation="static"`, `compile_config=CompileConfig()`: inductor, mode "reduce-overhead" = CUDA graphs,
  `disable_compile=False`); `generate` compiles the decode forward, the prefill stays eager. Only on CUDA (transformers
  compiles on CUDA/XPU only); elsewhere it is `hf_static` with the row's `hf_compile_active: false`.
- "paged": transformers' continuous batching (paged KV cache) as TRL 1.16's `use_transformers_paged=True`
  (= `use_transformers_continuous_batching`) calls it: `model.generate_batch(prompt_ids, generation_config=<the stock
  config>, continuous_batching_config=ContinuousBatchingConfig(max_memory_percent=0.5), progress_bar=False)` (0.5 is
  TRL's training-aware default). Every call builds a manager, warms it up and frees it, as each TRL step does.
- "dynamic", "static", "compiled": brevity's HFEngine modes (`rollouts/hf_engine.py`); one engine per
  (model, mode) with `max_batch_size` = the largest batch, reused across shapes, as in training.
Deviations from TRL, so every arm decodes the same number of tokens: `min_new_tokens = new_tokens` for the generate
arms, `eos_token_id=-1` for "paged" (continuous batching has no min_new_tokens), `ignore_eos=True` for the engine.

Warm-up, untimed, before each timed call (reported as `first_call_s`): stock/hf_static/paged one call on 8 rows and 4
tokens; hf_compiled two calls at the full shape stopped after 8 decode steps (a new StaticCache per call, as TRL
gets: the second call shows any re-recording); engine modes one full call (graph capture for every KV window).
Dynamo is reset before each compiled arm, so each compiles as in a fresh process. A failing arm (OOM, missing API)
is recorded as {"error": ...} and the others still run; the JSON is rewritten after every shape. Arms run one after
the other (all shapes of an arm, in the order given, then the next arm); `--arm-budget-s` skips ({"skipped": why})
the shapes an arm would not finish within its budget, estimated from its slowest rate so far.

Fraction of the HBM bandwidth bound: a decode step must read every weight once and each row's filled KV cache, so
bytes/step = W + B * 2 * layers * kv_heads * head_dim * bytes * (mean_prompt + new_tokens / 2) (embedding rows and
activations ignored); fraction = bytes/step / (wall / new_tokens) / copy bandwidth, where the copy bandwidth is
measured in the same run (`copy_bandwidth_gbs`: a 1 GiB device-to-device `copy_`, read + write bytes / time, best of
20). The wall time includes the prefill, so the fraction is a lower bound on the decode's.

GPU:  python experiments/bench/decode_throughput.py --models smollm2-135m-instruct qwen2.5-1.5b --batch 256 \
          --new-tokens 512 --modes compiled hf_compiled paged stock --out bench.json
CPU:  python experiments/bench/decode_throughput.py --device cpu --models tiny --shapes 2x4 \
          --modes stock hf_static hf_compiled paged dynamic static --threads 1
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
import traceback
from functools import partial
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # runs from a plain checkout too (GPU machine)
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import commit  # noqa: E402

from rollouts.hf_engine import HFEngine  # noqa: E402
from rollouts.types import Request, SamplingParams  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "rollouts" / "configs"
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
PEAK_BANDWIDTH_GBS = {"H100": 3350.0, "H200": 4800.0}  # datasheet, for reference only: the fraction uses the copy
STOCK_ARMS = ("stock", "hf_static", "hf_compiled", "paged")
ENGINE_ARMS = ("dynamic", "static", "compiled")
ARMS = STOCK_ARMS + ENGINE_ARMS
TRL_CB_MEMORY = 0.5  # trl 1.16 GRPOTrainer: cb_kwargs.setdefault("max_memory_percent", 0.5)


def build_model(name: str, device: str, dtype: torch.dtype) -> tuple[Any, str]:
    """A causal LM and where its weights came from ("checkpoint" or "random")."""
    from transformers import AutoConfig, AutoModelForCausalLM

    if name == "smollm2-135m-instruct":
        try:
            from rollouts.models import resolve_model

            model = AutoModelForCausalLM.from_pretrained(resolve_model(name), dtype=dtype)
            return model.to(device).eval(), "checkpoint"
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
    if model.config.pad_token_id is None:  # Qwen2 configs name no pad id; TRL would use the tokenizer's
        model.config.pad_token_id = model.config.eos_token_id if isinstance(model.config.eos_token_id, int) else 0
    return model.eval(), "random"


def prompts(batch: int, prompt_len: int, vocab: int) -> list[list[int]]:
    g = torch.Generator().manual_seed(1234)
    lens = torch.randint(max(1, prompt_len // 2), prompt_len + 1, (batch,), generator=g)
    return [torch.randint(3, vocab, (int(n),), generator=g).tolist() for n in lens]


def _eos(model: Any) -> list[int]:
    eos = model.config.eos_token_id
    return list(eos) if isinstance(eos, (list, tuple)) else [eos if eos is not None else 0]


def trl_generation_config(model: Any, new_tokens: int, arm: str) -> Any:
    """TRL 1.16's `self.generation_config` (see the module docstring), with the arm's cache and compile settings."""
    from transformers import CompileConfig, GenerationConfig

    cfg = model.config
    kwargs: dict[str, Any] = {
        "max_new_tokens": new_tokens, "do_sample": True, "pad_token_id": cfg.pad_token_id,
        "bos_token_id": cfg.bos_token_id, "eos_token_id": _eos(model), "temperature": 1.0, "top_p": 1.0, "top_k": 0,
        "min_p": None, "repetition_penalty": 1.0, "cache_implementation": None, "disable_compile": True,
    }  # fmt: skip
    if arm == "paged":
        kwargs["eos_token_id"] = -1  # every row decodes new_tokens tokens (no min_new_tokens in continuous batching)
    else:
        kwargs["min_new_tokens"] = new_tokens
    if arm in ("hf_static", "hf_compiled"):
        kwargs["cache_implementation"] = "static"
    if arm == "hf_compiled":
        kwargs.update(disable_compile=False, compile_config=CompileConfig())
    return GenerationConfig(**kwargs)


class StopAfter:
    """A `StoppingCriteria` that ends generation after `steps` calls (warm-ups at the full shape, cache length kept)."""

    def __init__(self, steps: int) -> None:
        self.steps, self.calls = steps, 0

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        self.calls += 1
        return torch.full((input_ids.shape[0],), self.calls >= self.steps, dtype=torch.bool, device=input_ids.device)


def run_generate(model: Any, ids: list[list[int]], new_tokens: int, arm: str, stop_after: int | None = None) -> int:
    """TRL 1.16's `_generate_single_turn` regular path (see the module docstring); returns tokens generated."""
    from transformers import StoppingCriteria, StoppingCriteriaList

    gen = trl_generation_config(model, new_tokens, arm)
    pad = model.config.pad_token_id
    width = max(map(len, ids))
    input_ids = torch.tensor([[pad] * (width - len(x)) + x for x in ids], device=model.device)
    mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids], device=model.device)
    extra: dict[str, Any] = {}
    if stop_after:
        stop = type("StopAfterCriteria", (StopAfter, StoppingCriteria), {})(stop_after)
        extra["stopping_criteria"] = StoppingCriteriaList([stop])
    with torch.no_grad():
        out = model.generate(input_ids=input_ids, attention_mask=mask, generation_config=gen, **extra)
    return (out.shape[1] - width) * len(ids)


def paged_config(args: argparse.Namespace) -> Any:
    """TRL's ContinuousBatchingConfig; `--cb-num-blocks` sizes the cache explicitly (CPU: auto-sizing is slow)."""
    from transformers import ContinuousBatchingConfig

    kwargs: dict[str, Any] = {"max_memory_percent": TRL_CB_MEMORY}
    if args.cb_num_blocks:
        kwargs.update(
            num_blocks=args.cb_num_blocks, block_size=args.cb_block_size, max_batch_tokens=args.cb_batch_tokens
        )
    return ContinuousBatchingConfig(**kwargs)


class PagedDeadline(TimeoutError):
    """The paged arm missed `--arm-budget-s`: what it finished bounds its throughput from above."""

    def __init__(self, finished: int, total: int, finished_tokens: int, new_tokens: int, elapsed_s: float) -> None:
        super().__init__(f"paged: {finished}/{total} requests finished by the --arm-budget-s deadline")
        # every unfinished request had generated fewer than new_tokens tokens when time ran out
        bound = (finished_tokens + (total - finished) * (new_tokens - 1)) / elapsed_s
        self.fields = {"elapsed_s": elapsed_s, "finished_requests": finished, "tokens_per_s_upper_bound": bound}


def run_paged(model: Any, ids: list[list[int]], new_tokens: int, cb_config: Any, deadline: float | None = None) -> int:
    """TRL 1.16's `use_transformers_paged` path: `generate_batch`; raises if a request failed or went missing
    (generate_batch only logs those). With a `deadline` (time.perf_counter() value, from `--arm-budget-s`) it runs
    generate_batch's own steps (context manager with the same workload hints, add_requests, get_result loop) and
    raises TimeoutError once past the deadline, stopping the manager."""
    gen = trl_generation_config(model, new_tokens, "paged")
    if deadline is None:
        with torch.no_grad():
            out = model.generate_batch(
                ids, generation_config=gen, continuous_batching_config=cb_config, progress_bar=False
            )
        failed = [k for k, v in out.items() if v.error is not None]
        if len(out) != len(ids) or failed:
            raise RuntimeError(f"generate_batch returned {len(out)}/{len(ids)} results, {len(failed)} failed")
        return sum(len(v.generated_tokens) for v in out.values())
    from transformers.generation.continuous_batching.utils import WorkloadHints

    hints = WorkloadHints(max_prompt_length=max(map(len, ids)), max_generated_length=new_tokens, num_requests=len(ids))
    tokens, done, start = 0, set(), time.perf_counter()
    with model.continuous_batching_context_manager(
        generation_config=gen, continuous_batching_config=cb_config, block=True, timeout=5, workload_hints=hints
    ) as manager:
        pending = set(manager.add_requests(inputs=ids, max_new_tokens=new_tokens))
        while pending:
            if time.perf_counter() > deadline:
                raise PagedDeadline(len(done), len(ids), tokens, new_tokens, time.perf_counter() - start)
            res = manager.get_result(timeout=1)
            if res is None:
                if not manager.is_running():
                    raise RuntimeError("continuous batching stopped before finishing")
                continue
            if res.is_finished() and res.request_id in pending:
                if res.error is not None:
                    raise RuntimeError(f"continuous batching failed on {res.request_id}: {res.error}")
                pending.discard(res.request_id)
                done.add(res.request_id)
                tokens += len(res.generated_tokens)
    return tokens


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


def copy_bandwidth(device: str, nbytes: int | None = None, repeats: int = 20) -> dict[str, Any]:
    """Device-to-device copy bandwidth, (read + write bytes) / time of one `copy_`, best of `repeats`."""
    cuda = device.startswith("cuda")
    nbytes = nbytes or (2**30 if cuda else 2**26)
    src = torch.ones(nbytes, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        dst.copy_(src)
        sync(device)
        best = min(best, time.perf_counter() - start)
    del src, dst
    return {"copy_bandwidth_gbs": 2 * nbytes / best / 1e9, "copy_bytes": nbytes, "copy_formula": "2 * bytes / time"}


def bandwidth(model: Any, ids: list[list[int]], new_tokens: int, wall: float, copy_gbs: float) -> dict[str, Any]:
    cfg = model.config
    weights = sum({p.data_ptr(): p.numel() * p.element_size() for p in model.parameters()}.values())
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    itemsize = next(model.parameters()).element_size()
    per_token_kv = 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * head_dim * itemsize
    mean_ctx = sum(map(len, ids)) / len(ids) + new_tokens / 2
    step_bytes = weights + len(ids) * per_token_kv * mean_ctx
    step_s = wall / new_tokens
    return {
        "weight_bytes": weights, "kv_bytes_per_token": per_token_kv, "bytes_per_step": step_bytes,
        "step_ms": step_s * 1e3, "achieved_gbs": step_bytes / step_s / 1e9,
        "fraction_of_bandwidth_bound": step_bytes / step_s / (copy_gbs * 1e9),
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


def free(device: str) -> None:
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def bench_arm(
    model: Any, name: str, weights: str, arm: str, shapes: list[tuple[int, int]], args: argparse.Namespace,
    report: dict[str, Any],
) -> None:  # fmt: skip
    """One arm of one model at every shape: untimed warm-up, then the timed call; errors become rows."""
    cuda = args.device.startswith("cuda")
    engine = None
    if arm in ("hf_compiled", "compiled"):
        torch._dynamo.reset()  # each compiled arm compiles as a fresh process would
    try:
        if arm in ENGINE_ARMS:
            engine = HFEngine(
                model, mode=arm, max_batch_size=max(b for b, _ in shapes), ignore_eos=True,
                max_model_len=args.prompt_len + max(t for _, t in shapes),
            )  # fmt: skip
    except Exception as exc:  # noqa: BLE001
        for batch, new_tokens in shapes:
            _error_row(report, name, arm, batch, new_tokens, exc)
        return
    cb_config = paged_config(args) if arm == "paged" else None
    budget = args.paged_budget_s if arm == "paged" and args.paged_budget_s else args.arm_budget_s
    arm_start, per_token_s, batch_done = time.perf_counter(), None, False  # the first shape always runs
    for batch, new_tokens in shapes:
        ids = prompts(batch, args.prompt_len, model.config.vocab_size)
        row: dict[str, Any] = {"model": name, "weights": weights, "arm": arm, "mode": arm, "batch": batch,
                               "new_tokens": new_tokens}  # fmt: skip
        if budget and batch_done:
            spent = time.perf_counter() - arm_start
            estimate = per_token_s * batch * new_tokens * (2 if arm in ENGINE_ARMS else 1) if per_token_s else 0.0
            if spent > budget or (per_token_s and spent + estimate > budget):
                row["skipped"] = f"--arm-budget-s {budget:.0f}: {spent:.0f} s spent + ~{estimate:.0f} s"
                report["results"].append(row)
                _save(report, args.out)
                print(f"[bench] {name} {arm} {batch}x{new_tokens} skipped ({row['skipped']})", file=sys.stderr)
                continue
        batch_done = True
        try:
            deadline = arm_start + budget if budget else None
            warm, run = _calls(model, engine, arm, ids, new_tokens, cb_config, args, deadline)
            first = [timed(w, args.device)[0] for w in warm]
            graphs = _dynamo_graphs()
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            if args.profile:
                from torch.profiler import ProfilerActivity, profile

                with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                    wall, tokens = timed(run, args.device)
                table = prof.key_averages().table(
                    sort_by="self_device_time_total", row_limit=15, max_name_column_width=60
                )
                print(f"[bench] profile {name} {arm} {batch}x{new_tokens}\n{table}", file=sys.stderr)
            else:
                wall, tokens = timed(run, args.device)
        except Exception as exc:  # noqa: BLE001 - one failing arm must not hide the others
            _error_row(report, name, arm, batch, new_tokens, exc)
            free(args.device)
            continue
        row.update(
            tokens=tokens, expected_tokens=batch * new_tokens, wall_s=wall, tokens_per_s=tokens / wall,
            first_call_s=first[0], warmup_s=first,
            peak_gpu_mem_gib=torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
            peak_gpu_reserved_gib=torch.cuda.max_memory_reserved() / 2**30 if cuda else None,
            attn_implementation=model.config._attn_implementation,
        )  # fmt: skip
        if arm == "hf_compiled":
            row["hf_compile_active"] = hasattr(model, "_compiled_call")
        if arm in ("hf_compiled", "compiled"):
            row["graphs_compiled_in_timed_call"] = _dynamo_graphs() - graphs  # 0 unless the timed call recompiled
        if engine is not None:
            row["engine"] = {"mode": engine.mode, "decode_attention": engine.decode_attention,
                             "graph_captures": engine.graph_captures, "graph_failures": engine.graph_failures}  # fmt: skip
        row.update(bandwidth(model, ids, new_tokens, wall, report["copy_bandwidth_gbs"]))
        report["results"].append(row)
        _save(report, args.out)
        per_token_s = max(per_token_s or 0.0, wall / tokens)
        print(f"[bench] {name} {arm} {batch}x{new_tokens}: {row['tokens_per_s']:.0f} tok/s, {wall:.2f} s, "
              f"{row['fraction_of_bandwidth_bound']:.1%} of the copy bandwidth", file=sys.stderr)  # fmt: skip
        free(args.device)
    engine = None
    if arm == "hf_compiled" and hasattr(model, "_compiled_call"):
        del model._compiled_call  # drop the compiled call and its CUDA-graph pool before the next arm
    if arm in ("hf_compiled", "compiled"):
        torch._dynamo.reset()  # frees the CUDA-graph trees' memory pools too (paged sizes its cache on free memory)
    free(args.device)


def _calls(
    model: Any, engine: Any, arm: str, ids: list[list[int]], new_tokens: int, cb_config: Any, args: argparse.Namespace,
    deadline: float | None = None,
) -> tuple[list[Any], Any]:  # fmt: skip
    """(untimed warm-up calls, the timed call) of one arm at one shape (see the module docstring)."""
    if arm in ("stock", "hf_static"):
        return [partial(run_generate, model, ids[:8], 4, arm)], partial(run_generate, model, ids, new_tokens, arm)
    if arm == "hf_compiled":
        warm = partial(run_generate, model, ids, new_tokens, arm, stop_after=args.compile_warmup_steps)
        return [warm, warm], partial(run_generate, model, ids, new_tokens, arm)
    if arm == "paged":
        return [partial(run_paged, model, ids[:8], 4, cb_config)], partial(
            run_paged, model, ids, new_tokens, cb_config, deadline
        )
    run = partial(run_engine, engine, ids, new_tokens)
    return [run], run


def _dynamo_graphs() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def _error_row(report: dict[str, Any], name: str, arm: str, batch: int, new_tokens: int, exc: BaseException) -> None:
    report["results"].append({
        "model": name, "arm": arm, "mode": arm, "batch": batch, "new_tokens": new_tokens,
        "error": f"{type(exc).__name__}: {exc}"[:2000], "traceback": traceback.format_exc(limit=-6)[-4000:],
        **getattr(exc, "fields", {}),
    })  # fmt: skip
    print(f"[bench] {name} {arm} {batch}x{new_tokens} failed: {type(exc).__name__}: {exc}", file=sys.stderr)


def summarize(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (model, shape): each arm's tokens/s, the best stock arm, and each engine arm's ratio to it and to stock."""
    out = []
    keys = dict.fromkeys((r["model"], r["batch"], r["new_tokens"]) for r in results)
    for model, batch, new_tokens in keys:
        rows = {
            r["arm"]: r for r in results if (r["model"], r["batch"], r["new_tokens"]) == (model, batch, new_tokens)
        }
        tps = {a: r.get("tokens_per_s") for a, r in rows.items()}
        stock = {a: v for a, v in tps.items() if a in STOCK_ARMS and v}
        best = max(stock, key=stock.get) if stock else None
        entry: dict[str, Any] = {"model": model, "batch": batch, "new_tokens": new_tokens, "tokens_per_s": tps,
                                 "errors": {a: r["error"] for a, r in rows.items() if "error" in r},
                                 "skipped": [a for a, r in rows.items() if "skipped" in r],
                                 "best_stock_arm": best}  # fmt: skip
        for arm in ENGINE_ARMS:
            if tps.get(arm):
                entry[f"{arm}_vs_best_stock"] = tps[arm] / stock[best] if best else None
                entry[f"{arm}_vs_stock"] = tps[arm] / tps["stock"] if tps.get("stock") else None
        out.append(entry)
    return out


def _save(report: dict[str, Any], out: Path | None) -> None:
    report["summary"] = summarize(report["results"])
    if out:  # after every arm, so a run cut short still leaves its numbers
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")


def parse_shapes(args: argparse.Namespace, parser: argparse.ArgumentParser) -> list[tuple[int, int]]:
    if not args.shapes:
        return [(b, t) for b in args.batch for t in args.new_tokens]
    shapes = []
    for text in args.shapes:
        try:
            b, t = text.lower().split("x")
            shapes.append((int(b), int(t)))
        except ValueError:
            parser.error(f"--shapes: expected BATCHxNEW_TOKENS like 256x512, got {text!r}")
    return shapes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["smollm2-135m-instruct", "qwen2.5-1.5b"],
                        help="smollm2-135m-instruct, tiny, or a config in rollouts/configs (e.g. qwen2.5-1.5b)")  # fmt: skip
    parser.add_argument("--modes", nargs="+", default=None, choices=ARMS, metavar="ARM",
                        help=f"arms, run in this order (of {', '.join(ARMS)}); default: "
                        "compiled hf_compiled paged stock on CUDA, stock hf_static paged dynamic static elsewhere")  # fmt: skip
    parser.add_argument("--batch", type=int, nargs="+", default=[256], help="rows per call (64 256 1024)")
    parser.add_argument("--new-tokens", type=int, nargs="+", default=[512], help="tokens per row (512 2048)")
    parser.add_argument("--shapes", nargs="+", default=None, help="BATCHxNEW_TOKENS list instead of all combinations")
    parser.add_argument("--prompt-len", type=int, default=128, help="longest prompt; lengths are uniform in [L/2, L]")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="auto", help="auto: bfloat16 on CUDA, float32 on CPU")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (1 is fastest on a busy CPU)")
    parser.add_argument("--compile-warmup-steps", type=int, default=8, help="hf_compiled warm-up calls' decode steps")
    parser.add_argument("--cb-num-blocks", type=int, default=None,
                        help="paged: KV blocks (default: TRL's auto-sizing, 50%% of free GPU memory)")  # fmt: skip
    parser.add_argument("--cb-block-size", type=int, default=32, help="paged: tokens per block with --cb-num-blocks")
    parser.add_argument(
        "--cb-batch-tokens", type=int, default=256, help="paged: max batch tokens with --cb-num-blocks"
    )
    parser.add_argument(
        "--arm-budget-s", type=float, default=None,
        help="per (model, arm): skip a shape when the seconds spent plus an estimate from the arm's slowest "
        "tokens/s so far (x2 for engine arms: their warm-up is a full call) exceed this; shapes run in the given order; "
        "paged also stops inside a call at the arm's deadline (an error row)",
    )  # fmt: skip
    parser.add_argument("--check", action="store_true", help="first check that static and dynamic modes agree")
    parser.add_argument(
        "--paged-budget-s", type=float, default=None, help="the paged arm's own --arm-budget-s (default: the same)"
    )
    parser.add_argument("--profile", action="store_true", help="print the top CUDA kernels of each timed run")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = args.device.startswith("cuda")
    default = (
        ["compiled", "hf_compiled", "paged", "stock"] if cuda else ["stock", "hf_static", "paged", "dynamic", "static"]
    )
    args.modes = args.modes or default
    shapes = parse_shapes(args, parser)
    dtype = getattr(torch, args.dtype) if args.dtype != "auto" else (torch.bfloat16 if cuda else torch.float32)
    gpu = torch.cuda.get_device_name() if cuda else "cpu"
    import transformers

    report: dict[str, Any] = {
        "benchmark": "decode_throughput", "device": gpu, "torch": torch.__version__,
        "transformers": transformers.__version__, "commit": commit(), "command": " ".join(sys.argv),
        "shapes": [f"{b}x{t}" for b, t in shapes], "arms": args.modes, "prompt_len": args.prompt_len,
        "dtype": str(dtype), "temperature": 1.0,
        "datasheet_peak_gbs": next((v for k, v in PEAK_BANDWIDTH_GBS.items() if k in gpu), None),
        "bandwidth_formula": "bytes_per_step = W + B*2*layers*kv_heads*head_dim*bytes*(mean_prompt + new_tokens/2); "
        "fraction = bytes_per_step / (wall/new_tokens) / copy_bandwidth_gbs",
        "results": [],
    }  # fmt: skip
    report.update(copy_bandwidth(args.device))
    print(f"[bench] {gpu}: copy bandwidth {report['copy_bandwidth_gbs']:.0f} GB/s", file=sys.stderr)
    for name in args.models:
        if args.check:
            report.setdefault("check", {})[name] = check(name, args.device)
            print(f"[bench] {name} check: {report['check'][name]}", file=sys.stderr)
        try:
            model, weights = build_model(name, args.device, dtype)
        except Exception as exc:  # noqa: BLE001
            for arm in args.modes:
                for batch, new_tokens in shapes:
                    _error_row(report, name, arm, batch, new_tokens, exc)
            continue
        for arm in args.modes:
            bench_arm(model, name, weights, arm, shapes, args, report)
        model = None
        free(args.device)
    _save(report, args.out)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
