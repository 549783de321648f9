"""Issue 13 ("Fidelity"): the variants behave as their papers and released code, through the production trainer.

Trainer-level checks on the tiny model: an R1-style chat template (the generation prompt opens `<think>`) and a
scripted engine whose completions are fixed texts, so what counts as correct is decided by the prompt and the
finish reason alone.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch

from rollouts.types import Completion, Request
from tests.rl.variant_helpers import build, inputs

G = 4
R1_GENERATION_PROMPT = "{{ '<|im_start|>assistant\n<think>\n' }}"


@pytest.fixture(scope="module")
def r1_model_path(tiny_model_path: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The tiny model with an R1-distill-style chat template: the generation prompt ends with `<think>\\n`."""
    out = tmp_path_factory.mktemp("tiny-r1")
    shutil.copytree(tiny_model_path, out, dirs_exist_ok=True)
    template = (out / "chat_template.jinja").read_text()
    assert "{{ '<|im_start|>assistant\n' }}" in template
    (out / "chat_template.jinja").write_text(template.replace("{{ '<|im_start|>assistant\n' }}", R1_GENERATION_PROMPT))
    return str(out)


class TextEngine:
    """Member j of every group is `texts[j]` (encoded), finished as `finishes[j]` ("stop" appends the EOS id)."""

    def __init__(self, tokenizer: Any, texts: Sequence[str], finishes: Sequence[str]) -> None:
        self.eos_token_ids = (tokenizer.eos_token_id,)
        self.max_model_len = 4096
        self.ids = [tokenizer.encode(t, add_special_tokens=False) for t in texts]
        self.finishes = list(finishes)

    def generate(self, requests: Sequence[Request]) -> list[list[Completion]]:
        out = []
        for req in requests:
            group = []
            for j in range(req.params.n):
                ids, finish = list(self.ids[j]), self.finishes[j]
                group.append(Completion(ids + list(self.eos_token_ids) if finish == "stop" else ids, finish))
            out.append(group)
        return out

    def load_weights(self, weights: Any) -> None:
        del weights


THINKING = "6*2 = 12, so \\boxed{12} maybe. Wait"
ANSWERED = "6*2 = 12.\n</think>\n\nThe answer is \\boxed{12}."
TEXTS = [THINKING, ANSWERED, ANSWERED, "6*2 = 13.\n</think>\n\n\\boxed{13}"]
FINISHES = ["length", "stop", "length", "stop"]


def _scripted(trainer: Any, texts: Sequence[str] = TEXTS, finishes: Sequence[str] = FINISHES) -> Any:
    tokenizer = trainer.processing_class
    trainer.engine_host.factory = lambda rollout_model: TextEngine(tokenizer, texts, finishes)
    return trainer


def _column(trainer: Any, name: str) -> list[float]:
    return list(trainer._logs["rewards"][name])[-2 * G :]


@pytest.mark.parametrize("variant", ["grpo", "grpo_lambda", "ulorl"])
def test_r1_template_unfinished_completions_score_zero(r1_model_path: str, tmp_path: Path, variant: str) -> None:
    """Only member 1 (closed the think block, boxed the right answer, stopped) is correct, in every variant that
    grades with `correctness`. Before issue 13 member 0 (a box inside the unfinished thinking) and member 2 (cut by
    the length cap) scored 1 too."""
    spec: dict[str, Any] = {"name": variant}
    if variant == "ulorl":
        spec.update(segment_length=64, max_total_tokens=64, dynamic_sampling=False)
    trainer = _scripted(build(r1_model_path, tmp_path, spec, beta=0.0, max_completion_length=64))
    rows = [{"prompt": "What is 6*2?", "answer": "12"}, {"prompt": "Compute 6 times 2.", "answer": "12"}]
    out = trainer._generate_and_score_completions(inputs(rows, G))
    prompt = trainer.processing_class.decode(out["prompt_ids"][0][out["prompt_mask"][0].bool()])
    assert prompt.endswith("<think>\n"), "the R1-style template opens the think block in the prompt"
    correct = [0.0, 1.0, 0.0, 0.0] * 2
    if variant == "grpo_lambda":  # the transform rewrites the column; read the accuracy metric instead
        assert trainer._metrics["train"]["brevity/accuracy"][-1] == pytest.approx(0.25)
    else:
        assert _column(trainer, "correctness") == correct


