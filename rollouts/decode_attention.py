"""Ragged decode attention for HFEngine's static KV cache: each row reads only its own filled slots.

One decode step attends one query per head over a left-padded cache: row b holds real tokens at slots
[start[b], end) and padding before them. A masked SDPA over a shared window reads the whole window for every row,
and a batch's window is its longest row's. Where lengths differ (S-GRPO exits cut at uniform positions, a UloRL pool
of fresh prompts beside resumed long samples) most of what it reads is padding. This is flash-decoding over the
ragged rows instead:

- stage 1, grid (B * Hkv, splits): a program takes one (row, KV head) and one split of SPLIT_BLOCKS x BLOCK_N
  slots counted from the row's own start, loads the G query heads of that KV head at once (each KV head is read
  once), and keeps an online softmax (running max m, sum l, unnormalised output) over blocks of `BLOCK_N` slots. A
  split past the row's end writes m = -inf, l = 0 and leaves.
- stage 2, grid (B * Hq,): out = sum_s exp(m_s - m) acc_s / sum_s exp(m_s - m) l_s, m = max_s m_s (both stages work
  in base 2: log2(e) is folded into the scale).
Splits are sized so that about `_TARGET_PROGRAMS` programs run whatever the batch (a small batch of long rows would
otherwise leave most SMs idle).

`ragged_decode_attention` is a torch custom op, so torch.compile and CUDA-graph capture treat it as one opaque call;
on a device without Triton (CPU) it runs `reference_attention`, the same arithmetic in plain torch.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any

import torch

_TARGET_PROGRAMS = 1024  # stage-1 programs to aim for: several waves over an H100/H200's 132 SMs
_BLOCK_N = 64  # cache slots per inner block


@functools.cache
def triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


@functools.cache
def _kernels() -> tuple[Any, Any]:
    """The two Triton kernels, built on first use: importing this module needs no Triton."""
    import triton
    import triton.language as tl

    @triton.jit
    def partial_kernel(
        Q, K, V, Start, End, Acc, M, L, scale, num_kv,
        sqb, sqh, skb, skh, skn, svb, svh, svn,
        G: tl.constexpr, BLOCK_G: tl.constexpr, D: tl.constexpr, BLOCK_N: tl.constexpr, SPLIT_BLOCKS: tl.constexpr,
        PREC: tl.constexpr,
    ):  # fmt: skip
        bh = tl.program_id(0)
        split = tl.program_id(1)
        splits = tl.num_programs(1)
        b = bh // num_kv
        h = bh % num_kv
        start = tl.load(Start + b).to(tl.int32)
        end = tl.load(End).to(tl.int32)
        lo = start + split * (SPLIT_BLOCKS * BLOCK_N)
        hi = tl.minimum(lo + SPLIT_BLOCKS * BLOCK_N, end)
        g = tl.arange(0, BLOCK_G)
        d = tl.arange(0, D)
        q_ptr = Q + b * sqb + (h * G + g)[:, None] * sqh + d[None, :]
        q = tl.load(q_ptr, mask=(g < G)[:, None], other=0.0)  # (BLOCK_G, D)
        qk_scale = scale * 1.4426950408889634  # exp2 below: fold log2(e) into the scale
        m_i = tl.full((BLOCK_G,), float("-inf"), tl.float32)
        l_i = tl.zeros((BLOCK_G,), tl.float32)
        acc = tl.zeros((BLOCK_G, D), tl.float32)
        k_base = K + b * skb + h * skh
        v_base = V + b * svb + h * svh
        for i in range(0, SPLIT_BLOCKS):  # a constant trip count: Triton's interpreter cannot loop to a loaded bound
            n = lo + i * BLOCK_N
            if n < hi:
                slots = n + tl.arange(0, BLOCK_N)
                inside = slots < hi
                k = tl.load(
                    k_base + slots[:, None] * skn + d[None, :], mask=inside[:, None], other=0.0
                )  # (BLOCK_N, D)
                s = tl.dot(q, tl.trans(k), input_precision=PREC) * qk_scale  # (BLOCK_G, BLOCK_N)
                s = tl.where(inside[None, :], s, float("-inf"))
                m_new = tl.maximum(m_i, tl.max(s, 1))
                p = tl.exp2(s - m_new[:, None])
                alpha = tl.exp2(m_i - m_new)
                v = tl.load(v_base + slots[:, None] * svn + d[None, :], mask=inside[:, None], other=0.0)
                acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PREC)
                l_i = l_i * alpha + tl.sum(p, 1)
                m_i = m_new
        row = (bh * splits + split) * G + g  # (B * Hkv, splits, G) flattened
        tl.store(M + row, m_i, mask=g < G)
        tl.store(L + row, l_i, mask=g < G)
        tl.store(Acc + row[:, None] * D + d[None, :], acc, mask=(g < G)[:, None])

    @triton.jit
    def combine_kernel(Acc, M, L, Out, splits, G: tl.constexpr, D: tl.constexpr, BLOCK_S: tl.constexpr):
        pid = tl.program_id(0)  # row * Hq + query head; query heads j*G .. j*G+G-1 share KV head j
        bh = pid // G
        g = pid % G
        s = tl.arange(0, BLOCK_S)
        d = tl.arange(0, D)
        rows = (bh * splits + s) * G + g
        m = tl.load(M + rows, mask=s < splits, other=float("-inf"))
        l_s = tl.load(L + rows, mask=s < splits, other=0.0)
        w = tl.where(s < splits, tl.exp2(m - tl.max(m, 0)), 0.0)  # empty splits: m = -inf, weight 0
        acc = tl.load(Acc + rows[:, None] * D + d[None, :], mask=(s < splits)[:, None], other=0.0)
        out = tl.sum(acc * w[:, None], 0) / tl.sum(l_s * w, 0)
        tl.store(Out + pid * D + d, out.to(Out.dtype.element_ty))  # Out: (B, 1, Hq, D), contiguous

    return partial_kernel, combine_kernel


def _launch(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, start: torch.Tensor, end: torch.Tensor, window: int,
            scale: float) -> torch.Tensor:  # fmt: skip
    """Both stages on Triton; `q` (B, Hq, 1, D), `k`/`v` (B, Hkv, L, D); returns (B, 1, Hq, D)."""
    import triton

    partial_kernel, combine_kernel = _kernels()
    batch, heads, _, dim = q.shape
    num_kv = k.shape[1]
    groups = heads // num_kv
    blocks = -(-window // _BLOCK_N)
    wanted = max(1, min(blocks, -(-_TARGET_PROGRAMS // (batch * num_kv))))
    split_blocks = triton.next_power_of_2(-(-blocks // wanted))  # powers of two: a few kernel variants in all
    splits = -(-blocks // split_blocks)
    acc = torch.empty((batch * num_kv * splits * groups, dim), dtype=torch.float32, device=q.device)
    m = torch.empty((batch * num_kv * splits * groups,), dtype=torch.float32, device=q.device)
    l_sum = torch.empty_like(m)
    out = torch.empty((batch, 1, heads, dim), dtype=q.dtype, device=q.device)
    prec = "ieee" if q.dtype == torch.float32 else "tf32"
    # Triton launches on the current device, and a trainer rank's tensors may live on another (the interpreter: CPU)
    device = torch.cuda.device(q.device) if q.device.type == "cuda" else contextlib.nullcontext()
    with device:
        partial_kernel[(batch * num_kv, splits)](
            q, k, v, start, end, acc, m, l_sum, scale, num_kv,
            q.stride(0), q.stride(1), k.stride(0), k.stride(1), k.stride(2), v.stride(0), v.stride(1), v.stride(2),
            G=groups, BLOCK_G=max(16, triton.next_power_of_2(groups)), D=dim, BLOCK_N=_BLOCK_N,
            SPLIT_BLOCKS=split_blocks, PREC=prec,
        )  # fmt: skip
        combine_kernel[(batch * heads,)](
            acc, m, l_sum, out, splits, G=groups, D=dim, BLOCK_S=max(2, triton.next_power_of_2(splits)),
        )  # fmt: skip
    return out


def reference_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, start: torch.Tensor, end: torch.Tensor, scale: float
) -> torch.Tensor:
    """Plain-torch ragged decode attention: q (B, Hq, 1, D) over slots [start[b], end) of k/v (B, Hkv, L, D)."""
    batch, heads, _, dim = q.shape
    num_kv = k.shape[1]
    slots = torch.arange(k.shape[2], device=q.device)
    keep = (slots[None, :] >= start[:, None]) & (slots[None, :] < end)  # (B, L)
    qf = q.float().reshape(batch, num_kv, heads // num_kv, dim)
    scores = torch.einsum("bhgd,bhnd->bhgn", qf, k.float()) * scale
    probs = scores.masked_fill(~keep[:, None, None, :], float("-inf")).softmax(-1)
    out = torch.einsum("bhgn,bhnd->bhgd", probs, v.float())
    return out.reshape(batch, 1, heads, dim).to(q.dtype)


@torch.library.custom_op("brevity::ragged_decode_attention", mutates_args=())
def ragged_decode_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, start: torch.Tensor, end: torch.Tensor, window: int,
    scale: float,
) -> torch.Tensor:  # fmt: skip
    """(B, 1, Hq, D): decode queries q (B, Hq, 1, D) over cache slots [start[b], end) (end <= window <= L)."""
    if q.device.type == "cuda" and triton_available():
        return _launch(q, k, v, start, end, window, scale)
    return reference_attention(q, k[:, :, :window], v[:, :, :window], start, end, scale)


@ragged_decode_attention.register_fake
def _(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, start: torch.Tensor, end: torch.Tensor, window: int,
      scale: float) -> torch.Tensor:  # fmt: skip
    batch, heads, _, dim = q.shape
    return q.new_empty((batch, 1, heads, dim))
