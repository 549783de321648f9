"""Update-selective weight merging (DLER 2510.15110 §4.6; methods.md §3.2, §S12).

θ = θ_base + scale · TopK_keep(|Δ|) ⊙ Δ with Δ = θ_tuned − θ_base: only the largest `keep` fraction of the update's
entries survive (TIES-style), scaled down. Paper setting: keep 25%, scale 0.7. CLI: `brevity merge BASE TUNED OUT`.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["main", "merge_checkpoints", "update_selective_merge"]

_CHUNK = 1 << 22  # entries per chunk when scanning |Δ|: bounds the extra memory of the top-k search
_HIGH_BITS, _LOW_BITS = 16, 15  # a non-negative float32's int32 pattern has 31 significant bits


def _abs_delta_chunks(base: Tensor, tuned: Tensor) -> Iterator[Tensor]:
    """|tuned − base| in float32, flattened, `_CHUNK` entries at a time (NaN counts as 0)."""
    b, t = base.reshape(-1), tuned.reshape(-1)
    for start in range(0, b.numel(), _CHUNK):
        delta = t[start : start + _CHUNK].float() - b[start : start + _CHUNK].float()
        yield torch.nan_to_num(delta.abs(), nan=0.0)


def _kth_largest(pairs: Sequence[tuple[Tensor, Tensor]], k: int) -> float:
    """The k-th largest |Δ| over all (base, tuned) pairs, exactly, by a two-pass radix select.

    For non-negative float32 the int32 bit pattern is monotone in the value, so a histogram of the high 16 bits finds
    the bucket holding the k-th value and a histogram of the low 15 bits inside it finds the value: two streaming
    passes with O(chunk) memory, never materialising the concatenation of all tensors.
    """
    device = pairs[0][1].device
    high = torch.zeros(1 << _HIGH_BITS, dtype=torch.int64, device=device)
    for base, tuned in pairs:
        for chunk in _abs_delta_chunks(base, tuned):
            high += torch.bincount((chunk.view(torch.int32) >> _LOW_BITS).long(), minlength=1 << _HIGH_BITS)
    from_top = high.flip(0).cumsum(0)
    j = int(torch.searchsorted(from_top, k))  # first bucket (counted from the top) reaching k entries
    bucket = (1 << _HIGH_BITS) - 1 - j
    above = int(from_top[j]) - int(high[bucket])  # entries strictly above that bucket
    low = torch.zeros(1 << _LOW_BITS, dtype=torch.int64, device=device)
    for base, tuned in pairs:
        for chunk in _abs_delta_chunks(base, tuned):
            keys = chunk.view(torch.int32)
            inside = keys[(keys >> _LOW_BITS) == bucket] & ((1 << _LOW_BITS) - 1)
            low += torch.bincount(inside.long(), minlength=1 << _LOW_BITS)
    j_low = int(torch.searchsorted(low.flip(0).cumsum(0), k - above))
    key = (bucket << _LOW_BITS) | ((1 << _LOW_BITS) - 1 - j_low)
    return float(torch.tensor([key], dtype=torch.int32).view(torch.float32))


def _num_kept(keep: float, numel: int) -> int:
    # The tolerance keeps float products like 0.3 * 10 = 3.0000000000000004 from rounding up to 4.
    return min(numel, max(1, math.ceil(keep * numel - 1e-9)))


def _merge_one(base: Tensor, tuned: Tensor, threshold: float, scale: float) -> Tensor:
    work = torch.promote_types(tuned.dtype, torch.float32)  # 16-bit weights are merged in float32
    delta = tuned.to(work) - base.to(work)
    selected = torch.nan_to_num(delta.abs().float(), nan=0.0) >= threshold  # the keys _kth_largest ranked
    return (base.to(work) + scale * delta * selected).to(tuned.dtype)


def _check_ranges(keep: float, scale: float) -> None:
    # `not a <= x` also refuses NaN
    if not 0 < keep <= 1:
        raise ValueError(f"--keep must be in (0, 1] (the fraction of update entries kept), got {keep}")
    if not 0 < scale <= 1:
        raise ValueError(f"--scale must be in (0, 1] (the factor on the kept update; DLER uses 0.7), got {scale}")


def _check(base_state: Mapping[str, Tensor], tuned_state: Mapping[str, Tensor], keep: float, scale: float) -> None:
    """Same parameter names and shapes in both models (a difference would silently drop or garble a layer)."""
    _check_ranges(keep, scale)
    only_base = sorted(set(base_state) - set(tuned_state))
    only_tuned = sorted(set(tuned_state) - set(base_state))
    problems = [f"only in base: {_first(only_base)}"] * bool(only_base)
    problems += [f"only in tuned: {_first(only_tuned)}"] * bool(only_tuned)
    shapes = [
        f"{name} {tuple(base_state[name].shape)} vs {tuple(t.shape)}"
        for name, t in tuned_state.items()
        if name in base_state and base_state[name].shape != t.shape
    ]
    if shapes:
        problems.append(f"shapes differ (base vs tuned): {_first(shapes)}")
    if problems:
        raise ValueError("base and tuned are not the same architecture: " + "; ".join(problems))


def _first(items: Sequence[str], n: int = 3) -> str:
    return ", ".join(items[:n]) + (f" and {len(items) - n} more" if len(items) > n else "")


def _iter_merged(
    base_state: Mapping[str, Tensor], tuned_state: Mapping[str, Tensor], keep: float, scale: float, per_tensor: bool
) -> Iterator[tuple[str, Tensor]]:
    """Yield (name, merged tensor) one tensor at a time; non-float tensors are yielded as the tuned ones."""
    float_names = [name for name, t in tuned_state.items() if t.is_floating_point() and t.numel() > 0]
    global_threshold = 0.0
    if not per_tensor and float_names:
        pairs = [(base_state[name], tuned_state[name]) for name in float_names]
        global_threshold = _kth_largest(pairs, _num_kept(keep, sum(t.numel() for _, t in pairs)))
    for name, tuned in tuned_state.items():
        if name not in float_names:
            yield name, tuned
            continue
        base = base_state[name]
        threshold = _kth_largest([(base, tuned)], _num_kept(keep, tuned.numel())) if per_tensor else global_threshold
        yield name, _merge_one(base, tuned, threshold, scale)


def update_selective_merge(
    base_state: Mapping[str, Tensor],
    tuned_state: Mapping[str, Tensor],
    *,
    keep: float = 0.25,
    scale: float = 0.7,
    per_tensor: bool = True,
) -> dict[str, Tensor]:
    """Merged state dict: θ_base + scale·(Δ on the top-`keep` fraction of |Δ|, 0 elsewhere), in the tuned dtypes.

    k = ceil(keep·numel) entries per float tensor (per_tensor=True, the TIES convention, methods.md §3.2 [default]),
    or over all float tensors together (per_tensor=False; found chunk-wise, without concatenating). Entries tied
    with the k-th largest |Δ| are all kept. Non-float tensors are copied from `tuned_state`. Raises ValueError for
    `keep` or `scale` outside (0, 1], differing keys, or a shape mismatch (naming the first few tensors).
    """
    _check(base_state, tuned_state, keep, scale)
    merged = {}
    for name, tensor in _iter_merged(base_state, tuned_state, keep, scale, per_tensor):
        merged[name] = tensor.clone() if tensor is tuned_state[name] else tensor
    return merged


def _unique_storage(state: Mapping[str, Tensor]) -> list[str]:
    """Names of `state` minus later aliases of one storage (tied embeddings): each is merged once."""
    seen: set[tuple[int, tuple[int, ...]]] = set()
    names = []
    for name, t in state.items():
        key = (t.data_ptr(), tuple(t.shape))
        if t.numel() == 0 or key not in seen:
            names.append(name)
            seen.add(key)
    return names


def merge_checkpoints(
    base: str, tuned: str, out: str, *, keep: float = 0.25, scale: float = 0.7, per_tensor: bool = True
) -> None:
    """Merge two HF model folders into `out`: the tuned model's config, dtype and tokenizer, merged weights.

    Every check (folders, ranges, parameter names and shapes) runs before anything is written.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _check_ranges(keep, scale)
    check_folders(base, tuned, out)
    tuned_model = AutoModelForCausalLM.from_pretrained(tuned, dtype="auto")
    base_model = AutoModelForCausalLM.from_pretrained(base, dtype="auto")
    tuned_all, base_all = tuned_model.state_dict(), base_model.state_dict()
    _check(base_all, tuned_all, keep, scale)  # all names, tied aliases included: nothing may be dropped
    names = _unique_storage(tuned_all)
    tuned_state = {name: tuned_all[name] for name in names}
    base_state = {name: base_all[name] for name in names}
    with torch.no_grad():
        # Written in place tensor by tensor, so peak memory stays near two models rather than three.
        for name, merged in _iter_merged(base_state, tuned_state, keep, scale, per_tensor):
            if merged is not tuned_state[name]:
                tuned_state[name].copy_(merged)
    del base_model, base_all, base_state
    tuned_model.save_pretrained(out)
    try:
        AutoTokenizer.from_pretrained(tuned).save_pretrained(out)
    except (OSError, ValueError) as err:
        print(f"brevity merge: warning: no tokenizer saved, loading it from {tuned} failed: {err}", file=sys.stderr)