def test_r1_template_dler_truncation_agrees(r1_model_path: str, tmp_path: Path) -> None:
    spec = {"name": "dler", "target_length": 64, "dynamic_sampling": False, "stop_properly_scale": 0.1}
    trainer = _scripted(build(r1_model_path, tmp_path, spec, beta=0.0, max_completion_length=64))
    trainer._generate_and_score_completions(inputs([{"prompt": "6*2?", "answer": "12"}] * 2, G))
    # member 2 answered after </think> but was cut: the authors' recipe keeps 10%; member 0 never answered
    assert _column(trainer, "truncation") == pytest.approx([0.0, 1.0, 0.1, 0.0] * 2)


# --- defaults equal to the paper when the YAML is silent (items 3, 7) --------------------------------------------------

PAPER_DEFAULTS: dict[str, dict[str, Any]] = {
    "grpo": {"loss_type": "grpo"},
    "s_grpo": {"loss_type": "grpo", "scale_rewards": "none", "beta": 0.0, "num_generations": 9},
    "grpo_lambda": {"loss_type": "grpo", "scale_rewards": "group", "num_generations": 16},
    "dler": {
        "loss_type": "dapo", "epsilon": 0.2, "epsilon_high": 0.28, "delta": 10.0, "beta": 5e-4, "num_generations": 16,
        "max_completion_length": 4000, "temperature": 1.0,
    },
    "curriculum_budget": {"loss_type": "grpo", "num_generations": 8},
    "ulorl": {"loss_type": "dapo", "beta": 0.0, "epsilon": 0.2, "temperature": 0.85, "num_generations": 8},
    "format_length": {
        "loss_type": "dapo", "beta": 1e-3, "num_generations": 8, "temperature": 0.6, "max_completion_length": 3072,
    },
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(PAPER_DEFAULTS))
def test_paper_defaults_when_the_yaml_is_silent(name: str) -> None:
    """Every variant states its loss type and KL estimator instead of inheriting TRL's defaults ("dapo", and k3
    multiplied by the importance ratio); KL is plain k3 as DLER's fork and the surrogate code (veRL `low_var_kl`)
    and the GRPO paper compute it."""
    from rl.experiment import parse_config
    from rl.variants import VARIANTS

    defaults = VARIANTS[name].trl_defaults(VARIANTS[name].Spec())
    assert "loss_type" in defaults and defaults["use_bias_correction_kl"] is False
    raw: dict[str, Any] = {"variant": name, "per_device_train_batch_size": 144}
    if name == "curriculum_budget":
        raw["data"] = {"template": "budget"}
    config = parse_config(raw, f"{name}.yaml")
    assert config.grpo.use_bias_correction_kl is False
    for key, value in PAPER_DEFAULTS[name].items():
        assert getattr(config.grpo, key) == value, key


# --- loss-level settings on a hand-computed tiny batch (items 3, 10) ---------------------------------------------------

OLD = math.log(0.5)
RATIOS = [[1.1, 1.25, 1.4], [0.7, 5.0, 12.0]]  # row 0: A = +1, row 1: A = −1
KL_GAP = 0.5  # log π_ref − log π_θ on every token


def _loss_and_grad(trainer: Any, ratios: list[list[float]] = RATIOS) -> tuple[float, torch.Tensor]:
    """TRL 1.16's own `_compute_loss` on a (2, 3) batch whose current log-probs are a leaf tensor we choose."""
    logps = (torch.tensor(ratios).log() + OLD).requires_grad_(True)
    trainer._get_per_token_logps_and_entropies = lambda *a, **k: (logps, torch.zeros_like(logps), None)
    trainer.current_gradient_accumulation_steps = 1
    batch = {
        "prompt_ids": torch.ones(2, 2, dtype=torch.long),
        "prompt_mask": torch.ones(2, 2, dtype=torch.long),
        "completion_ids": torch.ones(2, 3, dtype=torch.long),
        "completion_mask": torch.ones(2, 3, dtype=torch.long),
        "advantages": torch.tensor([1.0, -1.0]),
        "old_per_token_logps": torch.full((2, 3), OLD),
        "ref_per_token_logps": logps.detach() + KL_GAP,
        "num_items_in_batch": torch.tensor(6.0),
    }
    loss = trainer._compute_loss(trainer.model, batch)
    loss.backward()
    return float(loss.detach()), logps.grad


