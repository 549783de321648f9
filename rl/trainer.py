"""The one TRL subclass. The only module that touches TRL private names (tests/rl/test_trl_contract.py checks them).

Seams, each small and named:
- rollout: TRL 1.16's public `rollout_func` hook runs a brevity strategy (standard, serial exits, segments) on
  whole groups, so a group never depends on how TRL split it across processes;
- group transforms: `_calculate_rewards` returns TRL's *gathered* (N, F) rewards; the variant rewrites one column
  on (P, G) views of the whole batch (S-GRPO decay, GRPO-λ top-λ, DA-DLER tiers);
- advantages: TRL's own for `group` / `mean_only` (scale_rewards group / none); DLER's group-centred batch whitening
  is recomputed on the gathered batch;
- sample filter: dynamic sampling drops zero-variance groups and refills from extra generation rounds (capped);
- token masks: inserted tokens via TRL's `env_mask`, DMMPT (UloRL) multiplied into the same `tool_mask`;
- trainer state: strategy pool / RNGs and the sampler's RNG are saved in every checkpoint and restored on resume.
"""

from __future__ import annotations

import json
import logging
import os
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import gather, gather_object
from trl import GRPOTrainer

from rl.advantages import group_center_batch_whiten
from rl.losses import dmmpt_mask, masked_fraction
from rl.sampling import zero_variance_groups
from rl.variants.base import GroupBatch, Plan
from rollouts.templates import BUDGET_SLOT
from rollouts.types import Sample, SamplingParams

logger = logging.getLogger("brevity.trainer")
STATE_FILE = "brevity_state.json"


