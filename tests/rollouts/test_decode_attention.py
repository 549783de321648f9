"""Ragged decode attention: the plain-torch reference against masked SDPA, the Triton kernel against the reference
(Triton's CPU interpreter where Triton is installed; the real kernel on a GPU), and under CUDA-graph capture."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from rollouts.decode_attention import ragged_decode_attention, reference_attention

REPO = Path(__file__).resolve().parents[2]
# (batch, query heads, KV heads, head dim, cache length, window, end): GQA groups of 3 (SmolLM2), 6 (Qwen2.5-1.5B),
# 1 (no grouping); windows that span one block, several blocks and several splits
SHAPES = [
    (5, 9, 3, 64, 300, 260, 257),
    (3, 12, 2, 128, 200, 130, 129),
    (4, 2, 2, 64, 70, 65, 1),
    (2, 4, 1, 64, 40, 33, 33),
]


def _inputs(batch, heads, kv, dim, length, window, end, dtype=torch.float32, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, 1, heads, dim, generator=g).to(device, dtype).transpose(1, 2)  # transformers' layout
    k, v = (torch.randn(batch, kv, length, dim, generator=g).to(device, dtype) for _ in "kv")
    start = torch.randint(0, end, (batch,), generator=g)
    start[0] = end - 1  # one row with a single token (a padding filler row)
    return q, k, v, start.to(device), torch.tensor(end, device=device)


@pytest.mark.parametrize("shape", SHAPES)
def test_reference_equals_masked_sdpa_over_the_window(shape: tuple) -> None:
    """Row b attends slots [start_b, end) and nothing else: garbage outside that range must not leak in."""
    q, k, v, start, end = _inputs(*shape)
    batch, heads, kv, dim, _, window, _ = shape
    slots = torch.arange(window)
    mask = ((slots >= start[:, None]) & (slots < end))[:, None, None, :]
    expected = F.scaled_dot_product_attention(
        q, k[:, :, :window].repeat_interleave(heads // kv, 1), v[:, :, :window].repeat_interleave(heads // kv, 1),
        attn_mask=mask, scale=dim**-0.5,
    ).transpose(1, 2)  # fmt: skip
    got = ragged_decode_attention(q, k, v, start, end, window, dim**-0.5)  # CPU: the reference behind the op
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    k2 = k.clone()
    k2[1, :, : int(start[1])] = 1e4  # padding slots of row 1 hold anything
    k2[:, :, int(end) :] = -1e4  # so do slots past the end
    torch.testing.assert_close(reference_attention(q, k2, v, start, end, dim**-0.5), got)


_INTERPRETED = """
from rollouts.decode_attention import _launch, reference_attention
from tests.rollouts.test_decode_attention import SHAPES, _inputs
worst = 0.0
for shape in SHAPES:
    q, k, v, start, end = _inputs(*shape, seed=1)
    window, dim = shape[5], shape[3]
    got = _launch(q, k, v, start, end, window, dim**-0.5)
    want = reference_attention(q, k[:, :, :window], v[:, :, :window], start, end, dim**-0.5)
    worst = max(worst, (got - want).abs().max().item())
print(worst)
"""


def test_triton_kernel_equals_reference_in_interpreter() -> None:
    """The kernel's split/online-softmax arithmetic on CPU (float32: the interpreter's bf16 dot is broken)."""
    pytest.importorskip("triton")
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", _INTERPRETED], env=env, cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert float(out.stdout.strip().splitlines()[-1]) < 1e-5


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    "shape",
    [*SHAPES, (1024, 9, 3, 64, 900, 768, 700), (64, 12, 2, 128, 2400, 2304, 2200), (7, 9, 3, 64, 4200, 4100, 4097)],
)
def test_gpu_kernel_equals_reference(shape: tuple, dtype: torch.dtype) -> None:
    q, k, v, start, end = _inputs(*shape, dtype=dtype, device="cuda")
    window, dim = shape[5], shape[3]
    got = ragged_decode_attention(q, k, v, start, end, window, dim**-0.5)
    want = reference_attention(q.float(), k[:, :, :window].float(), v[:, :, :window].float(), start, end, dim**-0.5)
    tol = 1e-4 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(got.float(), want, atol=tol, rtol=tol)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_kernel_replays_in_a_cuda_graph_with_moving_end() -> None:
    """HFEngine captures one graph per window and replays it while `end` advances on the device."""
    q, k, v, start, end = _inputs(16, 9, 3, 64, 512, 384, 300, dtype=torch.bfloat16, device="cuda")
    ragged_decode_attention(q, k, v, start, end, 384, 0.125)  # compile outside the capture
    graph, out = torch.cuda.CUDAGraph(), None
    with torch.cuda.graph(graph):
        out = ragged_decode_attention(q, k, v, start, end, 384, 0.125)
    for e in (300, 301, 383):
        end.fill_(e)
        graph.replay()
        want = reference_attention(q.float(), k[:, :, :384].float(), v[:, :, :384].float(), start, end, 0.125)
        torch.testing.assert_close(out.float(), want, atol=2e-2, rtol=2e-2)
