"""The one TRL subclass. The only module that touches TRL private names (tests/rl/test_trl_contract.py checks them).

Seams, each small and named:
- rollout: TRL 1.16's public `rollout_func` hook runs a brevity strategy (standard, serial exits, segments) on
  whole groups, so a group never depends on how TRL split it across processes; each call gets its own seed;
- group transforms: `_calculate_rewards` returns TRL's *gathered* (N, F) rewards; the variant rewrites one column
  on (P, G) views of the whole batch (S-GRPO decay, GRPO-λ top-λ, DA-DLER tiers);
- advantages: TRL's own for `group` / `mean_only` (scale_rewards group / none); DLER's group-centred batch whitening
  is recomputed on the gathered batch, over the groups dynamic sampling kept;
- sample filter: dynamic sampling drops zero-variance groups and refills from extra generation rounds (capped);
- token masks: inserted tokens via TRL's `env_mask`, DMMPT (UloRL) multiplied into the same `tool_mask`;
- trainer state: strategy pool / RNGs and the refill order are saved in every checkpoint and restored on resume;
- sharded training (ZeRO-3, FSDP2, detected as TRL's `_dist` does): the engine decodes on a whole copy of the policy
  that gets the gathered weights once per optimizer step (rl/weight_sync.py).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import gather, gather_object, pad_across_processes
from trl import GRPOTrainer

from rewards.correctness import PROMPT_OPENS_THINK, opens_think
from rl.advantages import group_center_batch_whiten, mean_only_advantages
from rl.batching import RefillOrder, rng_from_json, rng_to_json, row_columns, row_key, sample_to_json, select_groups
from rl.losses import dmmpt_mask, masked_fraction
from rl.reward_fields import fill_reward_fields, generation_eos_ids
from rl.sampling import DynamicSampler
from rl.variants.base import GroupBatch, Plan
from rl.weight_sync import full_copy, full_state
from rollouts.strategies.base import derive_seed
from rollouts.templates import BUDGET_SLOT, encode_prompt
from rollouts.types import Sample, SamplingParams

logger = logging.getLogger("brevity.trainer")
STATE_FILE = "brevity_state.json"  # rank r > 0 writes brevity_state.<r>.json: segment pools are per process
MAX_SEGMENT_ROUNDS = 64


class BrevityTrainer(GRPOTrainer):
    """GRPOTrainer + a variant `Plan`. `engine_factory(rollout_model)` builds the rollout engine; an engine that
    decodes with a transformers model calls `rollout_model()` once for it (the live policy, or under ZeRO-3/FSDP2 a
    whole copy the trainer refills every step), one with weights of its own (vLLM) does not call it. None leaves
    generation to TRL itself (standard groups only)."""

    def __init__(
        self, *args: Any, plan: Plan, engine_factory: Callable[[Callable[[], Any]], Any] | None, **kwargs: Any
    ) -> None:
        self.plan = plan
        self._engine_factory = engine_factory
        self._engine: Any = None
        self._strategy: Any = None
        self._params: SamplingParams | None = None
        self._calls = 0  # rollout calls so far; seeds each call's sampling
        self._synced_step: int | None = 0  # the step whose weights an engine with its own (vLLM, copy) holds
        self._rows: list[dict[str, Any]] = []  # TRL input rows of the generation round in progress
        self._ready: list[Sample] = []  # UloRL: released samples beyond this step's batch
        self._last: dict[str, torch.Tensor] = {}
        os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
        super().__init__(*args, rollout_func=self._rollout if engine_factory else None, **kwargs)
        self._refill = RefillOrder(self.args.seed)  # the same on every rank: ranks take disjoint slices of one order
        if engine_factory is not None and self._dist.fsdp_version == 1:
            raise ValueError(
                "brevity's rollout engines gather FSDP2 and ZeRO-3 weights, not FSDP1's flat parameters: set "
                "fsdp_version: 2 (experiments/accelerate/fsdp2.yaml)"
            )
        names = list(self.reward_func_names)
        if plan.group_transform is not None and plan.transform_column not in names:
            raise ValueError(f"the variant rewrites reward {plan.transform_column!r}, which is not among {names}")

    # ---- rollout seam -------------------------------------------------------------------------------------------
    def _build_strategy(self) -> Any:
        from rollouts.strategies.segments import SegmentStrategy
        from rollouts.strategies.serial_exits import SerialExitStrategy
        from rollouts.strategies.standard import StandardStrategy

        args, kw = self.args, dict(self.plan.strategy_kwargs)
        self._engine = self._engine_factory(self._rollout_model)
        # Segments derive a seed per (group, member, segment) from this one; other strategies are seeded per call.
        rank = self.accelerator.process_index
        seed = derive_seed(args.seed, rank) if self.plan.strategy == "segments" else None
        self._params = SamplingParams(
            temperature=args.temperature,
            top_p=args.top_p,
            top_k=args.top_k or 0,
            max_tokens=args.max_completion_length,
            seed=seed,
        )
        kw.pop("cap_generation", None)
        if self.plan.strategy == "serial_exits":
            return SerialExitStrategy(self._engine, self.processing_class, self._params, seed=args.seed, **kw)
        if self.plan.strategy == "segments":
            return SegmentStrategy(self._engine, self._params, self.num_generations, **kw)
        return StandardStrategy(self._engine, self._params, self.num_generations)

    def _budget(self) -> int | None:
        schedule = self.plan.budget_schedule
        return None if schedule is None else int(schedule(self.state.global_step))

    def _prompt_ids(self, messages: list[dict[str, str]] | str) -> list[int]:
        budget = self._budget()
        if budget is not None:  # the curriculum's budget sentence follows B(t) (methods.md §4.6)
            if isinstance(messages, str):  # a raw template (no chat template): the paper's base-model string
                messages = messages.replace(BUDGET_SLOT, str(budget))
            else:
                messages = [{**m, "content": m["content"].replace(BUDGET_SLOT, str(budget))} for m in messages]
        return encode_prompt(self.processing_class, messages)

    @property
    def sharded(self) -> bool:
        """ZeRO-3 or FSDP: each rank holds a shard of every weight (TRL's `_dist` decides, as for its vLLM sync)."""
        return bool(self._dist.is_zero3 or self._dist.is_fsdp)

    def _rollout_model(self) -> Any:
        """The model a transformers engine decodes with: the live policy, or when it is sharded a whole copy on this
        rank's device (in the dtype an unsharded run decodes in) that `_sync_engine` fills before each step's first
        rollout. Called by the engine factory, so a vLLM engine never pays for the copy."""
        live = self.accelerator.unwrap_model(self.model)
        if not self.sharded:
            return live
        args = self.args
        dtype = torch.bfloat16 if args.bf16 else torch.float16 if args.fp16 else next(live.parameters()).dtype
        self._synced_step = None  # the copy holds no weights yet
        return full_copy(live, self.accelerator.device, dtype)

    def _sync_engine(self) -> None:
        """An engine with weights of its own (vLLM, the copy under sharding) gets the policy's once per optimizer step,
        gathered one tensor at a time (a collective: every rank gets here together); one on the live policy needs
        nothing."""
        live = self.accelerator.unwrap_model(self.model)
        if getattr(self._engine, "model", None) is live or self._synced_step == self.state.global_step:
            return
        self._engine.load_weights(full_state(live, self.accelerator.device))
        self._synced_step = self.state.global_step

    def _rollout(self, prompts: list[Any], trainer: Any) -> dict[str, Any]:
        """Generate whole groups: prompts arrive repeated G times in global order; each rank runs every world-th
        group, results are exchanged, and each rank keeps its own slice (TRL's local layout)."""
        if self._strategy is None:
            self._strategy = self._build_strategy()
        self._sync_engine()
        G, world, rank = self.num_generations, self.accelerator.num_processes, self.accelerator.process_index
        everything = gather_object(prompts) if world > 1 else list(prompts)
        unique = everything[::G]
        mine = list(range(rank, len(unique), world))
        ids = [self._prompt_ids(unique[i]) for i in mine]
        self._calls += 1
        was_training = self.model.training
        self.model.eval()
        with torch.no_grad():
            if self.plan.strategy == "segments":
                rows = gather_object(self._rows) if world > 1 else list(self._rows)
                keys = [row_key(rows[i * G]) if len(rows) == len(everything) else None for i in mine]
                samples = self._segment_batch(ids, keys)
            else:  # the engine draws a seed per request from an RNG of this call and rank, so prompts, ranks and
                with torch.random.fork_rng(devices=[]):  # steps get distinct streams (one params.seed would not)
                    torch.manual_seed(derive_seed(self.args.seed, self._calls, rank))
                    samples = self._strategy.generate(ids, max_tokens=self._caps(len(ids)))
        self.model.train(was_training)
        groups = {i: samples[k * G : (k + 1) * G] for k, i in enumerate(mine)}
        if world > 1:
            merged: dict[int, list[Sample]] = {}
            for part in gather_object([groups]):
                merged.update(part)
            groups = merged
        flat = [s for i in range(len(unique)) for s in groups[i]]
        return self._to_trl(flat[rank * len(prompts) : (rank + 1) * len(prompts)])

    def _caps(self, n: int) -> list[int] | None:
        """Curriculum with `cap_generation`: at most 2·B(t) new tokens (where the triangular reward reaches 0)."""
        budget = self._budget()
        if budget is None or not self.plan.strategy_kwargs.get("cap_generation"):
            return None
        return [min(2 * budget, self.args.max_completion_length)] * n

    def _segment_batch(self, ids: list[list[int]], keys: list[str | None]) -> list[Sample]:
        """UloRL step: admit this step's prompts and decode one segment for every unfinished sample; released groups
        (possibly admitted steps ago, so keyed by their own dataset row) fill the batch. While too few are ready,
        more dataset rows are admitted and another segment decoded (warm-up), so unfinished samples carry over.

        Released samples left over from an earlier call (a call may release more groups than a batch takes; warm-up
        rows release later on top of each step's own prompts) fill the batch first, and only as many of this call's
        prompts are admitted as the batch still lacks (the rest are skipped, as dataset rows). Admitting them all kept
        that surplus for good: every later batch then trained on samples one optimizer step old, which POIS treats as
        on-policy (ratio 1, nothing clipped), and that alone degraded training (issue: ulorl instability)."""
        G = self.num_generations
        want = len(ids) * G
        admit = min(len(ids), max(0, -(-(want - len(self._ready)) // G)))
        self._metrics["train"]["ulorl/carried_ready"].append(float(len(self._ready)))
        ready = self._ready + self._strategy.generate(ids[:admit], keys=keys[:admit])
        rounds = 0
        while len(ready) < want:
            if rounds >= MAX_SEGMENT_ROUNDS:
                raise RuntimeError(f"segment rollout released too few groups in {rounds} segments")
            rows = self._draw_rows(len(ids))
            ready += self._strategy.generate(
                [self._prompt_ids(r["prompt"]) for r in rows], keys=list(map(row_key, rows))
            )
            rounds += 1
        self._ready, batch = ready[want:], ready[:want]
        metrics = self._metrics["train"]
        metrics["ulorl/extra_segments"].append(float(rounds))
        metrics["ulorl/pending"].append(float(self._strategy.pending))
        metrics["ulorl/staleness_mean"].append(sum(s.extras.get("staleness", 0) for s in batch) / max(len(batch), 1))
        return batch

    def _to_trl(self, samples: list[Sample]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "prompt_ids": [s.prompt_ids for s in samples],
            "completion_ids": [s.completion_ids for s in samples],
            "logprobs": None,  # TRL recomputes old log-probs itself when it needs them
            "env_mask": [s.loss_mask for s in samples],
            "finish_reason": [s.finish_reason for s in samples],
            PROMPT_OPENS_THINK: [self._opens_think(s.prompt_ids) for s in samples],
        }
        for key in ("exit_rank", "exit_position", "staleness"):
            if samples and key in samples[0].extras:
                out[key] = [s.extras[key] for s in samples]
        carried = [row_columns(s.extras.get("key")) for s in samples]  # a released group's own `answer`, ...
        for column in sorted({c for row in carried for c in row} - set(out)):
            out[column] = [row.get(column) for row in carried]
        return out

    def _opens_think(self, prompt_ids: list[int]) -> bool:
        """Whether a prompt leaves a think block open (R1-distill templates end with `<think>`): an answer then has
        to follow `</think>` (issue 13). The generation prompt is at the end: its last 32 tokens decide."""
        return opens_think(self.processing_class.decode(list(prompt_ids[-32:])))

    def _fill_rollout_fields(self, inputs: list[dict[str, Any]], prompts: list[Any], completion_ids: Any) -> None:
        """What every reward gets besides TRL's arguments (rl/reward_fields.py): `num_tokens` on every path; where TRL
        generated (`rollout.engine: trl`, no rollout function) also `finish_reason`, from the EOS ids generation
        stopped on, and `prompt_opens_think`, from the chat template (brevity's rollouts pass both as extra fields)."""
        if self.rollout_func is not None:
            fill_reward_fields(inputs, completion_ids)
            return
        config = getattr(self, "generation_config", None)  # absent under TRL's vLLM, which stops on the same ids
        cap = getattr(config, "max_new_tokens", None) or self.max_completion_length
        eos = generation_eos_ids(self.eos_token_ids, config)
        fill_reward_fields(inputs, completion_ids, eos_token_ids=eos, max_tokens=cap)
        for row, prompt in zip(inputs, prompts):
            if PROMPT_OPENS_THINK not in row:
                if isinstance(prompt, str):
                    text = prompt
                else:
                    text = self.processing_class.apply_chat_template(
                        prompt, add_generation_prompt=True, tokenize=False, **(self.chat_template_kwargs or {})
                    )
                row[PROMPT_OPENS_THINK] = opens_think(text)

    # ---- group-transform seam -------------------------------------------------------------------------------------
    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):  # noqa: ANN001, ANN202
        self._fill_rollout_fields(inputs, prompts, completion_ids_list)
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)  # (N, F)
        device = rewards_per_func.device
        lengths = torch.tensor([len(ids) for ids in completion_ids_list], device=device)
        lengths = gather(lengths) if self.accelerator.num_processes > 1 else lengths
        G = self.num_generations
        mode = "train" if self.model.training else "eval"
        names = list(self.reward_func_names)
        if "correctness" in names:  # read before a group transform rewrites the column (S-GRPO, GRPO-λ)
            accuracy = (rewards_per_func[:, names.index("correctness")] > 0).float().mean().item()
            self._metrics[mode]["brevity/accuracy"].append(accuracy)
        # what a solve-rate band counts as solved: the filter column (DLER: correctness) or else the `correctness`
        # reward above 0, before any group transform; without either, the weighted reward above 0 (below)
        solved_column = next((c for c in (self.plan.filter_column, "correctness") if c in names), None)
        solved = None if solved_column is None else rewards_per_func[:, names.index(solved_column)] > 0
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
        column = self.plan.filter_column
        filter_score = rewards_per_func[:, names.index(column)] if column in names else weighted
        solved = weighted > 0 if solved is None else solved
        self._last = {"rewards": weighted, "filter": filter_score, "lengths": lengths, "solved": solved}
        if (budget := self._budget()) is not None:
            self._metrics[mode]["brevity/budget"].append(float(budget))
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
        elif self.plan.advantage == "mean_only":
            out["advantages"] = self._mean_only(out)
        if self.plan.dmmpt is not None and mode == "train":
            self._apply_dmmpt(out)
        return out

    def _score_round(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        self._rows = inputs
        out = super()._generate_and_score_completions(inputs)
        n, rank = len(inputs), self.accelerator.process_index
        local = slice(rank * n, (rank + 1) * n)
        out["brevity_rewards"] = self._last["rewards"][local].clone()
        out["brevity_filter"] = self._last["filter"][local].clone()
        out["brevity_lengths"] = self._last["lengths"][local].clone()
        out["brevity_solved"] = self._last["solved"][local].clone()
        out["brevity_valid"] = torch.ones(n, dtype=torch.bool, device=out["advantages"].device)
        return out

    def _gathered(self, tensor: torch.Tensor) -> torch.Tensor:
        return gather(tensor) if self.accelerator.num_processes > 1 else tensor

    def _gathered_rows(self, tensor: torch.Tensor) -> tuple[torch.Tensor, int]:
        """All ranks' rows in rank order, and where this rank's start: after dynamic sampling ranks may hold
        different numbers of rows, which a plain `gather` cannot take."""
        if self.accelerator.num_processes == 1:
            return tensor, 0
        sizes = gather(torch.tensor([tensor.shape[0]], device=tensor.device)).tolist()
        padded = pad_across_processes(tensor, dim=0)
        width = padded.shape[0]
        parts = gather(padded).split(width)
        rank = self.accelerator.process_index
        return torch.cat([part[:size] for part, size in zip(parts, sizes)]), sum(sizes[:rank])

    def _whitened(self, out: dict[str, Any]) -> torch.Tensor:
        """DLER: (r − mean_g) then whitening over the gathered batch, token-weighted (methods.md §3.2). Inert groups
        (padding rows of a dynamic-sampling batch) take no part in the batch statistics and get advantage 0."""
        G = self.num_generations
        rewards, start = self._gathered_rows(out["brevity_rewards"])
        lengths, _ = self._gathered_rows(out["brevity_lengths"])
        valid, _ = self._gathered_rows(out["brevity_valid"])
        counts = lengths.view(-1, G) if self.plan.token_weighted_whitening else None
        adv = group_center_batch_whiten(rewards.view(-1, G), counts, valid=valid.view(-1, G)[:, 0]).reshape(-1)
        n = out["brevity_rewards"].numel()
        return adv[start : start + n].to(out["advantages"].dtype)

    def _mean_only(self, out: dict[str, Any]) -> torch.Tensor:
        """S-GRPO (§2.3): Â = r − mean over the serial group, no std division, whatever TRL's `scale_rewards` says.
        Inert groups (padding rows of a dynamic-sampling batch) get 0."""
        G = self.num_generations
        rewards, start = self._gathered_rows(out["brevity_rewards"])
        valid, _ = self._gathered_rows(out["brevity_valid"])
        adv = mean_only_advantages(rewards.view(-1, G), valid=valid.view(-1, G)[:, 0]).reshape(-1)
        n = out["brevity_rewards"].numel()
        return adv[start : start + n].to(out["advantages"].dtype)

    def _dynamic_sampling(self, out: dict[str, Any], inputs: list[dict[str, Any]]) -> dict[str, Any]:
        """Drop groups whose filter score does not vary and refill from extra generation rounds, as DLER's fork
        (`recipe/dapo/dapo_ray_trainer.py`, `filter_groups`): the score is the plan's `filter_column` (DLER: the
        correctness score before the truncation penalty's scaling, the fork's `seq_reward`), rounds are unlimited when
        `max_resample_rounds` <= 0 (the fork's `max_num_gen_batches: 0`), and each rank keeps its first
        `target` varying groups (the fork's `batch[:train_batch_size]`). With `variant.solve_rate_band` a group is
        kept only if its solve rate lies in the band (the share of members scoring above 0 on the filter column, else
        on `correctness`, else on the weighted reward); every rule reads one whole group, so it does not matter which
        process holds which group.

        When the round cap stops refilling first, the step trains on the varying groups there are, never on
        zero-variance fillers: no filler counts in the loss normaliser or the KL term (logged as
        `brevity/groups_trained` and `brevity/resample_cap_hit`). TRL splits a generation batch into
        `steps_per_generation` equal micro-batches, so the batch is topped up to a multiple of it with inert rows
        (whole groups with loss mask 0, advantage 0, outside the batch statistics; `brevity/inert_rows`); they change
        nothing for the token-mean losses (`dapo`, `bnpo`) but dilute `grpo`'s mean over sequences.
        Needs whole groups on each process (checked at start-up).
        """
        G, target = self.num_generations, len(inputs) // self.num_generations
        # the round cap is global, so it is enforced here
        sampler = DynamicSampler(target, max_rounds=0, band=self.plan.solve_rate_band)
        pool, where, rounds = [out], [], 0  # where[i] = (round, group) of the sampler's i-th group
        cap = self.plan.max_resample_rounds
        while True:
            cur = pool[-1]
            if not sampler.done:  # a full rank still runs the round (collectives) but keeps nothing from it
                scores = cur["brevity_filter"].view(-1, G)
                where += [(len(pool) - 1, g) for g in range(scores.shape[0])]
                keep = None if self.plan.keep_group is None else self.plan.keep_group(scores)
                sampler.add(scores, keep=keep, solved=cur["brevity_solved"].view(-1, G))
            need = torch.tensor([max(target - sampler.num_kept, 0)], device=cur["advantages"].device)
            short = self._gathered(need).max().item() > 0
            if not short or 0 < cap <= rounds:
                break
            rounds += 1
            pool.append(self._score_round(self._refill_inputs(inputs)))
        kept = sampler.kept_indices()
        chosen = [where[i] for i in kept]
        spg = self.args.steps_per_generation
        taken = set(kept)
        fillers = [where[i] for i in range(len(where)) if i not in taken] + chosen
        inert = 0
        while (len(chosen) + inert) * G % spg or len(chosen) + inert == 0:
            inert += 1
        rows = chosen + [fillers[k % len(fillers)] for k in range(inert)]
        metrics = self._metrics["train"]
        metrics["brevity/resample_rounds"].append(float(rounds))
        metrics["brevity/resample_cap_hit"].append(float(short))
        metrics["brevity/groups_trained"].append(float(len(chosen)))
        metrics["brevity/inert_rows"].append(float(inert * G))
        self._log_group_counts(sampler, out["advantages"].device)
        batch = select_groups(pool, rows, G, self.processing_class.pad_token_id)
        device = batch["advantages"].device
        valid = torch.tensor([k < len(chosen) for k in range(len(rows)) for _ in range(G)], device=device)
        batch["brevity_valid"] = valid
        batch["advantages"] = batch["advantages"] * valid
        keep = valid.unsqueeze(1).to(batch["completion_mask"].dtype)
        if "tool_mask" in batch:
            batch["tool_mask"] = batch["tool_mask"] * keep
        else:
            batch["tool_mask"] = keep.expand_as(batch["completion_mask"]).clone()
        loss_tokens = (batch["completion_mask"] * batch["tool_mask"]).sum()
        batch["num_items_in_batch"] = self._gathered(loss_tokens.reshape(1)).sum()
        return batch

    def _log_group_counts(self, sampler: DynamicSampler, device: torch.device) -> None:
        """Groups generated, kept (passed every rule; a process trains on its first `target` of them), dropped and
        outside the solve-rate band this step, summed over rounds and processes (a collective)."""
        counts = [sampler.num_seen, sampler.num_kept, sampler.num_dropped, sampler.num_out_of_band]
        totals = self._gathered(torch.tensor(counts, device=device)).view(-1, len(counts)).sum(0).tolist()
        names = ["seen", "kept", "dropped"] + (["out_of_band"] if sampler.band is not None else [])
        for name, total in zip(names, totals):
            self._metrics["train"][f"brevity/groups_{name}"].append(float(total))

    def _draw_rows(self, n: int) -> list[dict[str, Any]]:
        """n dataset rows for refills (dynamic sampling, UloRL warm-up)."""
        world, rank = self.accelerator.num_processes, self.accelerator.process_index
        return [dict(self.train_dataset[i]) for i in self._refill.take(n, len(self.train_dataset), world, rank)]

    def _refill_inputs(self, inputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        G = self.num_generations  # a row per completion: TRL writes each completion's extra fields into its row
        return [dict(row) for row in self._draw_rows(len(inputs) // G) for _ in range(G)]

    def _apply_dmmpt(self, out: dict[str, Any]) -> None:
        """UloRL DMMPT: mask well-mastered positive tokens of low-entropy samples (Eq. 9-10); POIS old log-probs."""
        ids = torch.cat([out["prompt_ids"], out["completion_ids"]], dim=1)
        attn = torch.cat([out["prompt_mask"], out["completion_mask"]], dim=1)
        with torch.no_grad():  # chunked as TRL's own log-prob passes: the whole generation batch in one forward OOMs
            logps, entropies, _ = self._get_per_token_logps_and_entropies(
                self.model,
                ids,
                attn,
                out["completion_ids"].size(1),
                batch_size=self.args.per_device_train_batch_size,
                compute_entropy=True,
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
            "ready": [sample_to_json(s) for s in self._ready],
            "refill": self._refill.state_dict(),
            "calls": self._calls,
            "plan_rng": None if self.plan.rng is None else rng_to_json(self.plan.rng),
        }

    def load_brevity_state(self, state: dict[str, Any]) -> None:
        if state.get("strategy") is not None:
            if self._strategy is None:
                self._strategy = self._build_strategy()
            self._strategy.load_state_dict(state["strategy"])
        self._ready = [Sample(**s) for s in state.get("ready", [])]
        self._refill.load_state_dict(state["refill"])
        self._calls = int(state.get("calls", 0))
        if self.plan.rng is not None and state.get("plan_rng") is not None:
            self.plan.rng.setstate(rng_from_json(state["plan_rng"]))

    def _state_file(self, folder: Path) -> Path:
        rank = self.accelerator.process_index
        return folder / (STATE_FILE if rank == 0 else STATE_FILE.replace(".json", f".{rank}.json"))

    def _save_checkpoint(self, model, trial):  # noqa: ANN001, ANN202
        super()._save_checkpoint(model, trial)
        folder = Path(self.args.output_dir) / f"checkpoint-{self.state.global_step}"
        folder.mkdir(parents=True, exist_ok=True)
        self._state_file(folder).write_text(json.dumps(self.brevity_state()))

    def _load_rng_state(self, checkpoint):  # noqa: ANN001, ANN202
        super()._load_rng_state(checkpoint)
        path = self._state_file(Path(checkpoint)) if checkpoint else None
        if path is not None and path.is_file():
            self.load_brevity_state(json.loads(path.read_text()))