@pytest.fixture(scope="module")
def dler_trainer(tiny_model_path: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """DLER with its paper settings (ε 0.2/0.28, δ 10, dapo, plain k3) and a large β so the KL term shows."""
    spec = {"name": "dler", "target_length": 12, "dynamic_sampling": False}
    return build(tiny_model_path, tmp_path_factory.mktemp("dler-loss"), spec, beta=0.1)


def test_dler_loss_clip_higher_and_dual_clip_by_hand(dler_trainer: Any) -> None:
    """Token-mean over 6 tokens of −min(r·A, clip(r, 0.8, 1.28)·A) with r clamped at δ = 10, plus β·k3.

    A = +1: r = 1.1 and 1.25 are inside clip-higher's 1.28 (1.25 would be clipped at 1.2 by a symmetric ε), so
    their gradient is −r; r = 1.4 is clipped (gradient 0). A = −1: r = 0.7 takes the clipped 0.8 (gradient 0);
    r = 5 is unclipped (gradient +5); r = 12 is held at δ = 10 (dual clip: gradient 0, loss 10 instead of 12).
    """
    trainer = dler_trainer
    assert (trainer.epsilon_low, trainer.epsilon_high, trainer.args.delta) == (0.2, 0.28, 10.0)
    assert trainer.loss_type == "dapo" and trainer.args.use_bias_correction_kl is False
    loss, grad = _loss_and_grad(trainer)
    k3 = math.exp(KL_GAP) - KL_GAP - 1
    policy = [-1.1, -1.25, -1.28, 0.8, 5.0, 10.0]
    assert loss == pytest.approx((sum(policy) + 0.1 * 6 * k3) / 6, rel=1e-5)
    policy_grad = torch.tensor([[-1.1, -1.25, 0.0], [0.0, 5.0, 0.0]])
    kl_grad = 0.1 * (1 - math.exp(KL_GAP))  # d/dlogπ of plain k3 = 1 − π_ref/π_θ
    torch.testing.assert_close(grad, (policy_grad + kl_grad) / 6, rtol=1e-5, atol=1e-7)


def test_kl_setting_changes_the_gradient_as_trl_documents(dler_trainer: Any) -> None:
    """TRL's default (`use_bias_correction_kl`) multiplies k3 by the ratio r: gradient r·(1 − e^gap) + r·k3; the
    papers' plain k3 gives 1 − e^gap. Same batch as above with every ratio 1.1 (A = +1 clipped nowhere)."""
    trainer, gap = dler_trainer, KL_GAP
    ratios = [[1.1] * 3, [1.1] * 3]
    k3 = math.exp(gap) - gap - 1
    _, plain = _loss_and_grad(trainer, ratios)
    trainer.args.use_bias_correction_kl = True
    try:
        _, corrected = _loss_and_grad(trainer, ratios)
    finally:
        trainer.args.use_bias_correction_kl = False
    policy = torch.tensor([[-1.1] * 3, [1.1] * 3])  # A = −1, r = 1.1: unclipped, gradient −A·r
    torch.testing.assert_close(plain, (policy + 0.1 * (1 - math.exp(gap))) / 6, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(corrected, (policy + 0.1 * 1.1 * (1 - math.exp(gap) + k3)) / 6, rtol=1e-5, atol=1e-7)


# --- DLER dynamic sampling as the fork does it (item 4) ---------------------------------------------------------------

WRONG = "6*2 = 13.\n</think>\n\n\\boxed{13}"


class PromptEngine(TextEngine):
    """Members by prompt: a prompt for which `varies(text)` holds gets `texts` (a group whose score varies), any
    other prompt G wrong answers (zero variance)."""

    def __init__(self, tokenizer: Any, texts: Sequence[str], finishes: Sequence[str], varies: Any) -> None:
        super().__init__(tokenizer, texts, finishes)
        self.tokenizer, self.varies = tokenizer, varies
        self.wrong = tokenizer.encode(WRONG, add_special_tokens=False) + list(self.eos_token_ids)

    def generate(self, requests: Sequence[Request]) -> list[list[Completion]]:
        out = super().generate(requests)
        for k, req in enumerate(requests):
            if not self.varies(self.tokenizer.decode(list(req.prompt_ids))):
                out[k] = [Completion(list(self.wrong), "stop") for _ in range(req.params.n)]
        return out


def _dler(model: str, tmp_path: Path, varies: Any, texts: Sequence[str], finishes: Sequence[str], **spec: Any) -> Any:
    trainer = build(model, tmp_path, {"name": "dler", "target_length": 64, **spec}, beta=0.0, max_completion_length=64)
    tokenizer = trainer.processing_class
    trainer.engine_host.factory = lambda rollout_model: PromptEngine(tokenizer, texts, finishes, varies)
    return trainer


def _metric(trainer: Any, name: str) -> float:
    return trainer._metrics["train"][name][-1]


def test_dler_filters_on_correctness_before_the_truncation_scaling(r1_model_path: str, tmp_path: Path) -> None:
    """A group whose only correct answer was cut by the cap has truncation rewards all 0 (zero variance) but a
    varying correctness score: the fork keeps it (it filters on `seq_reward`, the unscaled score)."""
    texts, finishes = [ANSWERED, WRONG, WRONG, WRONG], ["length", "stop", "stop", "stop"]
    trainer = _dler(r1_model_path, tmp_path, lambda text: True, texts, finishes, max_resample_rounds=3)
    out = trainer._generate_and_score_completions(inputs([{"prompt": "6*2?", "answer": "12"}] * 2, G))
    assert out["brevity_rewards"].tolist() == [0.0] * 2 * G, "truncation rewards: no variance"
    assert _column(trainer, "correctness") == [1.0, 0.0, 0.0, 0.0] * 2
    assert _metric(trainer, "brevity/resample_rounds") == 0.0 and _metric(trainer, "brevity/groups_trained") == 2.0


def test_dler_cap_hit_trains_on_fewer_groups_without_fillers(r1_model_path: str, tmp_path: Path) -> None:
    """Only one group ever varies; with a cap of 2 refill rounds the step trains on that one group: no
    zero-variance filler reaches the loss normaliser or the KL term, and the shortfall is logged."""
    texts, finishes = [ANSWERED, WRONG, ANSWERED, WRONG], ["stop"] * 4
    trainer = _dler(r1_model_path, tmp_path, lambda text: "Varied" in text, texts, finishes, max_resample_rounds=2)
    rows = [{"prompt": "Flat 6*2?", "answer": "12"}, {"prompt": "Varied 6*2?", "answer": "12"}]
    out = trainer._generate_and_score_completions(inputs(rows, G))
    assert _metric(trainer, "brevity/resample_rounds") == 2.0 and _metric(trainer, "brevity/resample_cap_hit") == 1.0
    assert _metric(trainer, "brevity/groups_trained") == 1.0 and _metric(trainer, "brevity/inert_rows") == 0.0
    assert out["completion_ids"].shape[0] == G, "one group of G rows, not a batch padded to 2 groups"
    assert "Varied" in trainer.processing_class.decode(out["prompt_ids"][0])
    loss_tokens = (out["completion_mask"] * out["tool_mask"]).sum()
    assert int(out["num_items_in_batch"]) == int(loss_tokens) == int(out["completion_mask"].sum())
    assert out["brevity_rewards"].tolist() == [1.0, 0.0, 1.0, 0.0]


def test_dler_nothing_kept_trains_on_nothing(r1_model_path: str, tmp_path: Path) -> None:
    """With nothing kept, one inert group (loss mask 0, advantage 0) keeps TRL's micro-batch split non-empty and
    trains on nothing: no loss token, no KL token."""
    texts, finishes = [ANSWERED, WRONG, ANSWERED, WRONG], ["stop"] * 4
    trainer = _dler(r1_model_path, tmp_path, lambda text: False, texts, finishes, max_resample_rounds=1)
    out = trainer._generate_and_score_completions(inputs([{"prompt": "Flat?", "answer": "12"}] * 2, G))
    assert _metric(trainer, "brevity/groups_trained") == 0.0 and _metric(trainer, "brevity/inert_rows") == G
    assert out["completion_ids"].shape[0] == G
    assert int(out["num_items_in_batch"]) == 0 and not out["tool_mask"].any() and not out["advantages"].any()


def test_dler_short_batch_is_topped_up_only_with_inert_rows(r1_model_path: str, tmp_path: Path) -> None:
    """TRL splits a generation batch into `steps_per_generation` equal micro-batches (8 here): one kept group of 4
    rows gets one inert group (loss mask 0, advantage 0, outside the batch statistics), so 8 rows split evenly and
    only the kept group's tokens count in the loss normaliser and the KL term."""
    texts, finishes = [ANSWERED, WRONG, ANSWERED, WRONG], ["stop"] * 4
    trainer = build(
        r1_model_path,
        tmp_path,
        {"name": "dler", "target_length": 64, "max_resample_rounds": 1},
        beta=0.0,
        max_completion_length=64,
        per_device_train_batch_size=4,
        steps_per_generation=8,
    )
    tokenizer = trainer.processing_class
    trainer.engine_host.factory = lambda model: PromptEngine(tokenizer, texts, finishes, lambda t: "Varied" in t)
    rows = [{"prompt": "Varied 6*2?", "answer": "12"}] + [{"prompt": f"Flat {k}?", "answer": "12"} for k in range(7)]
    out = trainer._generate_and_score_completions(inputs(rows, G))
    assert _metric(trainer, "brevity/groups_trained") == 1.0 and _metric(trainer, "brevity/inert_rows") == G
    assert out["completion_ids"].shape[0] == 2 * G
    valid = out["brevity_valid"]
    assert valid.tolist() == [True] * G + [False] * G
    assert not out["tool_mask"][~valid].any() and not out["advantages"][~valid].any()
    assert int(out["num_items_in_batch"]) == int(out["completion_mask"][valid].sum())


def test_dler_refills_without_a_cap_by_default(r1_model_path: str, tmp_path: Path) -> None:
    """`max_resample_rounds: 0` (the fork's `max_num_gen_batches: 0`, DLER's scripts) refills until enough groups
    vary: here only dataset row "Problem 107" (answer 1107) does, so it takes several rounds."""
    from rl.variants import VARIANTS

    assert VARIANTS["dler"].Spec().max_resample_rounds == 0
    right = "1000 + 107 = 1107.\n</think>\n\n\\boxed{1107}"
    texts, finishes = [right, WRONG, right, WRONG], ["stop"] * 4
    trainer = _dler(r1_model_path, tmp_path, lambda text: "Problem 107" in text, texts, finishes)
    trainer._generate_and_score_completions(inputs([{"prompt": "Flat?", "answer": "12"}] * 2, G))
    assert _metric(trainer, "brevity/resample_rounds") >= 1.0 and _metric(trainer, "brevity/resample_cap_hit") == 0.0
    assert _metric(trainer, "brevity/groups_trained") == 2.0


# --- S-GRPO: mean-only advantage enforced, over-sampling (item 5) -----------------------------------------------------


def _sgrpo(model: str, tmp_path: Path, **spec: Any) -> Any:
    from tests.rl.variant_helpers import ours

    variant = {"name": "s_grpo", "num_exits": G - 1, "answer_max_tokens": 4, **spec}
    return build(model, tmp_path, variant, rewards=[ours("correctness")])


def test_s_grpo_advantage_is_mean_only_whatever_trl_is_told(tiny_model_path: str, tmp_path: Path) -> None:
    trainer = _sgrpo(tiny_model_path, tmp_path)
    trainer.scale_rewards = "group"  # what TRL would do with a YAML's scale_rewards: group (refused at load time)
    rows = [{"prompt": "Problem 1.", "pattern": "1111"}, {"prompt": "Problem 2.", "pattern": "0101"}]
    out = trainer._generate_and_score_completions(inputs(rows, G))
    rewards = out["brevity_rewards"].view(-1, G)
    assert rewards.tolist() == [[1.0, 0.5, 0.25, 0.125], [0.0, 1.0, 0.0, 0.5]]
    torch.testing.assert_close(out["advantages"].view(-1, G), rewards - rewards.mean(dim=1, keepdim=True))


def test_s_grpo_over_samples_groups_without_a_correct_answer(tiny_model_path: str, tmp_path: Path) -> None:
    """§2.1.2: a serial group with no correct answer is replaced by a new prompt's (dataset rows score "10")."""
    trainer = _sgrpo(tiny_model_path, tmp_path)
    rows = [{"prompt": "Problem 1.", "pattern": "0000"}, {"prompt": "Problem 2.", "pattern": "0101"}]
    out = trainer._generate_and_score_completions(inputs(rows, G))
    assert _metric(trainer, "brevity/resample_rounds") == 1.0 and _metric(trainer, "brevity/groups_trained") == 2.0
    assert bool((out["brevity_rewards"].view(-1, G).amax(dim=1) > 0).all()), "every trained group has a correct answer"


def test_s_grpo_strict_filter_requires_a_correct_early_exit(tiny_model_path: str, tmp_path: Path) -> None:
    """Only the full trace correct ("0001"): rewards vary, so the default keeps it; the strict reading drops it."""
    rows = [{"prompt": "Problem 1.", "pattern": "0001"}, {"prompt": "Problem 2.", "pattern": "0101"}]
    for strict, rounds in ((False, 0.0), (True, 1.0)):
        trainer = _sgrpo(tiny_model_path, tmp_path, require_correct_early_exit=strict)
        trainer._generate_and_score_completions(inputs(rows, G))
        assert _metric(trainer, "brevity/resample_rounds") == rounds, strict


# --- curriculum: format weights and the paper's raw prompt (item 6) ----------------------------------------------------


def test_curriculum_format_reward_is_half_think_half_answer() -> None:
    from rl.experiment import parse_config

    config = parse_config({"variant": "curriculum_budget", "data": {"template": "budget_raw"}}, "c.yaml")
    weights = {r.name: r.weight for r in config.rewards}
    assert weights == {
        "correctness": 0.6,
        "budget_triangular": 0.3,
        "think_format": pytest.approx(0.05),  # λ_f·α_think
        "answer_tag_format": pytest.approx(0.05),  # λ_f·α_answer
    }


def test_curriculum_raw_prompt_is_not_wrapped_in_a_chat_template(tiny_model_path: str, tmp_path: Path) -> None:
    from tests.rl.variant_helpers import problems, write_jsonl

    schedule = {"type": "stepwise_exponential", "start": 8, "end": 4, "total_steps": 2, "n_drops": 1}
    data = {"train": write_jsonl(tmp_path / "train.jsonl", problems(8)), "template": "budget_raw"}
    spec = {"name": "curriculum_budget", "schedule": schedule}
    trainer = build(tiny_model_path, tmp_path, spec, data=data, max_completion_length=16, beta=0.0)
    assert isinstance(trainer.train_dataset[0]["prompt"], str)
    out = trainer._generate_and_score_completions(inputs(problems(2), G, template="budget_raw"))
    prompt = trainer.processing_class.decode(out["prompt_ids"][0][out["prompt_mask"][0].bool()])
    assert prompt.startswith("A conversation between User and Assistant.") and "<|im_start|>" not in prompt
    assert prompt.endswith("IMPORTANT: You should use exactly 8 tokens in your response. User: Problem 0: compute "
                           "1000 + 0. Assistant:")  # fmt: skip


# --- rollout.engine: trl (item 8) -------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["grpo", "grpo_lambda", "dler", "format_length"])
def test_trl_engine_runs_every_variant_that_allows_it(tiny_model_path: str, tmp_path: Path, variant: str) -> None:
    """TRL generates; the trainer derives `finish_reason` from the EOS (DLER's truncation reward needs it) and
    `prompt_opens_think` from the chat template."""
    from tests.rl.variant_helpers import ours

    spec: dict[str, Any] = {"name": variant}
    if variant == "dler":
        spec.update(target_length=12, require_think_close=False, dynamic_sampling=False)
    if variant == "format_length":
        spec.update(max_tokens=12)
    rewards = {
        "dler": [{"name": "truncation", "params": {"target_length": 12, "require_think_close": False}}],
        "format_length": [{"name": "answer_format"}, {"name": "rise_fall_length", "params": {"max_tokens": 12}}],
    }.get(variant, [{"name": "correctness"}]) + [ours("Probe", weight=0.0)]
    trainer = build(tiny_model_path, tmp_path, spec, rewards=rewards, beta=0.0, rollout={"engine": "trl"})
    assert trainer.rollout_func is None, "TRL's own generation"
    trainer._generate_and_score_completions(inputs([{"prompt": "1 + 1?", "answer": "2"}] * 2, G))
    seen = next(f for f in trainer.reward_funcs if type(f).__name__ == "Probe").calls[-1]
    eos = trainer.processing_class.eos_token_id
    assert seen["finish_reason"] == ["stop" if ids[-1] == eos else "length" for ids in seen["completion_ids"]]
    assert seen["prompt_opens_think"] == [False] * 2 * G


@pytest.mark.parametrize("variant", ["s_grpo", "ulorl", "curriculum_budget"])
def test_trl_engine_is_refused_at_load_time_naming_the_key(variant: str) -> None:
    from rl.config import ConfigError
    from rl.experiment import parse_config

    raw: dict[str, Any] = {"variant": variant, "rollout": {"engine": "trl"}, "per_device_train_batch_size": 144}
    if variant == "curriculum_budget":
        raw["data"] = {"template": "budget"}
    with pytest.raises(ConfigError, match="rollout.engine") as e:
        parse_config(raw, f"{variant}.yaml")
    assert e.value.key == "rollout.engine"


# --- UloRL at scale (item 2) ------------------------------------------------------------------------------------------


def test_ulorl_dmmpt_pass_is_chunked_by_the_micro_batch(tiny_model_path: str, tmp_path: Path) -> None:
    """The POIS/DMMPT log-prob pass runs over the whole generation batch (steps_per_generation × the micro-batch);
    it forwards `per_device_train_batch_size` rows at a time, as TRL's own passes do, so its peak activation memory
    is that of one micro-batch whatever the generation batch (a proxy: every forward's row count)."""
    from tests.rl.variant_helpers import problems

    spec = {"name": "ulorl", "segment_length": 8, "max_total_tokens": 8, "dynamic_sampling": False}
    trainer = build(tiny_model_path, tmp_path, spec, max_completion_length=8, steps_per_generation=2)
    out = trainer._generate_and_score_completions(inputs(problems(4), G))
    assert out["completion_ids"].shape[0] == 16, "a generation batch of 2 micro-batches of 8"
    rows: list[int] = []
    hook = trainer.model.register_forward_pre_hook(
        lambda module, args, kwargs: rows.append(kwargs["input_ids"].shape[0]), with_kwargs=True
    )
    try:
        trainer._apply_token_mask(out)
    finally:
        hook.remove()
    assert rows == [8, 8], "two forwards of one micro-batch each, not one of the whole generation batch"
    assert out["old_per_token_logps"].shape[0] == 16


def test_ulorl_total_length_the_model_cannot_reach_fails_at_load_time(tiny_model_path: str, tmp_path: Path) -> None:
    spec = {"name": "ulorl", "segment_length": 512, "max_total_tokens": 2048, "dynamic_sampling": False}
    with pytest.raises(ValueError, match="variant.max_total_tokens.*model's is 1024"):
        build(tiny_model_path, tmp_path, spec, max_completion_length=512)
