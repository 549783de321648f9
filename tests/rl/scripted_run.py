"""A scripted rollout engine and reward, and a training driver that records what BrevityTrainer computed.

Used by test_distributed.py and test_resume.py. The engine's output is a pure function of the token ids it is asked
for (never of seeds, batch layout or weights), so two runs see the same samples no matter which process generates
which group, and a resumed run sees what an uninterrupted one saw. Everything else is the production path:
`rl.train.build_trainer` on an experiment YAML, then `trainer.train()`; only the engine factory is swapped.

    python -m tests.rl.scripted_run --out DIR --config a.yaml [--config b.yaml ...] [--real-config c.yaml ...]
    accelerate launch --config_file experiments/accelerate/cpu_2proc.yaml -m tests.rl.scripted_run ...

Each process writes DIR/<config stem>/rank<r>.json: one record per generation batch (global step, budget, local
samples, their rewards and advantages, the gathered rewards), the brevity state loaded on resume (a YAML's
`resume_from_checkpoint`) and the final one.
"""

from __future__ import annotations

import argparse
import json
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rollouts.types import Completion, Request

CORRECT, WRONG = 1001, 1002  # answer tokens; the scripted reward looks for CORRECT
MARK = 1100  # a member's first token is MARK + j, so a resumed segment knows which member it continues
FILLER = 2000  # filler tokens are FILLER .. FILLER + 99
# dynamic sampling's per-step counts, summed over processes (brevity/groups_trained is each process's own)
GROUP_COUNTS = [f"brevity/groups_{name}" for name in ("seen", "kept", "dropped", "out_of_band")]


def _h(*parts: Any) -> int:
    return zlib.crc32(json.dumps(parts).encode())


class ScriptedEngine:
    """`Engine` whose completions depend only on (prompt ids, prefix ids, sample index).

    Member j of a prompt's group is MARK+j, 1-7 filler tokens, an answer token, eos. A prompt's groups have a
    correctness ratio of 0, 1/4, .. or 1 (so some groups have zero reward variance). With `thinking=n` (S-GRPO) the
    trace is MARK, n-1 fillers, `</think>`, answer, eos: exactly n thinking tokens. The driver sets n = m + 3 for m
    exits, so the strategy draws its exit positions, and a 2-process run matches a 1-process run only if the draws
    do not depend on which process holds which prompts. A request whose prefix is not the start of a member (an
    S-GRPO exit: trace prefix + inducer) gets an answer token and eos, correct or not by (prompt, prefix length).
    """

    def __init__(
        self, eos_id: int, think_close_ids: Sequence[int] = (), thinking: int | None = None, max_model_len: int = 4096
    ) -> None:
        self.eos_token_ids = (eos_id,)
        self.max_model_len = max_model_len
        self.think_close_ids = list(think_close_ids)
        self.thinking = thinking

    def member(self, prompt: Sequence[int], j: int) -> list[int]:
        ratio = _h(list(prompt)) % 5  # correct members: ratio/4 of the group, on average
        answer = CORRECT if _h(list(prompt), j, "c") % 4 < ratio else WRONG
        if self.thinking is not None:
            fill = [FILLER + (_h(list(prompt), j, k) % 100) for k in range(self.thinking - 1)]
            return [MARK + j, *fill, *self.think_close_ids, answer, self.eos_token_ids[0]]
        fill = [FILLER + (_h(list(prompt), j, k) % 100) for k in range(1 + _h(list(prompt), j) % 7)]
        return [MARK + j, *fill, answer, self.eos_token_ids[0]]

    def generate(self, requests: Sequence[Request]) -> list[list[Completion]]:
        out = []
        for req in requests:
            prefix = list(req.prefix_ids)
            completions = []
            for k in range(req.params.n):
                j = prefix[0] - MARK if prefix else k
                full = self.member(req.prompt_ids, j)
                if full[: len(prefix)] == prefix:
                    rest = full[len(prefix) :]
                else:  # an exit: prefix + inducer -> an answer
                    answer = CORRECT if _h(list(req.prompt_ids), len(prefix)) % 3 else WRONG
                    rest = [answer, self.eos_token_ids[0]]
                cut = rest[: req.params.max_tokens]
                completions.append(Completion(cut, "stop" if len(cut) == len(rest) else "length"))
            out.append(completions)
        return out

    def load_weights(self, weights: Any) -> None:
        del weights