def check_folders(base: str, tuned: str, out: str) -> None:
    """Both inputs are HF model folders (a `config.json`), and `out` is neither of them."""
    problems = []
    for label, path in (("base", base), ("tuned", tuned)):
        if not Path(path).is_dir():
            problems.append(f"{label} folder not found: {path}")
        elif not (Path(path) / "config.json").is_file():
            problems.append(f"{label} folder {path} is not a Hugging Face model folder (no config.json)")
    if problems:
        raise FileNotFoundError("; ".join(problems))
    if Path(out).resolve() in (Path(base).resolve(), Path(tuned).resolve()):
        raise ValueError(f"output folder {out} must differ from the input folders (it would overwrite a model)")


def build_parser() -> argparse.ArgumentParser:
    """Arguments of `brevity merge`."""
    parser = argparse.ArgumentParser(
        prog="brevity merge",
        description="Update-selective merge (DLER §4.6): base + scale * top-keep fraction of (tuned - base).",
    )
    parser.add_argument("base", help="folder of the base (pre-RL) HF model")
    parser.add_argument("tuned", help="folder of the RL-tuned HF model (its config, dtype and tokenizer are kept)")
    parser.add_argument("out", help="output folder for the merged model")
    parser.add_argument(
        "--keep", type=float, default=0.25, help="fraction of update entries kept, in (0, 1] (default 0.25)"
    )
    parser.add_argument("--scale", type=float, default=0.7, help="factor on the kept update, in (0, 1] (default 0.7)")
    parser.add_argument(
        "--global-topk", action="store_true", help="top-k over all weights together instead of per tensor"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """`brevity merge BASE TUNED OUT [--keep 0.25] [--scale 0.7] [--global-topk]`; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        _check_ranges(args.keep, args.scale)
        check_folders(args.base, args.tuned, args.out)
        merge_checkpoints(
            args.base, args.tuned, args.out, keep=args.keep, scale=args.scale, per_tensor=not args.global_topk
        )
    except (ValueError, OSError) as e:  # bad input, or a folder transformers cannot load: one line, no traceback
        print(f"brevity merge: error: {str(e).strip().splitlines()[0]}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        written = Path(args.out).exists()
        print(
            f"\nbrevity merge: interrupted; {f'{args.out} may hold a partial model' if written else 'nothing written'}",
            file=sys.stderr,
        )
        return 130
    print(f"merged model written to {args.out} (keep={args.keep}, scale={args.scale})")
    return 0