class BrevityTrainer(GRPOTrainer):
    """GRPOTrainer + a variant `Plan`. `engine_factory(model)` builds the rollout engine for the live policy."""

    def __init__(self, *args: Any, plan: Plan, engine_factory: Callable[[Any], Any], **kwargs: Any) -> None:
        self.plan = plan
        self._engine_factory = engine_factory
        self._engine: Any = None
        self._strategy: Any = None
        self._refill_rng = random.Random(0)
        self._refill_iter: Iterator[int] | None = None
        self._last: dict[str, torch.Tensor] = {}
        os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
        super().__init__(*args, rollout_func=self._rollout, **kwargs)
        names = list(self.reward_func_names)
        if plan.group_transform is not None and plan.transform_column not in names:
            raise ValueError(f"the variant rewrites reward {plan.transform_column!r}, which is not among {names}")

    # ---- rollout seam -------------------------------------------------------------------------------------------
    def _build_strategy(self) -> Any:
        from rollouts.strategies.segments import SegmentStrategy
        from rollouts.strategies.serial_exits import SerialExitStrategy
        from rollouts.strategies.standard import StandardStrategy

        args, kw = self.args, dict(self.plan.strategy_kwargs)
        self._engine = self._engine_factory(self.accelerator.unwrap_model(self.model))
        params = SamplingParams(
            temperature=args.temperature,
            top_p=args.top_p,
            top_k=args.top_k or 0,
            max_tokens=args.max_completion_length,
            seed=args.seed,
        )
        kw.pop("cap_generation", None)
        if self.plan.strategy == "serial_exits":
            return SerialExitStrategy(self._engine, self.processing_class, params, seed=args.seed, **kw)
        if self.plan.strategy == "segments":
            return SegmentStrategy(self._engine, params, self.num_generations, **kw)
        return StandardStrategy(self._engine, params, self.num_generations)

    def _budget(self) -> int | None:
        schedule = self.plan.budget_schedule
        return None if schedule is None else int(schedule(self.state.global_step))

    def _prompt_ids(self, messages: list[dict[str, str]]) -> list[int]:
        budget = self._budget()
        if budget is not None:  # the curriculum's budget sentence follows B(t) (methods.md §4.6)
            messages = [{**m, "content": m["content"].replace(BUDGET_SLOT, str(budget))} for m in messages]
        out = self.processing_class.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=True, return_dict=True
        )
        return list(out["input_ids"])

    def _rollout(self, prompts: list[Any], trainer: Any) -> dict[str, Any]:
        """Generate whole groups: prompts arrive repeated G times in global order; each rank runs every world-th
        group, results are exchanged, and each rank keeps its own slice (TRL's local layout)."""
        if self._strategy is None:
            self._strategy = self._build_strategy()
        G, world, rank = self.num_generations, self.accelerator.num_processes, self.accelerator.process_index
        everything = gather_object(prompts) if world > 1 else list(prompts)
        unique = everything[::G]
        mine = list(range(rank, len(unique), world))
        ids = [self._prompt_ids(unique[i]) for i in mine]
        budget = self._budget()
        cap = None
        if budget is not None and self.plan.strategy_kwargs.get("cap_generation"):
            cap = [min(2 * budget, self.args.max_completion_length)] * len(ids)
        was_training = self.model.training
        self.model.eval()
        with torch.no_grad():
            samples = self._strategy.generate(ids, max_tokens=cap) if cap else self._strategy.generate(ids)
        if was_training:
            self.model.train()
        if self.plan.strategy == "segments":
            samples = self._segment_batch(samples, ids, mine, len(unique))
        groups = {i: samples[k * G : (k + 1) * G] for k, i in enumerate(mine)}
        if world > 1:
            merged: dict[int, list[Sample]] = {}
            for part in gather_object([groups]):
                merged.update(part)
            groups = merged
        flat = [s for i in range(len(unique)) for s in groups[i]]
        local = flat[rank * len(prompts) : (rank + 1) * len(prompts)]
        return self._to_trl(local)

    def _segment_batch(self, samples: list[Sample], ids: list[list[int]], mine: list[int], n: int) -> list[Sample]:
        """UloRL: released groups may belong to earlier prompts; keep decoding segments until enough are ready."""
        G, want = self.num_generations, len(mine) * self.num_generations
        ready: list[Sample] = list(getattr(self, "_ready", [])) + samples
        rounds = 0
        while len(ready) < want:
            ready += self._strategy.generate([])
            rounds += 1
            if rounds > 64:
                raise RuntimeError("segment rollout released no groups in 64 segments; check max_total_tokens")
        self._ready, batch = ready[want:], ready[:want]
        self._metrics["train"]["ulorl/extra_segments"].append(float(rounds))
        self._metrics["train"]["ulorl/pending"].append(float(self._strategy.pending))
        ages = [float(s.extras.get("staleness", 0)) for s in batch]
        self._metrics["train"]["ulorl/staleness_mean"].append(sum(ages) / max(len(ages), 1))
        del G, ids, n
        return batch

    def _to_trl(self, samples: list[Sample]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "prompt_ids": [s.prompt_ids for s in samples],
            "completion_ids": [s.completion_ids for s in samples],
            "logprobs": None,  # TRL recomputes old log-probs itself when it needs them
            "env_mask": [s.loss_mask for s in samples],
            "finish_reason": [s.finish_reason for s in samples],
        }
        for key in ("exit_rank", "exit_position", "staleness", "answer"):
            if samples and key in samples[0].extras:
                out[key] = [s.extras[key] for s in samples]
        return out

    # ---- group-transform seam -------------------------------------------------------------------------------------
    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):  # noqa: ANN001, ANN202
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)  # (N, F)
        device = rewards_per_func.device
        lengths = torch.tensor([len(ids) for ids in completion_ids_list], device=device)
        lengths = gather(lengths) if self.accelerator.num_processes > 1 else lengths
        G = self.num_generations
        mode = "train" if self.model.training else "eval"
        if self.plan.group_transform is not None:
            col = list(self.reward_func_names).index(self.plan.transform_column)
            target = rewards_per_func[:, col].view(-1, G)
            batch = GroupBatch(target, target > 0, lengths.view(-1, G), self.state.global_step)
            new, metrics = self.plan.group_transform(batch)
            rewards_per_func = rewards_per_func.clone()
            rewards_per_func[:, col] = new.to(rewards_per_func.dtype).reshape(-1)
            for k, v in metrics.items():
                self._metrics[mode][f"brevity/{k}"].append(float(v))
        weighted = (rewards_per_func * self.reward_weights.to(device).unsqueeze(0)).nansum(dim=1)
        self._last = {"rewards": weighted, "lengths": lengths}
        if (budget := self._budget()) is not None:
            self._metrics[mode]["brevity/budget"].append(float(budget))
        if "correctness" in self.reward_func_names:
            col = list(self.reward_func_names).index("correctness")
            self._metrics[mode]["brevity/accuracy"].append(rewards_per_func[:, col].nanmean().item())
        q = torch.quantile(lengths.float(), torch.tensor([0.5, 0.9], device=device))
        self._metrics[mode]["brevity/length_p50"].append(q[0].item())
        self._metrics[mode]["brevity/length_p90"].append(q[1].item())
        return rewards_per_func

    # ---- advantage, sample-filter and token-mask seams ------------------------------------------------------------
    def _generate_and_score_completions(self, inputs):  # noqa: ANN001, ANN202
        out = self._score_round(inputs)
        mode = "train" if self.model.training else "eval"
        if self.plan.dynamic_sampling and mode == "train":
            out = self._dynamic_sampling(out, inputs)
        if self.plan.advantage == "group_center_batch_whiten":
            out["advantages"] = self._whitened(out)
        if self.plan.dmmpt is not None and mode == "train":
            self._apply_dmmpt(out)
        return out

    def _score_round(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        out = super()._generate_and_score_completions(inputs)
        n, rank = len(inputs), self.accelerator.process_index
        local = slice(rank * n, (rank + 1) * n)
        out["brevity_rewards"] = self._last["rewards"][local].clone()
        out["brevity_lengths"] = self._last["lengths"][local].clone()
        return out

    def _whitened(self, out: dict[str, Any]) -> torch.Tensor:
        """DLER: (r − mean_g) then whitening over the gathered batch, token-weighted (methods.md §3.2)."""
        G = self.num_generations
        rewards = gather(out["brevity_rewards"]) if self.accelerator.num_processes > 1 else out["brevity_rewards"]
        lengths = gather(out["brevity_lengths"]) if self.accelerator.num_processes > 1 else out["brevity_lengths"]
        counts = lengths.view(-1, G) if self.plan.token_weighted_whitening else None
        adv = group_center_batch_whiten(rewards.view(-1, G), counts).reshape(-1)
        n, rank = out["brevity_rewards"].numel(), self.accelerator.process_index
        return adv[rank * n : (rank + 1) * n].to(out["advantages"].dtype)

    def _dynamic_sampling(self, out: dict[str, Any], inputs: list[dict[str, Any]]) -> dict[str, Any]:
        """Drop groups whose rewards do not vary and refill from extra generation rounds (at most the cap).

        Needs whole groups on each process (checked at start-up). When the cap is hit, zero-variance groups fill
        the remaining slots: their advantage is 0, so the step trains on what there is with a fixed batch shape.
        """
        G = self.num_generations
        rounds, kept, spare = 0, [], []
        pool = [out]
        while True:
            cur = pool[-1]
            zero = zero_variance_groups(cur["brevity_rewards"].view(-1, G))
            for g in range(zero.numel()):
                (spare if zero[g] else kept).append((len(pool) - 1, g))
            need = len(inputs) // G - len(kept)
            need_any = gather(torch.tensor([max(need, 0)], device=cur["advantages"].device)).max().item()
            if need_any <= 0 or rounds >= self.plan.max_resample_rounds:
                break
            rounds += 1
            pool.append(self._score_round(self._refill_inputs(inputs)))
        chosen = (kept + spare)[: len(inputs) // G]
        mode = "train"
        self._metrics[mode]["brevity/resample_rounds"].append(float(rounds))
        self._metrics[mode]["brevity/zero_variance_groups_filled"].append(float(max(0, len(chosen) - len(kept))))
        batch = _select_groups(pool, chosen, G, self.processing_class.pad_token_id)
        local_items = batch["num_items_in_batch"].reshape(1).to(batch["advantages"].device)
        batch["num_items_in_batch"] = gather(local_items).sum() if self.accelerator.num_processes > 1 else local_items[0]
        return batch

    def _refill_inputs(self, inputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        dataset, G = self.train_dataset, self.num_generations
        rows = []
        for _ in range(len(inputs) // G):
            if self._refill_iter is None:
                order = list(range(len(dataset)))
                self._refill_rng.shuffle(order)
                self._refill_iter = iter(order)
            idx = next(self._refill_iter, None)
            if idx is None:
                self._refill_iter = None
                continue
            rows += [dict(dataset[idx]) for _ in range(G)]
        return rows or inputs

    def _apply_dmmpt(self, out: dict[str, Any]) -> None:
        """UloRL DMMPT: mask well-mastered positive tokens of low-entropy samples (Eq. 9-10); POIS old log-probs."""
        ids = torch.cat([out["prompt_ids"], out["completion_ids"]], dim=1)
        attn = torch.cat([out["prompt_mask"], out["completion_mask"]], dim=1)
        with torch.no_grad():
            logps, entropies, _ = self._get_per_token_logps_and_entropies(
                self.model, ids, attn, out["completion_ids"].size(1), compute_entropy=True
            )
        completion_mask = out["completion_mask"]
        mask = dmmpt_mask(logps, entropies, out["brevity_rewards"], completion_mask, **self.plan.dmmpt)
        keep = (~mask).to(completion_mask.dtype)
        out["tool_mask"] = out["tool_mask"] * keep if "tool_mask" in out else keep
        out["old_per_token_logps"] = logps  # POIS: every ratio is taken against the current policy
        self._metrics["train"]["brevity/dmmpt_masked_fraction"].append(masked_fraction(mask, completion_mask))

    # ---- trainer state in checkpoints -----------------------------------------------------------------------------
    def brevity_state(self) -> dict[str, Any]:
        return {
            "strategy": None if self._strategy is None else self._strategy.state_dict(),
            "ready": [_sample_to_json(s) for s in getattr(self, "_ready", [])],
            "refill_rng": _rng_to_json(self._refill_rng),
        }

    def load_brevity_state(self, state: dict[str, Any]) -> None:
        if state.get("strategy") is not None:
            if self._strategy is None:
                self._strategy = self._build_strategy()
            self._strategy.load_state_dict(state["strategy"])
        self._ready = [Sample(**s) for s in state.get("ready", [])]
        self._refill_rng.setstate(_rng_from_json(state["refill_rng"]))

    def _save_checkpoint(self, model, trial):  # noqa: ANN001, ANN202
        super()._save_checkpoint(model, trial)
        if self.accelerator.is_main_process:
            folder = Path(self.args.output_dir) / f"checkpoint-{self.state.global_step}"
            (folder / STATE_FILE).write_text(json.dumps(self.brevity_state()))

    def _load_rng_state(self, checkpoint):  # noqa: ANN001, ANN202
        super()._load_rng_state(checkpoint)
        path = Path(checkpoint) / STATE_FILE if checkpoint else None
        if path is not None and path.is_file():
            self.load_brevity_state(json.loads(path.read_text()))


def _select_groups(pool: list[dict[str, Any]], chosen: list[tuple[int, int]], G: int, pad_id: int) -> dict[str, Any]:
    """Assemble a batch from groups of several rounds; prompts re-padded on the left, completions on the right."""
    rows = [(r, g * G + j) for r, g in chosen for j in range(G)]
    out: dict[str, Any] = {}
    for key, value in pool[0].items():
        if not isinstance(value, torch.Tensor) or value.dim() == 0:
            out[key] = value
            continue
        parts = [pool[r][key][i] for r, i in rows]
        if value.dim() == 1:
            out[key] = torch.stack(parts)
            continue
        width = max(p.size(0) for p in parts)
        left = key.startswith("prompt")
        fill = pad_id if key in ("prompt_ids", "completion_ids") else (1 if key == "tool_mask" else 0)
        padded = []
        for p in parts:
            pad = p.new_full((width - p.size(0), *p.shape[1:]), fill)
            padded.append(torch.cat([pad, p]) if left else torch.cat([p, pad]))
        out[key] = torch.stack(padded)
    out["num_items_in_batch"] = sum(pool[r]["completion_mask"][i].sum() for r, i in rows)
    return out


def _rng_to_json(rng: random.Random) -> list[Any]:
    version, state, gauss = rng.getstate()
    return [version, list(state), gauss]


def _rng_from_json(data: list[Any]) -> tuple[Any, ...]:
    return (data[0], tuple(data[1]), data[2])


def _sample_to_json(s: Sample) -> dict[str, Any]:
    return {
        "prompt_index": s.prompt_index,
        "prompt_ids": s.prompt_ids,
        "completion_ids": s.completion_ids,
        "finish_reason": s.finish_reason,
        "loss_mask": s.loss_mask,
        "logprobs": s.logprobs,
        "extras": s.extras,
    }