def correctness(completion_ids: list[list[int]], **kwargs: Any) -> list[float]:
    """Scripted reward: 1.0 when the completion holds the CORRECT token."""
    return [1.0 if CORRECT in ids else 0.0 for ids in completion_ids]


def _unpad(ids: Any, mask: Any) -> list[list[int]]:
    return [[int(t) for t, m in zip(row, mrow) if m] for row, mrow in zip(ids.tolist(), mask.tolist())]


def run_one(config_path: str, out_dir: Path, scripted: bool = True) -> None:
    """Train on one YAML (resuming from its `resume_from_checkpoint`, if set) and write this rank's log."""
    from rl.experiment import load_config
    from rl.train import build_trainer

    config = load_config(config_path)
    trainer = build_trainer(config)
    tokenizer = trainer.processing_class
    think_close = tokenizer.encode("</think>", add_special_tokens=False)
    thinking = config.variant.num_exits + 3 if config.variant_name == "s_grpo" else None  # positions are drawn
    if scripted:
        trainer.engine_host.factory = lambda rollout_model: ScriptedEngine(
            tokenizer.eos_token_id, think_close, thinking
        )

    rank = trainer.accelerator.process_index
    log: dict[str, Any] = {"rank": rank, "world": trainer.accelerator.num_processes, "records": []}
    generate = trainer._generate_and_score_completions
    load_state = trainer.load_brevity_state
    refill_inputs = trainer.rollout.refill
    refills: list[list[Any]] = []  # problem ids of each dynamic-sampling refill round of the current batch
    score_round = trainer.rollout.round
    rounds: list[dict[str, Any]] = []  # each generation round of the current batch: local groups as scored

    def scored(inputs: Any) -> Any:
        out = score_round(inputs)
        prompts = [list(s.prompt_ids) for s in out.samples]
        rounds.append({"prompt_ids": prompts, "solved": out.scores["solved"].tolist()})
        return out

    def budget() -> int | None:
        hook = trainer.plan.prompt  # the curriculum's B(t), stated in the prompt
        return None if hook is None else hook.at(trainer.state.global_step)

    def recorded(inputs: Any) -> Any:
        out = generate(inputs)
        log["records"].append(
            {
                "global_step": trainer.state.global_step,
                "budget": budget(),
                "prompt_ids": _unpad(out["prompt_ids"], out["prompt_mask"]),
                "completion_ids": _unpad(out["completion_ids"], out["completion_mask"]),
                "rewards": out["brevity_rewards"].tolist(),
                "lengths": out["brevity_lengths"].tolist(),
                "valid": out["brevity_valid"].tolist() if "brevity_valid" in out else None,
                "advantages": out["advantages"].tolist(),
                "gathered_rewards": trainer._last["rewards"].tolist(),
                "input_rows": [row.get("problem_id") for row in inputs],
                "refill_rows": refills[:],
                "rounds": rounds[:],
                "group_counts": {k: v[-1] for k, v in trainer._metrics["train"].items() if k in GROUP_COUNTS},
            }
        )
        refills.clear()
        rounds.clear()
        return out

    def refill(inputs: Any) -> Any:
        rows = refill_inputs(inputs)
        refills.append([row.get("problem_id") for row in rows])
        return rows

    def loaded(state: dict[str, Any]) -> None:
        log["loaded_state"] = json.loads(json.dumps(state))
        load_state(state)

    trainer._generate_and_score_completions = recorded
    trainer.rollout.refill = refill
    trainer.rollout.round = scored
    trainer.load_brevity_state = loaded
    trainer.train(resume_from_checkpoint=config.grpo.resume_from_checkpoint)
    log["final_global_step"] = trainer.state.global_step
    log["final_state"] = json.loads(json.dumps(trainer.brevity_state()))
    folder = out_dir / Path(config_path).stem
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"rank{rank}.json").write_text(json.dumps(log))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--config", action="append", default=[], help="experiment YAML, scripted engine (repeatable)")
    p.add_argument("--real-config", action="append", default=[], help="experiment YAML, its own engine (repeatable)")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    for path in args.config:
        run_one(path, Path(args.out))
    for path in args.real_config:
        run_one(path, Path(args.out), scripted=False)
    import torch.distributed as dist

    if dist.is_initialized():  # else gloo's threads may abort the process at exit ("terminate called", exit -6)
        dist.barrier()
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
