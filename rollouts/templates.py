"""Prompt templates (methods.md §S2), selected by name: a problem text becomes chat messages.

`budget` is the curriculum paper's R1-zero template with a token-budget sentence (arXiv 2508.08940 §3); a trainer
re-renders it each step with the current B(t). The R1-zero instructions go in the system turn and the problem in the
user turn (the paper's base-model string is "<instructions> User: {question} Assistant:"). `think_raw` and
`budget_raw` are that string itself, not wrapped in any chat template: a plain-text prompt for base models, as the
paper uses it (render returns a str; `encode_prompt` tokenises either form).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

BUDGET_SLOT = "{budget}"
QUESTION_SLOT = "{question}"
BOXED_SUFFIX = "\nPlease reason step by step, and put your final answer within \\boxed{}."
DLER_SUFFIX = " Let's think step by step and output the final answer within \\boxed{}."
QWEN_MATH_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
R1_ZERO_SYSTEM = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. "
    "The assistant first thinks about the reasoning process in the mind and then provides the user with the answer. "
    "The reasoning process and answer are enclosed within <think></think> and <answer></answer> tags, respectively, "
    "i.e., <think>reasoning process here</think> <answer>answer here</answer>."
)
BUDGET_SENTENCE = f"IMPORTANT: You should use exactly {BUDGET_SLOT} tokens in your response."


@dataclass(frozen=True)
class Template:
    """A system prompt (None: no system turn) and a suffix appended to the problem in the user turn; or `raw`, a
    plain-text prompt with a `{question}` slot that no chat template wraps."""

    system: str | None = None
    suffix: str = ""
    raw: str | None = None

    @property
    def has_budget_slot(self) -> bool:
        return any(BUDGET_SLOT in (part or "") for part in (self.system, self.suffix, self.raw))


TEMPLATES: dict[str, Template] = {
    "plain": Template(),
    "boxed": Template(suffix=BOXED_SUFFIX),  # Qwen3 / R1-distill (S-GRPO, GRPO-λ)
    "dler": Template(suffix=DLER_SUFFIX),  # DeepScaleR / DLER
    "qwen_math": Template(system=QWEN_MATH_SYSTEM),  # format-length surrogate
    "think": Template(system=R1_ZERO_SYSTEM),  # R1-zero <think>/<answer>
    "budget": Template(system=f"{R1_ZERO_SYSTEM} {BUDGET_SENTENCE}"),  # curriculum token budgets
    # the paper's own strings (2508.08940 §3), for base models: no chat template around them
    "think_raw": Template(raw=f"{R1_ZERO_SYSTEM} User: {QUESTION_SLOT} Assistant:"),
    "budget_raw": Template(raw=f"{R1_ZERO_SYSTEM} {BUDGET_SENTENCE} User: {QUESTION_SLOT} Assistant:"),
}


def budget_text(budget: int) -> str:
    """The budget sentence, e.g. IMPORTANT: You should use exactly 87 tokens in your response."""
    return BUDGET_SENTENCE.replace(BUDGET_SLOT, str(_check_budget(budget)))


def _check_budget(budget: int) -> int:
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise ValueError(f"budget must be a positive int (tokens), got {budget!r}")
    return budget


def render(
    template_name: str, problem_text: str, *, budget: int | None = None, keep_slot: bool = False
) -> list[dict[str, str]] | str:
    """Chat messages for one problem (a plain string for a `raw` template); templates with a budget slot need
    `budget` (or `keep_slot=True`, which leaves the literal `{budget}` for a trainer to fill each step), others refuse
    one."""
    if template_name not in TEMPLATES:
        raise ValueError(f"unknown template {template_name!r}; choose one of {sorted(TEMPLATES)}")
    template = TEMPLATES[template_name]
    if template.has_budget_slot and budget is None and not keep_slot:
        raise ValueError(f"template {template_name!r} has a token-budget slot: pass budget=<tokens>")
    if not template.has_budget_slot and budget is not None:
        raise ValueError(f"template {template_name!r} has no budget slot; use 'budget' for a token budget")
    fill = str(_check_budget(budget)) if budget is not None else BUDGET_SLOT
    if template.raw is not None:  # budget first: the problem text may itself contain "{budget}"
        head, tail = template.raw.replace(BUDGET_SLOT, fill).split(QUESTION_SLOT)
        return head + problem_text + tail
    messages = []
    if template.system is not None:
        messages.append({"role": "system", "content": template.system.replace(BUDGET_SLOT, fill)})
    # Plain concatenation, not str.format: problems are full of LaTeX braces.
    messages.append({"role": "user", "content": problem_text + template.suffix.replace(BUDGET_SLOT, fill)})
    return messages


def encode_prompt(tokenizer: Any, prompt: list[dict[str, str]] | str, **chat_template_kwargs: Any) -> list[int]:
    """Token ids of a rendered prompt: chat messages through the chat template (with the generation prompt), a raw
    string as it is (the tokenizer's own special tokens, as TRL tokenises non-conversational prompts)."""
    if isinstance(prompt, str):
        return list(tokenizer(text=prompt)["input_ids"])
    out = tokenizer.apply_chat_template(
        prompt, add_generation_prompt=True, tokenize=True, return_dict=True, **chat_template_kwargs
    )
    return list(out["input_ids"])
