"""Decode attention kernels at HFEngine's shapes: microseconds per call and KV bandwidth reached; prints JSON.

One decode step of one layer: queries (B, Hq, 1, D) against a KV window (B, Hkv, W, D) with a (B, 1, 1, W) padding
mask, the query heads of a KV head folded into its rows as HFEngine does (each KV head read once). Variants:
- sdpa: `F.scaled_dot_product_attention` with the boolean mask (what HFEngine's static attention calls);
- matmul: q @ K^T, masked softmax in float32, @ V (two batched GEMMs);
- matmul_compiled: the same under `torch.compile` (inductor fuses mask, softmax and casts);
- ragged: `rollouts.decode_attention` (HFEngine's default on CUDA), which reads only each row's own slots.
Rows start at uniform random slots in [0, W/2) (left padding), so a row holds 75% of the window on average.
`kv_gbs` = K and V bytes of the window / time; `read_gbs` = bytes of the rows' own slots / time (what the ragged
kernel must read); the H200's peak is ~4,800 GB/s.

GPU:  python experiments/bench/decode_attention.py --out decode_attention.json
CPU:  python experiments/bench/decode_attention.py --device cpu --shapes 4,3,3,64,256 --iters 3
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from rollouts.decode_attention import ragged_decode_attention  # noqa: E402

# (batch, query heads, KV heads, head dim, window): SmolLM2-135M trace / exits / parallel, Qwen2.5-1.5B ditto
SHAPES = (
    (128, 9, 3, 64, 640), (1024, 9, 3, 64, 768), (1152, 9, 3, 64, 640),
    (64, 12, 2, 128, 2304), (512, 12, 2, 128, 2304), (576, 12, 2, 128, 2304),
)  # fmt: skip


def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, scale: float) -> torch.Tensor:
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)


def matmul(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, scale: float) -> torch.Tensor:
    scores = torch.matmul(q, k.transpose(-1, -2)).float() * scale  # (B, Hkv, G, W)
    probs = scores.masked_fill(~mask, float("-inf")).softmax(-1).to(v.dtype)
    return torch.matmul(probs, v)


def ragged(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, start: torch.Tensor, end: torch.Tensor, scale: float
) -> torch.Tensor:
    batch, kv, groups, dim = q.shape
    return ragged_decode_attention(q.reshape(batch, kv * groups, 1, dim), k, v, start, end, k.shape[2], scale)


def timed(fn: Any, args: tuple, iters: int, device: str) -> float:
    """Seconds per call; on CUDA one call captured as a CUDA graph and replayed, as HFEngine's decode steps run (so
    host-side dispatch, which differs a lot between an SDPA call and a custom op's two Triton launches, is not
    counted)."""
    for _ in range(3):
        fn(*args)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            fn(*args)
        graph.replay()
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(iters):
            graph.replay()
        torch.cuda.synchronize()
        return (time.perf_counter() - start) / iters
    start = time.perf_counter()
    for _ in range(iters):
        fn(*args)
    return (time.perf_counter() - start) / iters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--shapes", nargs="*", default=None, help="B,Hq,Hkv,D,W ... (default: the engine's)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    shapes = [tuple(map(int, s.split(","))) for s in args.shapes] if args.shapes else SHAPES
    variants = {"sdpa": sdpa, "matmul": matmul, "matmul_compiled": torch.compile(matmul, dynamic=False)}
    rows = []
    for batch, hq, hkv, dim, window in shapes:
        g = torch.Generator(device=args.device).manual_seed(0)
        q = torch.randn(batch, hkv, hq // hkv, dim, device=args.device, dtype=dtype, generator=g)
        k, v = (torch.randn(batch, hkv, window, dim, device=args.device, dtype=dtype, generator=g) for _ in "kv")
        starts = torch.randint(0, window // 2, (batch,), device=args.device, generator=g)  # left padding
        mask = (torch.arange(window, device=args.device)[None, :] >= starts[:, None])[:, None, None, :]
        scale = dim**-0.5
        reference = matmul(q.float(), k.float(), v.float(), mask, scale)
        kv_bytes = 2 * k.numel() * k.element_size()
        read_bytes = kv_bytes * float((window - starts).sum()) / (batch * window)
        row: dict[str, Any] = {"batch": batch, "q_heads": hq, "kv_heads": hkv, "head_dim": dim, "window": window}
        calls = {name: (fn, (q, k, v, mask, scale)) for name, fn in variants.items()}
        if args.device.startswith("cuda"):
            calls["ragged"] = (ragged, (q, k, v, starts, torch.tensor(window, device=args.device), scale))
        for name, (fn, fn_args) in calls.items():
            out = fn(*fn_args).float().reshape(reference.shape)
            err = (out - reference).abs().max().item()
            seconds = timed(fn, fn_args, args.iters, args.device)
            row[name] = {
                "us": round(seconds * 1e6, 1), "kv_gbs": round(kv_bytes / seconds / 1e9, 1),
                "read_gbs": round(read_bytes / seconds / 1e9, 1), "max_err": err,
            }  # fmt: skip
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
    report = {
        "benchmark": "decode_attention", "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
        "torch": torch.__version__, "dtype": args.dtype, "rows": rows,
    }  # fmt: skip
    text = json.dumps(report, indent=1)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
