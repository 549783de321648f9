"""The transformers rollout engine: token ids in, completions out, as fast as transformers 5.17 allows.

Modes (`mode=`; "auto" is "compiled" on CUDA and "dynamic" elsewhere):
- "dynamic": prefill, then a Python decode loop over a `DynamicCache`, eager. Correct on any device; the CPU choice.
- "static": the same loop over a preallocated `StaticCache`. Decode attention reads each KV head once (transformers'
  sdpa path repeats K/V per query head whenever a padding mask is given) and, by default on CUDA
  (`decode_attention="ragged"`), only each row's own filled slots (`rollouts.decode_attention`, a Triton kernel);
  `"window"` is a masked SDPA over the batch's filled window (rounded up to `kv_bucket` slots), the CPU default. On
  CUDA each decode step is captured as a CUDA graph once per (batch, cache length, window) and replayed; the host
  syncs every `sync_every` steps only.
- "compiled": "static" with the model's decode forward compiled by `torch.compile` (inductor fuses the ~40 small
  kernels per layer that bound an eager step), still captured as CUDA graphs. Sampling stays eager: inductor in torch
  2.11 fails on split argmax/cumsum over a 150k vocabulary. The first call compiles (~35 s on an H200; a second
  engine compiling in the same process took ~3 min); a failed compile falls back to "static" with a warning.
Measured on one H200 (bf16, batch 256, 512 new tokens, temperature 1, experiments/bench/decode_throughput.py), in
tokens/s, window attention: SmolLM2-135M stock TRL path 3.3k, dynamic 10.6k, static 45.7k, compiled 74.0k (22x),
transformers' own continuous batching 1.7k (a mode of this engine until issue 14; the bench's stock `paged` arm
measures it); Qwen2.5-1.5B shape stock 3.3k, dynamic 7.2k, static 33.0k, compiled 46.5k (14x, 21% of the
memory-bandwidth bound). With the ragged kernel SmolLM2 compiled reached 92.7k (stock 2.3k in that run). The kernel
runs one layer's decode attention 1.5-2.1x faster than masked SDPA at the engine's shapes (decode_attention.py).
Static and compiled modes need full-attention models.
Unseeded requests draw their seed from torch's global generator, so `torch.manual_seed` makes them reproducible.

Semantics shared with the vLLM engine and with what TRL 1.16 expects:
- A stop token (eos or `stop_token_ids`) ends a sample and IS kept in `token_ids`: TRL's transformers path keeps the
  first EOS (`completion_mask = (sequence_indices <= eos_idx)` in `GRPOTrainer._generate_single_turn`) and vLLM
  returns it too. `finish_reason` is "stop" when the last token is a stop token, even if it is also the
  `max_tokens`-th one, as vLLM 0.31 (`check_stop` tests the EOS before the length) and TRL's
  `mask_truncated_completions` (the last token) decide; `rollouts.types.finish_reason` states the rule.
- `prompt + prefix + max_tokens > max_model_len` is a ValueError, as in vLLM; nothing is silently clamped.
- `logprobs` are vLLM's "processed_logprobs", which TRL 1.16 asks vLLM for because its importance-sampling correction
  needs "logprobs after temperature scaling and logit processing" (`logprobs_mode="processed_logprobs"` in
  trl/generation/vllm_generation.py): log-softmax of logits / temperature after top-k/top-p filtering, i.e. the
  log-prob of the token under the distribution it was drawn from. Greedy rows use raw logits (T = 1, no filter).
  TRL's trainer side (`_get_per_token_logps_and_entropies` on a temperature-scaled model) matches this whenever
  top_p = 1 and top_k = 0.
- Sampling draws one counter-based uniform per (seed, sample index, step) and inverts the CDF, so a seeded sample does
  not depend on the batch, chunk or mode it runs in (up to float noise in the logits).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import types
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from rollouts.decode_attention import ragged_decode_attention, triton_available
from rollouts.types import HF_MODES, Completion, Request, SamplingParams

logger = logging.getLogger(__name__)

MODES = HF_MODES
DECODE_ATTENTION = ("auto", "ragged", "window")
_ATTN_NAME = "brevity_static"
_M32 = 0xFFFFFFFF
_BELOW_ONE = 1.0 - 2.0**-23  # x * total rounds strictly below total in float32, so a zero-probability end is never hit


def _mul32(x: Any, c: int) -> Any:
    """(x * c) mod 2**32 for x < 2**32 without int64 overflow; works on ints and int64 tensors."""
    return ((x * (c & 0xFFFF)) + (((x * (c >> 16)) & 0xFFFF) << 16)) & _M32


def _hash32(x: Any) -> Any:
    """lowbias32 integer hash (Wellons): a cheap counter-based RNG that runs inside CUDA graphs."""
    x = x & _M32
    x = _mul32(x ^ (x >> 16), 0x7FEB352D)
    x = _mul32(x ^ (x >> 15), 0x846CA68B)
    return x ^ (x >> 16)


def _row_key(seed: int, sample: int) -> int:
    """32-bit stream id of sample `sample` of a request seeded with `seed`."""
    return _hash32(_hash32(seed & _M32) ^ _hash32(((seed >> 32) & _M32) + 0x9E3779B9 * (sample + 1)))


def _uniform(keys: torch.Tensor, step: torch.Tensor | int) -> torch.Tensor:
    """(B,) uniforms in [0, 1), a pure function of (row key, step)."""
    return (_hash32(keys ^ _hash32(step + 0x632BE5AB)) >> 8).to(torch.float32) * (2.0**-24)


def _inverse_cdf(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Index drawn from unnormalised (B, V) probs with uniforms u (B,), via block sums: no full-vocabulary scan.

    A full cumsum over 150k entries is the slowest kernel of a decode step; summing blocks, scanning the block sums
    and then one block is exact inverse-CDF sampling, with the uniform rescaled inside the chosen block.
    """
    batch, vocab = probs.shape
    blocks = next((n for n in (256, 128, 64, 32) if vocab % n == 0), 0)
    if not blocks:
        blocks, probs = 256, F.pad(probs, (0, -vocab % 256))
    probs = probs.view(batch, blocks, -1)  # (B, nb, blk)
    cdf = probs.sum(-1).cumsum(-1)  # (B, nb)
    target = (u.clamp_max(_BELOW_ONE) * cdf[:, -1])[:, None]  # < the total, so the block has mass
    block = torch.searchsorted(cdf, target, right=True).clamp_max(blocks - 1)  # (B, 1)
    before = torch.where(block > 0, cdf.gather(1, (block - 1).clamp_min(0)), 0.0)
    inner = probs.gather(1, block[:, :, None].expand(-1, -1, probs.shape[-1]))[:, 0].cumsum(-1)  # (B, blk)
    u_in = ((target - before) / (cdf.gather(1, block) - before)).clamp(0.0, _BELOW_ONE)
    pos = torch.searchsorted(inner, u_in * inner[:, -1:], right=True).clamp_max(inner.shape[-1] - 1)
    return (block * probs.shape[-1] + pos)[:, 0]


