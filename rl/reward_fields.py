"""The per-completion fields every reward function gets besides TRL's arguments: `finish_reason`, `num_tokens`,
`prompt_opens_think` and the strategy's own (`exit_rank`, `exit_position`, `staleness`).

brevity's rollouts (transformers or vLLM engine, any strategy) report each sample's finish reason; where TRL generates
(`rollout.engine: trl`) it reports none, so the trainer derives it here from the completion ids, the EOS ids that
generation stopped on and the generation cap, by the engines' own rule (`rollouts.types.finish_reason`). `num_tokens`
is `len(completion_ids)` on every path (the stop token included). The fields are set on the input rows a round
scores, which is how TRL hands them to every reward.

What this relies on in TRL 1.16 (`trl/trainer/grpo_trainer.py`; tests/rl/test_trl_contract.py checks it):
- `_calculate_rewards` passes every key of `inputs[0]` except prompt/completion/completion_ids to each reward
  function, one value per completion, after `_generate_and_score_completions` merged the rollout function's extra
  fields into `inputs` (so a field set on the input rows reaches every reward, whichever path generated);
- `self.eos_token_ids` is the generation config's `eos_token_id` list with the tokenizer's EOS added (the fix of trl
  PR #7039), and `_generate_single_turn` cuts each completion after the first of those ids;
- without vLLM, `self.generation_config` is what `generate` runs with: `eos_token_id` and `max_new_tokens` from the
  trainer, overridden by `GRPOConfig.generation_kwargs` when a YAML sets them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from transformers import ProcessorMixin
from trl.chat_template_utils import parse_response
from trl.data_utils import is_conversational

from rewards.correctness import FINISH_REASON, GRADED_CORRECT, GRADING, NUM_TOKENS, PROMPT_OPENS_THINK, Grading
from rollouts.types import Sample, finish_reason

__all__ = ["fill_reward_fields", "generation_eos_ids", "grade_once", "sample_fields", "trl_completions"]

STRATEGY_FIELDS = ("exit_rank", "exit_position", "staleness")  # a strategy's extras that rewards may read


def generation_eos_ids(trl_eos_ids: Iterable[int], generation_config: Any) -> list[int]:
    """Every id that ends a completion TRL generated: TRL's EOS list plus the ids its generation config stops on
    (a model's extra EOS tokens, e.g. Qwen3's `<|endoftext|>` beside `<|im_end|>`, or `generation_kwargs`')."""
    configured = getattr(generation_config, "eos_token_id", None)
    extra = [] if configured is None else [configured] if isinstance(configured, int) else list(configured)
    return list(dict.fromkeys(int(t) for t in [*trl_eos_ids, *extra]))


def fill_reward_fields(
    rows: Sequence[dict[str, Any]],
    completion_ids: Sequence[Sequence[int]],
    *,
    eos_token_ids: Iterable[int] | None = None,
    max_tokens: int | None = None,
) -> None:
    """Set `num_tokens` on each input row; with `eos_token_ids` and `max_tokens` (TRL generated) set `finish_reason`
    too, "length" exactly when the completion reached `max_tokens` without ending in an EOS id. Rows must be
    distinct dicts: TRL reads one value per row."""
    if len(rows) != len(completion_ids):
        raise ValueError(f"{len(rows)} input rows for {len(completion_ids)} completions")
    if len({id(row) for row in rows}) != len(rows):
        raise ValueError("input rows are shared between completions: each completion needs a row of its own")
    derive = eos_token_ids is not None and max_tokens is not None
    eos = set(eos_token_ids or ())
    for row, ids in zip(rows, completion_ids):
        row[NUM_TOKENS] = len(ids)
        if derive:
            assert max_tokens is not None
            row[FINISH_REASON] = finish_reason(ids, eos, max_tokens)


def sample_fields(rows: Sequence[dict[str, Any]], samples: Sequence[Sample], opens_think: Any) -> None:
    """Set each sample's fields on its row: `num_tokens`, `finish_reason`, `prompt_opens_think` (`opens_think(prompt
    ids)`: an answer must then follow `</think>`, issue 13) and the strategy extras in `STRATEGY_FIELDS`."""
    fill_reward_fields(rows, [s.completion_ids for s in samples])
    for row, sample in zip(rows, samples, strict=True):
        row[FINISH_REASON] = sample.finish_reason
        row[PROMPT_OPENS_THINK] = bool(opens_think(sample.prompt_ids))
        row.update({key: sample.extras[key] for key in STRATEGY_FIELDS if key in sample.extras})


def trl_completions(processing_class: Any, prompts: Sequence[Any], samples: Sequence[Sample], tools: Any) -> list[Any]:
    """The `completions` TRL 1.16's `_generate` hands reward functions: texts, or for conversational prompts assistant
    messages, through the tokenizer's response parser where it has one (tests/rl/test_trl_contract.py pins this)."""
    ids = [s.completion_ids for s in samples]
    if not is_conversational({"prompt": prompts[0]}):
        return list(processing_class.batch_decode(ids, skip_special_tokens=True))
    tok = processing_class.tokenizer if isinstance(processing_class, ProcessorMixin) else processing_class  # as TRL
    if getattr(tok, "response_template", None) is not None or getattr(tok, "response_schema", None) is not None:
        return [[parse_response(tok, c, prefix=s.prompt_ids, tools=tools)] for c, s in zip(ids, samples)]
    return [
        [{"role": "assistant", "content": text}]
        for text in processing_class.batch_decode(ids, skip_special_tokens=True)
    ]


def grade_once(rows: Sequence[dict[str, Any]], completions: Sequence[Any], reward_funcs: Sequence[Any]) -> None:
    """Grade each completion once, the way the first reward that grades does (`Grading`), and set the verdict and its
    grading on the completion's row: every reward that grades the same way reads it instead of grading again."""
    graders = [(f.grading, f.__name__) for f in reward_funcs if isinstance(getattr(f, "grading", None), Grading)]
    if not graders or not rows:
        return
    grading, name = graders[0]
    kwargs = {
        key: [row[key] for row in rows] for key in rows[0] if key not in ("prompt", "completion", "completion_ids")
    }
    for row, verdict in zip(rows, grading.grade(completions, kwargs, name), strict=True):
        row[GRADED_CORRECT], row[GRADING] = verdict, grading
