"""The one TRL subclass, and the only module that touches TRL private names (tests/rl/test_trl_contract.py checks them).

It runs a variant's `Plan` (rl/variants/base.py) without asking which variant that is. Each step the rollout
(rollouts/collect.py) generates, scores and filters groups, refilling where dynamic sampling drops some; TRL then gets
only the kept groups, through its `rollout_func`, with their rewards already computed. Seams: generation (brevity's
engines through rollouts/placement.py, on TRL's vLLM under `use_vllm` with TRL's `_last_loaded_step`-guarded sync, or
TRL's own `_tokenize_prompts` + `_generate_single_turn`); scoring (TRL's
`_calculate_rewards` per round, then the plan's group rules, rl/scoring.py); after TRL's pass the plan's advantage and
token mask (`_get_per_token_logps_and_entropies`); checkpoints (the rollout's state, the plan's RNG); `_dist`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from trl import GRPOTrainer

from rewards.thinking import prompt_opens_think
from rl.advantages import plan_advantages
from rl.engine_host import EngineHost, generating
from rl.losses import apply_token_mask
from rl.reward_fields import fill_reward_fields, generation_eos_ids, grade_once, sample_fields, trl_completions
from rl.scoring import batch_metrics, score_round
from rl.variants.base import Plan
from rollouts.collect import Collector, Round
from rollouts.comm import Comm
from rollouts.groups import RolloutSetup, Row
from rollouts.placement import GroupRollout
from rollouts.refill import Refills, rng_from_json, rng_to_json
from rollouts.templates import encode_prompt
from rollouts.trl_vllm import TRLVLLMEngine, reload_on_cpu
from rollouts.types import Sample, SamplingParams, finish_reason

STATE_FILE = "brevity_state.json"  # rank r > 0 writes brevity_state.<r>.json: segment pools are per process


class BrevityTrainer(GRPOTrainer):
    """GRPOTrainer + a variant `Plan`; `engine_factory(rollout_model)` builds brevity's engine (rl/engine_host.py),
    None leaves generation to TRL."""

    def __init__(self, *args: Any, plan: Plan, engine_factory: Callable[..., Any] | None, **kwargs: Any) -> None:
        self.plan, self._batch = plan, None  # _batch: the kept groups TRL is being served
        os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
        super().__init__(*args, rollout_func=self._serve if engine_factory else None, **kwargs)
        if engine_factory is not None and self._dist.fsdp_version == 1:
            raise ValueError(
                "brevity's rollout engines gather FSDP2 and ZeRO-3 weights, not FSDP1's flat parameters: set "
                "fsdp_version: 2 (experiments/accelerate/fsdp2.yaml)"
            )
        if plan.group_transform is not None and plan.transform_column not in self.reward_func_names:
            raise ValueError(f"the variant rewrites {plan.transform_column!r}, not among {self.reward_func_names}")
        if self.use_vllm:  # TRL built its vLLM (GRPOConfig's vllm_* fields); brevity's rollouts run on it
            reload_on_cpu(self.vllm_generation)
            if engine_factory is not None:
                engine_factory = lambda _: TRLVLLMEngine(self.vllm_generation, self._sync_vllm, self._vllm_awake)  # noqa: E731
        a, comm, G = self.args, Comm(self.accelerator), self.num_generations
        dtype = torch.bfloat16 if a.bf16 else torch.float16 if a.fp16 else None
        live = lambda: self.accelerator.unwrap_model(self.model)  # noqa: E731
        sharded = bool(self._dist.is_zero3 or self._dist.is_fsdp)  # TRL's own check, as for its vLLM sync
        self.engine_host = EngineHost(
            engine_factory, live, lambda: self.state.global_step, comm.device, sharded, dtype
        )
        self._refills = Refills(self.train_dataset, a.seed, comm.world, comm.rank)
        params = SamplingParams(temperature=a.temperature, top_p=a.top_p, top_k=a.top_k or 0,
                                max_tokens=a.max_completion_length,  # TRL's IS correction reads sampling log-probs
                                logprobs=self.use_vllm and self.vllm_importance_sampling_correction)  # fmt: skip
        setup = RolloutSetup(self.processing_class, params, G, a.seed, comm.rank, self._refills, self._prepare,
                             self._encode, self._log)  # fmt: skip
        self._groups = None if engine_factory is None else GroupRollout(
            plan.rollout, setup, self.engine_host.build, comm, self.engine_host.sync, lambda: generating(self.model)
        )  # fmt: skip
        generate = self._groups or self._trl_round
        self.rollout = Collector(generate, self._score, self._refills, comm, G, a.steps_per_generation, self._log)

    # ---- rows in, scored rounds out -----------------------------------------------------------------------------
    def _prepare(self, row: Row) -> Row:
        return row if self.plan.prompt is None else self.plan.prompt(row, self.state.global_step)

    def _encode(self, row: Row) -> list[int]:
        return encode_prompt(self.processing_class, row["prompt"], **(self.chat_template_kwargs or {}))

    def _trl_round(self, rows: list[Row]) -> tuple[list[Row], list[Sample]]:
        """`rollout.engine: trl`: TRL's own tokenisation and generation (transformers or its vLLM) of the rows."""
        rows = [self._prepare(dict(row)) for row in rows]
        prompt_ids, images, fields = self._tokenize_prompts([row["prompt"] for row in rows])
        completion_ids, logprobs = self._generate_single_turn(prompt_ids, images, fields, self.num_generations)
        config = getattr(self, "generation_config", None)  # absent under TRL's vLLM, which stops on the same ids
        cap = getattr(config, "max_new_tokens", None) or self.max_completion_length
        eos = generation_eos_ids(self.eos_token_ids, config)
        fill_reward_fields(rows, completion_ids, eos_token_ids=eos, max_tokens=cap)
        behaviour = logprobs or [None] * len(rows)
        return rows, [
            Sample(i, list(p), list(c), finish_reason(c, eos, cap), [1] * len(c), lp)
            for i, (p, c, lp) in enumerate(zip(prompt_ids, completion_ids, behaviour))
        ]

    def _score(self, rows: list[Row], samples: list[Sample]) -> Round:
        """One round's rewards: every reward function through TRL (a collective), then the plan's group rules."""
        decode = self.processing_class.decode
        sample_fields(rows, samples, lambda ids: prompt_opens_think(ids, decode))
        prompts, ids = [row["prompt"] for row in rows], [s.completion_ids for s in samples]
        self._pending_extra_logs.clear()  # what rewards log with `log_extra` travels with its rows
        completions = trl_completions(self.processing_class, prompts, samples, self.tools)
        grade_once(rows, completions, self.reward_funcs)  # rewards that grade alike read this verdict
        per_func = super()._calculate_rewards(rows, prompts, completions, ids)  # (N, F), every process's
        comm = self.rollout.comm
        lengths = comm.tensors(torch.tensor([len(x) for x in ids], device=per_func.device))
        step, n = self.state.global_step, len(rows)
        local = slice(comm.rank * n, (comm.rank + 1) * n)
        scored = score_round(per_func, lengths, self.reward_func_names, self.reward_weights, self.plan, step=step,
                             num_generations=self.num_generations, local=local)  # fmt: skip
        for name, value in scored.metrics.items():
            self._log(f"brevity/{name}", value)
        self._last = {"rewards": scored.rewards}  # the round's gathered weighted rewards
        return Round(rows, samples, scored.scores, scored.keep, logs=dict(self._pending_extra_logs))

    # ---- TRL's pass over the kept groups -------------------------------------------------------------------------
    def _generate_and_score_completions(self, inputs):  # noqa: ANN001, ANN202
        training = self.model.training
        batch = self.rollout.collect(inputs, self.plan.sample_filter if training else None)
        own, self._batch, self.rollout_func = self.rollout_func, batch, self._serve  # engine trl: generated already
        self._pending_extra_logs.clear()
        self._pending_extra_logs.update(batch.logs)
        try:
            out = super()._generate_and_score_completions(batch.rows)
        finally:
            self.rollout_func, self._batch = own, None
        out.update({f"brevity_{key}": batch.scores[key] for key in ("rewards", "lengths", "solved")})
        out["brevity_valid"] = batch.valid
        out["tool_mask"] = out["tool_mask"] * batch.valid.unsqueeze(1).to(out["tool_mask"].dtype)  # TRL pads with 1
        if self.plan.advantage is not None:
            adv = plan_advantages(self.plan.advantage, batch.scores["rewards"], batch.scores["lengths"], batch.valid,
                                  self.num_generations, self.rollout.comm)  # fmt: skip
            out["advantages"] = adv.to(out["advantages"].dtype)
        out["advantages"] = out["advantages"] * batch.valid
        if self.plan.token_mask is not None and training:
            self._apply_token_mask(out)
        return out

    def _serve(self, prompts: list[Any], trainer: Any) -> dict[str, Any]:
        assert self._batch is not None and len(prompts) == len(self._batch.rows), "served a batch it did not collect"
        return self._batch.rollout_output()

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):  # noqa: ANN001, ANN202
        """The served groups' rewards, scored where they were generated; inert rows are NaN (TRL leaves unscorable
        rows out of its reward statistics and gives them advantage 0)."""
        batch, comm = self._batch, self.rollout.comm
        assert batch is not None
        metrics = batch_metrics(batch, comm, "correctness" in self.reward_func_names)
        metrics.update({} if self.plan.prompt is None else self.plan.prompt.metrics(self.state.global_step))
        for name, value in metrics.items():
            self._metrics["train" if self.model.training else "eval"][f"brevity/{name}"].append(value)
        per_func = batch.scores["per_func"].clone()
        per_func[~batch.valid] = float("nan")
        return comm.tensors(per_func)

    def _apply_token_mask(self, out: dict[str, Any]) -> None:
        """The plan's token mask from the current policy's log-probs and entropies, chunked like TRL's own passes (the
        whole generation batch in one forward OOMs); with POIS those log-probs are the old ones too."""
        ids = torch.cat([out["prompt_ids"], out["completion_ids"]], dim=1)
        attn = torch.cat([out["prompt_mask"], out["completion_mask"]], dim=1)
        with torch.no_grad():
            logps, entropies, _ = self._get_per_token_logps_and_entropies(
                self.model, ids, attn, out["completion_ids"].size(1),
                batch_size=self.args.per_device_train_batch_size, compute_entropy=True,
            )  # fmt: skip
        name, fraction = apply_token_mask(self.plan.token_mask, out, logps, entropies)
        self._log(f"brevity/{name}_masked_fraction", fraction)

    def _sync_vllm(self) -> None:
        """TRL's weight sync into its vLLM, once per optimizer step (the check TRL's own generation makes)."""
        if self.state.global_step != self._last_loaded_step:
            self.vllm_generation.sync_weights()
            self._last_loaded_step = self.state.global_step

    @contextmanager
    def _vllm_awake(self) -> Iterator[None]:
        """TRL's sleep mode around a brevity engine call, as `VLLMGeneration.generate` does it: level-2 sleep drops
        the weights, so they are pushed again; the KV cache wakes for the call and everything sleeps after it."""
        vg = self.vllm_generation
        if vg.mode != "colocate" or not vg.enable_sleep_mode:
            yield
            return
        if vg._llm_weights_sleeping:
            vg.sync_weights()
        vg.llm.wake_up(tags=["kv_cache"])
        try:
            yield
        finally:
            vg.llm.sleep(level=2)
            vg._llm_weights_sleeping = True

    def _log(self, name: str, value: float) -> None:
        self._metrics["train"][name].append(float(value))

    # ---- brevity's state in checkpoints, a file per process -------------------------------------------------------
    def brevity_state(self) -> dict[str, Any]:
        groups = {"strategy": None, "ready": [], "calls": 0} if self._groups is None else self._groups.state_dict()
        rng = None if self.plan.rng is None else rng_to_json(self.plan.rng)
        return {**groups, "refill": self._refills.order.state_dict(), "plan_rng": rng}

    def load_brevity_state(self, state: dict[str, Any]) -> None:
        if self._groups is not None:
            self._groups.load_state_dict(state)
        self._refills.order.load_state_dict(state["refill"])
        if self.plan.rng is not None and state.get("plan_rng") is not None:
            self.plan.rng.setstate(rng_from_json(state["plan_rng"]))

    def _state_file(self, folder: Path) -> Path:
        rank = self.accelerator.process_index
        return folder / (STATE_FILE if rank == 0 else f"brevity_state.{rank}.json")

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