def _sample(
    logits: torch.Tensor, sp: _SamplingTensors, u: torch.Tensor, filtered: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse-CDF sampling of (B, V) logits -> tokens (B,), processed log-probs (B,) in float32."""
    scaled = logits / sp.temperature[:, None]  # (B, V) float32: bf16 logits promote to the float32 temperatures
    if filtered:  # top-k, then top-p over the renormalised top-k distribution (vLLM's order)
        scaled, order = scaled.sort(dim=-1, descending=True)
        rank = torch.arange(scaled.shape[-1], device=scaled.device)
        scaled = scaled.masked_fill(rank >= sp.top_k[:, None], float("-inf"))
        probs = scaled.softmax(-1)
        mass_before = probs.cumsum(-1) - probs
        scaled = scaled.masked_fill((mass_before >= sp.top_p[:, None]) & (sp.top_p < 1)[:, None], float("-inf"))
    lse = scaled.logsumexp(-1, keepdim=True)
    pos = _inverse_cdf((scaled - lse).exp(), u)
    pos = torch.where(sp.greedy, 0 if filtered else logits.argmax(-1), pos)
    tok_logp = (scaled.gather(1, pos[:, None]) - lse)[:, 0]
    return (order.gather(1, pos[:, None])[:, 0] if filtered else pos), tok_logp


@dataclass
class _Row:
    request: int  # -1: a padding row that fills a batch bucket
    ids: list[int]  # prompt + prefix
    params: SamplingParams
    key: int
    prompt_len: int = 0


@dataclass
class _SamplingTensors:
    """Per-row sampling settings on the device, (B,) each; greedy rows get temperature 1 and no filter."""

    temperature: torch.Tensor
    top_p: torch.Tensor
    top_k: torch.Tensor  # 0 -> vocab size
    greedy: torch.Tensor
    keys: torch.Tensor
    max_new: torch.Tensor
    stops: torch.Tensor  # (B, S), padded with -1

    @classmethod
    def build(cls, rows: Sequence[_Row], stops: Sequence[Sequence[int]], vocab: int, device: torch.device, width: int):
        greedy = [r.params.temperature == 0 for r in rows]
        stop_mat = torch.full((len(rows), width), -1, dtype=torch.long)
        for b, s in enumerate(stops):
            stop_mat[b, : len(s)] = torch.tensor(s, dtype=torch.long)

        def t(values: list, dtype: torch.dtype) -> torch.Tensor:
            return torch.tensor(values, dtype=dtype, device=device)

        return cls(
            temperature=t([1.0 if g else r.params.temperature for r, g in zip(rows, greedy)], torch.float32),
            top_p=t([1.0 if g else r.params.top_p for r, g in zip(rows, greedy)], torch.float32),
            top_k=t([vocab if g or r.params.top_k == 0 else r.params.top_k for r, g in zip(rows, greedy)], torch.long),
            greedy=t(greedy, torch.bool),
            keys=t([r.key for r in rows], torch.long),
            max_new=t([r.params.max_tokens for r in rows], torch.long),
            stops=stop_mat.to(device),
        )

    def copy_into(self, other: _SamplingTensors) -> None:
        for name in self.__dataclass_fields__:
            getattr(other, name).copy_(getattr(self, name))


@dataclass
class _Workspace:
    """Static-mode buffers for one (batch, cache length, stop width); CUDA graphs capture their addresses."""

    cache: Any
    sp: _SamplingTensors
    valid: torch.Tensor  # (B, L) bool: which cache slots hold real tokens
    tok: torch.Tensor  # (B,) the token fed to the next step
    lens: torch.Tensor  # (B,) prompt length without padding
    width: torch.Tensor  # () padded prompt width P
    step: torch.Tensor  # () tokens sampled so far
    finished: torch.Tensor  # (B,)
    out_tok: torch.Tensor  # (B, L)
    out_logp: torch.Tensor  # (B, L)
    uniforms: torch.Tensor  # (B, L) float32: the sampling uniform of every (row, step), filled once per chunk
    graphs: dict[tuple[int, bool], Any] = field(default_factory=dict)
    pool: Any = None
    retained: _Retained | None = None  # what the cache holds after the last chunk decoded here
    key: tuple[int, int, int] = (0, 0, 0)  # (cache length, stop width, first parameter's address)


@dataclass
class _Retained:
    """The token behind every valid cache slot of a workspace after a chunk: row b holds `tokens[b]` (prompt, prefix,
    then every generated token that was fed back) at slots `start[b]`, `start[b] + 1`, ... KV at a slot depends only
    on the tokens up to it, so any common prefix with a later row can be copied instead of prefilled again."""

    version: tuple[int, int]  # (first parameter's address, sum of parameter version counters) when it was computed
    by_prompt: dict[tuple[int, ...], list[int]]  # prompt ids -> rows that had that prompt
    tokens: list[np.ndarray]
    start: list[int]


def _static_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    brevity_kv_window: int | None = None,
    brevity_kv_start: torch.Tensor | None = None,
    brevity_kv_end: torch.Tensor | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Attention over the first `brevity_kv_window` cache slots that reads each KV head once: the query heads of a
    KV head are folded into its query rows (transformers' sdpa path repeats K/V per query head under a mask).
    Decode steps given `brevity_kv_start` (B,) / `brevity_kv_end` () read only each row's slots [start, end)
    (`rollouts.decode_attention`); the mask is not needed there."""
    window = brevity_kv_window or key.shape[2]
    if brevity_kv_start is not None and query.shape[2] == 1:
        scale = scaling if scaling is not None else query.shape[-1] ** -0.5
        return ragged_decode_attention(query, key, value, brevity_kv_start, brevity_kv_end, window, scale), None
    key, value = key[:, :, :window], value[:, :, :window]
    batch, heads, q_len, dim = query.shape
    groups = heads // key.shape[1]  # query heads j*G .. j*G+G-1 share KV head j (transformers' repeat_kv order)
    q = query.reshape(batch, key.shape[1], groups * q_len, dim)  # rows: group-major, then position
    mask = attention_mask[..., :window] if attention_mask is not None else None
    if mask is not None and groups > 1 and q_len > 1 and mask.shape[-2] == q_len:  # not folded by the caller yet
        mask = mask.repeat(1, 1, groups, 1)  # (B, 1, G*Q, W), the same rows order as q
    out = F.scaled_dot_product_attention(q, key, value, attn_mask=mask, scale=scaling)
    return out.reshape(batch, heads, q_len, dim).transpose(1, 2), None  # efficient SDPA returns a transposed view


def _prefill_kernels(device: torch.device) -> Any:
    """SDPA backends for the prefill: cuDNN builds an execution plan for every new shape (~0.5-0.8 s each on an
    H200, seen as prefill spikes in segment rollouts, whose widths change every call); decode shapes are fixed per
    captured graph and keep the default choice."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH])


def _register_attention() -> None:
    from transformers import AttentionInterface

    AttentionInterface.register(_ATTN_NAME, _static_attention)


class HFEngine:
    """`Engine` over a transformers causal LM (see the module docstring for modes and semantics)."""

    def __init__(
        self,
        model_or_path: Any,
        *,
        tokenizer: Any = None,
        device: str | None = None,
        dtype: str = "auto",
        max_batch_size: int = 256,
        mode: str = "auto",
        max_model_len: int | None = None,
        kv_bucket: int = 128,
        sync_every: int | None = None,
        ignore_eos: bool = False,
        max_workspaces: int = 2,
        batch_buckets: bool | None = None,
        prefix_reuse: bool = True,
        max_prefill_tokens: int = 32768,
        decode_attention: str = "auto",
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"HFEngine mode must be one of {MODES}, got {mode!r}")
        if decode_attention not in DECODE_ATTENTION:
            raise ValueError(f"HFEngine decode_attention must be one of {DECODE_ATTENTION}, got {decode_attention!r}")
        if isinstance(model_or_path, (str, os.PathLike)):
            from rollouts.models import load_model, load_tokenizer

            self.model = load_model(str(model_or_path), dtype=dtype, device=device)
            tokenizer = tokenizer if tokenizer is not None else load_tokenizer(str(model_or_path))
        else:
            self.model = model_or_path if device is None else model_or_path.to(device)
        self.device = self.model.device
        config = self.model.config.get_text_config(decoder=True)
        gen = self.model.generation_config
        eos: list[int] = []
        for source in (getattr(tokenizer, "eos_token_id", None), gen.eos_token_id if gen else None):
            if tokenizer is None and source is None:
                source = config.eos_token_id
            eos += [source] if isinstance(source, int) else list(source or [])
        self.eos_token_ids: tuple[int, ...] = tuple(dict.fromkeys(eos))
        if not self.eos_token_ids:
            raise ValueError(
                "HFEngine needs an EOS token: neither the tokenizer nor the model's generation config has one"
            )
        pad = getattr(tokenizer, "pad_token_id", None) if tokenizer is not None else None
        self.pad_token_id: int = (
            pad if pad is not None else (gen.pad_token_id if gen and gen.pad_token_id is not None else eos[0])
        )
        self.max_model_len: int = max_model_len or getattr(config, "max_position_embeddings", None) or 0
        if self.max_model_len <= 0:
            raise ValueError("HFEngine: pass max_model_len; the model config has no max_position_embeddings")
        self.vocab_size: int = self.model.get_output_embeddings().weight.shape[0]
        self.mode = ("compiled" if self.device.type == "cuda" else "dynamic") if mode == "auto" else mode
        self.max_batch_size, self.kv_bucket, self.ignore_eos = max_batch_size, kv_bucket, ignore_eos
        self.sync_every = sync_every or (16 if self.device.type == "cuda" else 1)
        # static mode: one workspace per batch bucket, least recently used first (a trace call and its exits call
        # alternate between two sizes; rebuilding means recapturing every CUDA graph)
        self._workspaces: OrderedDict[int, _Workspace] = OrderedDict()
        self.max_workspaces = max(1, max_workspaces)
        self.batch_buckets = self.device.type == "cuda" if batch_buckets is None else batch_buckets
        self.prefix_reuse = prefix_reuse
        self.max_prefill_tokens = max_prefill_tokens  # static modes: tokens per prefill forward (activation memory)
        # static modes' decode attention: "ragged" reads each row's own slots (a Triton kernel on CUDA, plain torch
        # elsewhere), "window" a masked SDPA over the batch's shared window; auto = ragged where Triton runs
        ragged = self.device.type == "cuda" and triton_available()
        self.decode_attention = ("ragged" if ragged else "window") if decode_attention == "auto" else decode_attention
        self.reused_tokens = 0  # prompt + prefix tokens copied from a cache instead of prefilled, since construction
        self._retired: _Workspace | None = None  # a workspace just replaced by a larger one, until its KV was copied
        self.graph_failures = 0
        self.graph_captures = 0
        # benchmarks: set to {} and every chunk syncs the device at phase boundaries and adds wall seconds per phase
        # (prepare, reuse, prefill, decode, collect); None (default) costs nothing
        self.phase_seconds: dict[str, float] | None = None
        # set by `generate(on_finish=...)` for one chunk: (row in chunk, completion) as soon as a row stops
        self._finish_hook: Callable[[int, Completion], None] | None = None
        self._compiled = self.mode == "compiled"
        self._forward_fn = self._forward
        if self.mode in ("static", "compiled"):
            if any(t != "full_attention" for t in getattr(config, "layer_types", None) or ()):
                raise ValueError(f"HFEngine mode {self.mode!r} supports full-attention models only; use 'dynamic'")
            _register_attention()
        if self._compiled:
            # A private copy of the code object gives this engine its own dynamo cache: a second engine (another
            # model) would otherwise recompile the first one's graph with dynamic weight shapes, slowly.
            code = HFEngine._forward.__code__.replace()
            forward = types.FunctionType(code, HFEngine._forward.__globals__, "_forward")
            self._forward_fn = torch.compile(types.MethodType(forward, self))

    # ----------------------------------------------------------------------------------------------- public API
    def generate(
        self, requests: Sequence[Request], on_finish: Callable[[int, Completion], None] | None = None
    ) -> list[list[Completion]]:
        """`requests[i]` -> `params.n` completions, in order (only new tokens; see the module docstring).

        `on_finish(i, completion)` is called once per completion of request i as soon as it is known: in dynamic
        mode at the decode step where the sample stops (so a caller can save it before the batch ends), in the
        other modes when its chunk ends. A request's n > 1 completions arrive in the order they finish.
        """
        rows: list[_Row] = []
        for i, req in enumerate(requests):
            ids = self._validate(i, req)
            seed = req.params.seed if req.params.seed is not None else int(torch.randint(0, 2**62, ()).item())
            rows += [_Row(i, ids, req.params, _row_key(seed, j), len(req.prompt_ids)) for j in range(req.params.n)]
        results: list[Completion | None] = [None] * len(rows)
        reported: set[int] = set()

        def report(r: int, completion: Completion) -> None:
            if on_finish is not None and r not in reported:
                reported.add(r)
                on_finish(rows[r].request, completion)

        was_training = self.model.training
        self.model.eval()
        try:
            # The model runs in its own dtype: a trainer's autocast would give fp32 keys (RoPE upcasts) next to
            # bf16 values, which a static KV cache cannot hold. Train with bf16 weights to decode in bf16.
            with torch.inference_mode(), torch.autocast(self.device.type, enabled=False):
                order = sorted(range(len(rows)), key=lambda r: (rows[r].params.max_tokens, len(rows[r].ids)))
                for start in range(0, len(order), self.max_batch_size):
                    chunk = order[start : start + self.max_batch_size]
                    if on_finish is not None:  # b: the row's position in the chunk
                        self._finish_hook = lambda b, completion, chunk=chunk: report(chunk[b], completion)
                    for r, completion in zip(chunk, self._run_chunk([rows[r] for r in chunk])):
                        results[r] = completion
                        report(r, completion)
        finally:
            self._finish_hook = None
            self.model.train(was_training)
        out: list[list[Completion]] = [[] for _ in requests]
        for row, completion in zip(rows, results):
            out[row.request].append(completion)
        return out

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Copy new weights into the model in place (HF state-dict names), so captured CUDA graphs stay valid."""
        state = self.model.state_dict(keep_vars=True)
        with torch.no_grad():
            for name, tensor in weights:
                if name not in state:
                    raise ValueError(f"load_weights: unknown weight {name!r} (not in the model's state dict)")
                if tuple(tensor.shape) != tuple(state[name].shape):
                    raise ValueError(
                        f"load_weights: {name} has shape {tuple(tensor.shape)}, model has {tuple(state[name].shape)}"
                    )
                state[name].copy_(tensor.to(device=state[name].device, dtype=state[name].dtype))
        self.clear_prefix_cache()

    def reset(self) -> None:
        """Free the static workspaces, their CUDA graphs and cached prefixes (after moving or replacing parameters)."""
        self._workspaces.clear()

    def clear_prefix_cache(self) -> None:
        """Forget what the KV caches hold, so the next call prefills everything (weights changes are detected)."""
        for ws in self._workspaces.values():
            ws.retained = None

    # ----------------------------------------------------------------------------------------------- internals
    @contextmanager
    def _phase(self, name: str) -> Iterator[None]:
        if self.phase_seconds is None:
            yield
            return
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        start = time.perf_counter()
        try:
            yield
        finally:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.phase_seconds[name] = self.phase_seconds.get(name, 0.0) + time.perf_counter() - start

    def _validate(self, i: int, req: Request) -> list[int]:
        if len(req.prompt_ids) == 0:
            raise ValueError(f"request {i}: empty prompt (prompt_ids has no tokens)")
        ids = [int(t) for t in req.prompt_ids] + [int(t) for t in req.prefix_ids]
        if len(ids) >= self.max_model_len:
            raise ValueError(
                f"request {i}: prompt + prefix has {len(ids)} tokens, the model's context is {self.max_model_len}"
            )
        if len(ids) + req.params.max_tokens > self.max_model_len:
            raise ValueError(
                f"request {i}: prompt + prefix ({len(ids)}) + max_tokens ({req.params.max_tokens}) exceeds the "
                f"model's context of {self.max_model_len} tokens; lower max_tokens"
            )
        if any(t < 0 or t >= self.vocab_size for t in ids):
            raise ValueError(f"request {i}: token ids must be in [0, {self.vocab_size})")
        return ids

    def _stops(self, rows: Sequence[_Row]) -> list[list[int]]:
        if self.ignore_eos:
            return [[] for _ in rows]
        return [list(dict.fromkeys([*self.eos_token_ids, *r.params.stop_token_ids])) for r in rows]

    def _bucket(self, batch: int) -> int:
        """Static-mode batch size for `batch` rows: an existing workspace's if at most twice `batch`, else a power of
        two (at least 8, at most max_batch_size), so a few workspaces, CUDA graphs and compiled shapes serve every
        call (a pool that drains would otherwise capture, and compile, one per size)."""
        if not self.batch_buckets or self.mode == "dynamic":
            return batch
        held = [b for b in self._workspaces if batch <= b <= 2 * batch]
        return min(held) if held else max(batch, min(self.max_batch_size, max(8, 1 << (batch - 1).bit_length())))

    def _run_chunk(self, rows: Sequence[_Row]) -> list[Completion]:
        """Left-pad one chunk, decode it with the engine's mode, cut each row at its first stop token."""
        with self._phase("prepare"):
            real = len(rows)
            filler = _Row(-1, [self.pad_token_id], SamplingParams(temperature=0.0, max_tokens=1), 0, 1)
            rows = list(rows) + [filler] * (self._bucket(real) - real)
            batch, width = len(rows), max(len(r.ids) for r in rows)
            ids_np = np.full((batch, width), self.pad_token_id, dtype=np.int64)
            attn_np = np.zeros((batch, width), dtype=np.int64)
            for b, r in enumerate(rows):
                ids_np[b, width - len(r.ids) :] = r.ids
                attn_np[b, width - len(r.ids) :] = 1
            ids, attn = torch.from_numpy(ids_np).to(self.device), torch.from_numpy(attn_np).to(self.device)
            stops = self._stops(rows)
            filtered = any(r.params.temperature > 0 and (r.params.top_p < 1 or r.params.top_k > 0) for r in rows)
            steps = max(r.params.max_tokens for r in rows)
        decode = self._decode_dynamic if self.mode == "dynamic" else self._decode_static
        tokens, logps = decode(rows, stops, ids, attn, steps, filtered)
        with self._phase("collect"):
            return [self._completion(r, s, tokens[b], logps[b]) for b, (r, s) in enumerate(zip(rows[:real], stops))]

    @staticmethod
    def _completion(row: _Row, stops: list[int], tokens: list[int], logps: list[float]) -> Completion:
        tokens = tokens[: row.params.max_tokens]
        stop_set = set(stops)
        end = next((k + 1 for k, t in enumerate(tokens) if t in stop_set), None)
        reason = "stop" if end is not None else "length"
        end = end or len(tokens)
        return Completion(tokens[:end], reason, logps[:end] if row.params.logprobs else None)

    def _prefill_inputs(self, attn: torch.Tensor) -> torch.Tensor:
        return (attn.cumsum(-1) - 1).clamp_min(0)

    def _after_sample(self, tok: torch.Tensor, sp: _SamplingTensors, step: torch.Tensor | int) -> torch.Tensor:
        """(B,) bool: rows that are done once `tok` was sampled as token number `step` (0-based)."""
        return (tok[:, None] == sp.stops).any(-1) | (sp.max_new <= step + 1)

    def _decode_dynamic(self, rows, stops, ids, attn, steps, filtered) -> tuple[list[list[int]], list[list[float]]]:
        """Eager loop over a DynamicCache: simple and correct, the CPU path."""
        from transformers import DynamicCache

        sp = _SamplingTensors.build(rows, stops, self.vocab_size, self.device, max(1, max(map(len, stops))))
        lens = attn.sum(-1)
        cache = DynamicCache(config=self.model.config)
        with self._phase("prefill"):
            out = self.model(
                input_ids=ids, attention_mask=attn, position_ids=self._prefill_inputs(attn), past_key_values=cache,
                use_cache=True, logits_to_keep=1,
            )  # fmt: skip
        finished = torch.zeros(len(rows), dtype=torch.bool, device=self.device)
        reported = finished.clone()
        out_tok, out_logp = [], []
        with self._phase("decode"):
            for t in range(steps):
                tok, logp = _sample(out.logits[:, -1], sp, _uniform(sp.keys, t), filtered)
                out_tok.append(tok)
                out_logp.append(logp)
                finished |= self._after_sample(tok, sp, t)
                if self._finish_hook is not None:
                    reported = self._report_finished(rows, stops, out_tok, out_logp, finished, reported)
                if t + 1 == steps or ((t + 1) % self.sync_every == 0 and bool(finished.all())):
                    break
                attn = torch.cat([attn, attn.new_ones((len(rows), 1))], dim=1)
                out = self.model(
                    input_ids=tok[:, None], attention_mask=attn, position_ids=(lens + t)[:, None],
                    past_key_values=cache, use_cache=True, logits_to_keep=1,
                )  # fmt: skip
        with self._phase("collect"):
            return torch.stack(out_tok, 1).tolist(), torch.stack(out_logp, 1).tolist()

    def _report_finished(self, rows, stops, out_tok, out_logp, finished, reported) -> torch.Tensor:
        """Pass the rows that stopped at this step to `_finish_hook`; returns the new (B,) reported mask."""
        new = (finished & ~reported).nonzero()[:, 0].tolist()  # a host sync: only when a caller asked for it
        if new:
            tokens = torch.stack(out_tok, 1)[new].tolist()
            logps = torch.stack(out_logp, 1)[new].tolist()
            for b, row_tokens, row_logps in zip(new, tokens, logps):
                if rows[b].request >= 0:  # not a padding row
                    self._finish_hook(b, self._completion(rows[b], stops[b], row_tokens, row_logps))
        return finished.clone()

    # ----------------------------------------------------------------------------------------------- static mode
    def _workspace(self, rows: Sequence[_Row], stops: list[list[int]], width: int, steps: int) -> _Workspace:
        from transformers import StaticCache

        batch, bucket = len(rows), self.kv_bucket
        # KV buckets rounded up to an eighth of an octave (under 25% unused; +1: a window never spans the whole,
        # contiguous, cache): a growing prefix (segments) rebuilds the workspace and recaptures its graphs a few
        # times, not once per bucket
        buckets = -(-(width + steps) // bucket)
        step = 1 << max(0, (buckets - 1).bit_length() - 3)
        length = max(buckets, min(-(-buckets // step) * step, -(-self.max_model_len // bucket))) * bucket + 1
        stop_width = max(4, 1 << (max(map(len, stops), default=1) - 1).bit_length())
        params_ptr = next(self.model.parameters()).data_ptr()
        ws = self._workspaces.get(batch)
        # a longer workspace is reused: the window keeps reads at the filled part, captured graphs stay valid
        if ws is not None and ws.key[0] >= length and ws.key[1] >= stop_width and ws.key[2] == params_ptr:
            self._workspaces.move_to_end(batch)
            return ws
        # the old cache lives until this chunk copied its prefixes, then goes (`_decode_static`)
        self._retired = self._workspaces.pop(batch, None)
        while len(self._workspaces) >= self.max_workspaces:
            self._workspaces.popitem(last=False)
        self._make_room(batch * length * self._kv_bytes_per_token())
        dev = self.device
        z = lambda *shape, dtype=torch.long: torch.zeros(shape, dtype=dtype, device=dev)  # noqa: E731
        sp = _SamplingTensors.build(rows, stops, self.vocab_size, dev, stop_width)
        ws = _Workspace(
            cache=StaticCache(config=self.model.config, max_cache_len=length), sp=sp,
            valid=z(batch, length, dtype=torch.bool), tok=z(batch), lens=z(batch), width=z(), step=z(),
            finished=z(batch, dtype=torch.bool), out_tok=z(batch, length), out_logp=z(batch, length, dtype=torch.float32),
            uniforms=z(batch, length, dtype=torch.float32),
            pool=torch.cuda.graph_pool_handle() if dev.type == "cuda" else None,
        )  # fmt: skip
        ws.key = (length, stop_width, params_ptr)
        self._workspaces[batch] = ws
        return ws

    def _kv_bytes_per_token(self) -> int:
        config = self.model.config.get_text_config(decoder=True)
        heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
        dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        return 2 * config.num_hidden_layers * heads * dim * self.model.dtype.itemsize

    def _make_room(self, needed: int) -> None:
        """Free the least recently used caches (the retired one first) until `needed` bytes (+10%) fit on the GPU."""
        if self.device.type != "cuda":
            return
        while True:
            free, _ = torch.cuda.mem_get_info(self.device)
            free += torch.cuda.memory_reserved(self.device) - torch.cuda.memory_allocated(self.device)
            if free >= 1.1 * needed or (self._retired is None and not self._workspaces):
                return
            if self._retired is not None:
                self._retired = None
            else:
                self._workspaces.popitem(last=False)
            torch.cuda.empty_cache()

    def _weights_version(self) -> tuple[int, int]:
        """Changes whenever a parameter is replaced or updated in place (optimizer steps bump version counters)."""
        params = list(self.model.parameters())
        return params[0].data_ptr(), sum(p._version for p in params)

    def _reuse_prefixes(self, ws: _Workspace, rows: Sequence[_Row], width: int, version: tuple[int, int]) -> int:
        """Copy each row's longest cached prefix into `ws` (from any workspace's last chunk with the same prompt,
        computed under weights `version`); returns how many trailing slots still need a prefill (`width` when
        nothing was copied)."""
        if not self.prefix_reuse:
            return width
        candidates = [*self._workspaces.values(), *([self._retired] if self._retired is not None else [])]
        sources = [w for w in candidates if w.retained is not None and w.retained.version == version]
        if not sources:
            return width
        best: list[tuple[int, _Workspace | None, int]] = []  # per row: (common prefix length, source, source row)
        for row in rows:
            ids, found = np.asarray(row.ids), (0, None, -1)
            key = tuple(row.ids[: row.prompt_len])
            for src in sources:
                for b in src.retained.by_prompt.get(key, ()):
                    held = src.retained.tokens[b]
                    m = min(len(held), len(ids) - 1)  # the last id is always fed: its logits start decoding
                    diff = np.flatnonzero(held[:m] != ids[:m])
                    common = int(diff[0]) if diff.size else m
                    if common > found[0]:
                        found = (common, src, b)
            best.append(found)
        suffix = max(len(r.ids) - common for r, (common, _, _) in zip(rows, best))
        if suffix >= width:
            return width
        for to, frm in zip(ws.cache.layers, sources[0].cache.layers):  # a fresh cache allocates on first use
            if not to.is_initialized:
                shape = (len(rows), frm.num_heads, 0)
                to.lazy_initialization(
                    torch.empty((*shape, frm.k_head_dim), dtype=frm.dtype, device=frm.device),
                    torch.empty((*shape, frm.v_head_dim), dtype=frm.dtype, device=frm.device),
                )
        copy_upto = [len(r.ids) - suffix for r in rows]  # tokens [0, n - suffix) come from the cache
        used = {id(s): s for _, s, _ in best if s is not None}
        # `ws` itself first: copies from other workspaces may overwrite rows it is about to read
        for src in sorted(used.values(), key=lambda w: w is not ws):
            picked = [
                (b, sb, n, width - len(row.ids), src.retained.start[sb])
                for b, (row, (_, s, sb), n) in enumerate(zip(rows, best, copy_upto))
                if s is src and n > 0
            ]
            if not picked:
                continue
            dst_b, src_b, count, dst_first, src_first = (np.asarray(x, dtype=np.int64) for x in zip(*picked))
            offset = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)  # 0..n-1 per row
            index = [
                torch.from_numpy(np.repeat(x, count) + (offset if slots else 0)).to(self.device)
                for x, slots in ((dst_b, False), (dst_first, True), (src_b, False), (src_first, True))
            ]
            for to, frm in zip(ws.cache.layers, src.cache.layers):
                for name in ("keys", "values"):
                    getattr(to, name)[index[0], :, index[1]] = getattr(frm, name)[index[2], :, index[3]]
            self.reused_tokens += len(offset)
        return suffix

    def _retain(
        self,
        ws: _Workspace,
        rows: Sequence[_Row],
        width: int,
        tokens: list[list[int]],
        done: int,
        version: tuple[int, int],
    ) -> None:
        """Record what the cache now holds: each row's ids, then the generated tokens that were fed (all but the
        last), whether or not the row had stopped (KV only depends on the tokens before it)."""
        if not self.prefix_reuse:
            return
        by_prompt: dict[tuple[int, ...], list[int]] = {}
        for b, row in enumerate(rows):
            if row.request >= 0:
                by_prompt.setdefault(tuple(row.ids[: row.prompt_len]), []).append(b)
        ws.retained = _Retained(
            version=version, by_prompt=by_prompt,
            tokens=[np.asarray(r.ids + t[: done - 1]) for r, t in zip(rows, tokens)],
            start=[width - len(r.ids) for r in rows],
        )  # fmt: skip

    def _sample_into(self, ws: _Workspace, logits: torch.Tensor, filtered: bool) -> None:
        """Sample token number `ws.step` for every row and advance the state in place (graph-capturable)."""
        # float32 sampling: under the trainer's bf16 autocast the logits arrive in bf16 (and the buffers are fp32).
        tok, logp = _sample(logits.float(), ws.sp, ws.uniforms.index_select(1, ws.step.view(1))[:, 0], filtered)
        ws.out_tok.index_copy_(1, ws.step.view(1), tok[:, None])
        ws.out_logp.index_copy_(1, ws.step.view(1), logp[:, None])
        ws.finished |= self._after_sample(tok, ws.sp, ws.step)
        ws.tok.copy_(tok)
        ws.step += 1

    def _static_step(self, ws: _Workspace, window: int, filtered: bool) -> None:
        """One decode step: feed `ws.tok` at cache slot P + step - 1, then sample (no host sync)."""
        ws.valid.index_fill_(1, (ws.width + ws.step - 1).view(1), True)
        mask = ws.valid[:, None, None, :window]  # (B, 1, 1, W)
        if not self._compiled:
            logits = self._forward(ws, mask)
        else:
            torch._dynamo.maybe_mark_dynamic(mask, 3)  # one compiled graph for every window
            try:
                logits = self._forward_fn(ws, mask)
            except Exception as exc:  # noqa: BLE001 - compilation fails before anything ran; decode uncompiled
                logger.warning("torch.compile of the decode step failed (%s: %s); decoding uncompiled", type(exc), exc)
                self._compiled = False
                logits = self._forward(ws, mask)
        # sampling stays eager: inductor in torch 2.11 fails on split argmax/cumsum over a 150k vocabulary
        self._sample_into(ws, logits, filtered)

    def _forward(self, ws: _Workspace, mask: torch.Tensor) -> torch.Tensor:
        """(B, V) next-token logits; the part "compiled" mode hands to torch.compile."""
        ragged = {}
        if self.decode_attention == "ragged":  # row b holds its tokens at slots [P - len_b, P + step)
            ragged = {"brevity_kv_start": ws.width - ws.lens, "brevity_kv_end": ws.width + ws.step}
        out = self.model(
            input_ids=ws.tok[:, None], position_ids=(ws.lens + ws.step - 1)[:, None], attention_mask=mask,
            past_key_values=ws.cache, use_cache=True, brevity_kv_window=mask.shape[-1], **ragged,
        )  # fmt: skip
        return out.logits[:, -1]

    def _decode_static(self, rows, stops, ids, attn, steps, filtered) -> tuple[list[list[int]], list[list[float]]]:
        """Prefill eagerly, then replay one CUDA graph per KV window (eager steps on CPU)."""
        batch, width = ids.shape
        with self._phase("prepare"):
            ws = self._workspace(rows, stops, width, steps)
            _SamplingTensors.build(rows, stops, self.vocab_size, self.device, ws.sp.stops.shape[1]).copy_into(ws.sp)
            # one pass of ~60 integer kernels for the whole chunk instead of per step (they bound a small batch)
            ws.uniforms[:, :steps] = _uniform(ws.sp.keys[:, None], torch.arange(steps, device=self.device)[None, :])
        version = self._weights_version()
        with self._phase("reuse"):
            cut = width - self._reuse_prefixes(ws, rows, width, version)  # slots [0, cut) now hold copied prefixes
        self._retired = None
        for layer in ws.cache.layers:  # no zeroing: slots are read only where `valid` says they were written
            layer.cumulative_length.fill_(cut)
        ws.retained = None
        ws.valid.zero_()
        ws.valid[:, :width] = attn.bool()
        ws.lens.copy_(attn.sum(-1))
        ws.width.fill_(width)
        ws.step.zero_()
        ws.finished.zero_()
        previous_attn = self.model.config._attn_implementation
        self.model.config._attn_implementation = _ATTN_NAME
        try:
            with self._phase("prefill"):
                out = self._prefill_static(ws, ids, attn, cut)
                self._sample_into(ws, out.logits[:, -1], filtered)
            done = 1
            with self._phase("decode"):
                for t in range(1, steps):
                    window = min(ws.valid.shape[1], -(-(width + t) // self.kv_bucket) * self.kv_bucket)
                    self._replay(ws, window, filtered)
                    done = t + 1
                    if done % self.sync_every == 0 and bool(ws.finished.all()):
                        break
        finally:
            self.model.config._attn_implementation = previous_attn
        with self._phase("collect"):
            tokens = ws.out_tok[:, :done].tolist()
            self._retain(ws, rows, width, tokens, done, version)
            return tokens, ws.out_logp[:, :done].tolist()

    def _prefill_static(self, ws: _Workspace, ids: torch.Tensor, attn: torch.Tensor, cut: int) -> Any:
        """Prefill slots [cut, P) in pieces of at most `max_prefill_tokens` tokens (all rows, a few positions each),
        so activations stay small whatever the batch; returns the last piece's output (logits of slot P - 1)."""
        batch, width = ids.shape
        piece = max(1, self.max_prefill_tokens // batch)
        positions, valid = self._prefill_inputs(attn), attn.bool()
        config = self.model.config.get_text_config(decoder=True)
        groups = config.num_attention_heads // (
            getattr(config, "num_key_value_heads", None) or config.num_attention_heads
        )
        out = None
        with _prefill_kernels(self.device):
            for lo in range(cut, width, piece):
                hi = min(width, lo + piece)
                query = torch.arange(lo, hi, device=self.device)[:, None]
                key = torch.arange(hi, device=self.device)[None, :]
                # causal + padding; a pad row sees itself so no softmax row is empty (NaN-free cache); folded here once
                # for all layers into the (group, position) query rows `_static_attention` uses
                mask = ((key <= query) & valid[:, None, :hi]) | (key == query)  # (B, hi - lo, hi)
                out = self.model(
                    input_ids=ids[:, lo:hi], attention_mask=mask.repeat(1, groups, 1)[:, None],
                    position_ids=positions[:, lo:hi], past_key_values=ws.cache, use_cache=True, logits_to_keep=1,
                    brevity_kv_window=hi,
                )  # fmt: skip
        return out

    def _replay(self, ws: _Workspace, window: int, filtered: bool) -> None:
        """Run the step through its CUDA graph; the first step of a new window runs eagerly, then gets captured."""
        key = (window, filtered)
        graph = ws.graphs.get(key)
        if graph is not None:
            graph.replay()
            return
        self._static_step(ws, window, filtered)  # the real step, doubling as the warm-up (and compile) before capture
        if self.device.type != "cuda" or key in ws.graphs:
            return
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph, pool=ws.pool):
                self._static_step(ws, window, filtered)  # recorded, not run: the state is unchanged
            ws.graphs[key] = graph
            self.graph_captures += 1
        except Exception as exc:  # noqa: BLE001 - an uncapturable model still decodes, eagerly
            logger.warning("CUDA graph capture failed (%s); decoding eagerly", exc)
            ws.graphs[key] = None
            self.graph_failures += 1
