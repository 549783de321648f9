"""One test per variant, each asserting what defines it, on a real tiny model through the production trainer.

Fast tests drive `BrevityTrainer._generate_and_score_completions` on hand-made generation batches (TRL's layout:
each row repeated G times) and read the output dict, the reward kwargs TRL passed (tests/rl/variant_helpers.Probe)
and `trainer._metrics`. Deterministic rewards make groups vary on demand. The `slow` test trains every smoke YAML.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from tests.rl.variant_helpers import Probe, build, inputs, ours, problems, unpadded, write_jsonl

REPO = Path(__file__).resolve().parents[2]
G = 4


def _probe(trainer) -> Probe:  # noqa: ANN001
    return next(f for f in trainer.reward_funcs if isinstance(f, Probe))


def _metric(trainer, name: str) -> float:  # noqa: ANN001
    return trainer._metrics["train"][name][-1]


def _source(trainer):  # noqa: ANN001, ANN202
    """The group source of brevity's rollout (its strategy; UloRL's released samples as `ready`)."""
    return trainer._groups.source


def _decode(trainer, out, i: int) -> str:  # noqa: ANN001
    ids = unpadded(out["prompt_ids"], out["prompt_mask"])[i]
    return trainer.processing_class.decode(ids)


def _whiten(rewards: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """DLER's formula written out: a = r − mean_g; token-weighted batch mean/var (Bessel over tokens); (a − μ)/σ."""
    a = rewards - rewards.mean(dim=1, keepdim=True)
    n = lengths.double()
    total = n.sum()
    mu = (n * a).sum() / total
    var = (n * (a - mu) ** 2).sum() / total * total / (total - 1)
    return (a - mu) / torch.sqrt(var + 1e-8)


def test_s_grpo_serial_group_decays_and_masks_the_inducer(tiny_model_path: str, tmp_path: Path) -> None:
    trainer = build(
        tiny_model_path,
        tmp_path,
        {"name": "s_grpo", "num_exits": G - 1, "answer_max_tokens": 4},
        rewards=[ours("correctness"), ours("Probe", weight=0.0)],
    )
    rows = [{"prompt": "Problem 1: compute 1 + 1.", "pattern": "1111"}, {"prompt": "Problem 2.", "pattern": "0101"}]
    out = trainer._generate_and_score_completions(inputs(rows, G))

    # decaying reward in positional order (exits 1..m, then the full trace): 1/2^(N_right − 1) on correct answers
    rewards = out["brevity_rewards"].view(-1, G)
    assert rewards.tolist() == [[1.0, 0.5, 0.25, 0.125], [0.0, 1.0, 0.0, 0.5]]
    assert torch.allclose(out["advantages"].view(-1, G), rewards - rewards.mean(dim=1, keepdim=True))  # mean-only

    seen = _probe(trainer).calls[-1]
    assert seen["exit_rank"] == list(range(G)) * 2
    inducer = _source(trainer).strategy.inducer_ids
    completions = unpadded(out["completion_ids"], out["completion_mask"])
    masks = unpadded(out["tool_mask"], out["completion_mask"])
    for p in range(2):
        full = completions[p * G + G - 1]
        positions = seen["exit_position"][p * G : p * G + G - 1]
        assert positions == sorted(set(positions)) and positions[-1] <= len(full), "m distinct exits, in order"
        assert masks[p * G + G - 1] == [1] * len(full), "the full trace is last and fully trained on"
        for j, pos in enumerate(positions):
            ids, mask = completions[p * G + j], masks[p * G + j]
            assert ids[:pos] == full[:pos], "an exit is a prefix of the group's own full trace"
            assert ids[pos : pos + len(inducer)] == inducer
            assert mask == [1] * pos + [0] * len(inducer) + [1] * (len(ids) - pos - len(inducer))


def test_grpo_lambda_penalises_only_the_top_lambda_groups(tiny_model_path: str, tmp_path: Path) -> None:
    trainer = build(
        tiny_model_path, tmp_path, {"name": "grpo_lambda", "lam": 0.5, "alpha": 0.2}, rewards=[ours("correctness")]
    )
    for patterns in (["1111", "1100"], ["1100", "1111"]):  # the selection follows the ratio, not the position
        rows = [{"prompt": f"Problem {k}.", "pattern": pat} for k, pat in enumerate(patterns)]
        out = trainer._generate_and_score_completions(inputs(rows, G))
        rewards, lengths = out["brevity_rewards"].view(-1, G), out["brevity_lengths"].view(-1, G)
        top, rest = patterns.index("1111"), patterns.index("1100")
        assert rewards[rest].tolist() == [1.0, 1.0, 0.0, 0.0], "outside E: plain 0/1"
        assert bool(((rewards[top] > 0.8) & (rewards[top] < 1.0)).all()), "inside E: 1 − α·σ(z) on correct answers"
        if bool((lengths[top] == lengths[top][0]).all()):
            assert torch.allclose(rewards[top], torch.full((G,), 0.9)), "equal lengths: z = 0, 1 − α/2"
        assert _metric(trainer, "brevity/num_selected") == 1.0  # ceil(λ·P) = 1 of 2 groups


def test_dler_whitened_advantages_and_refilled_groups(tiny_model_path: str, tmp_path: Path) -> None:
    variant = {"name": "dler", "target_length": 12, "max_resample_rounds": 2, "require_think_close": False}
    rewards = [ours("checksum"), ours("Probe", weight=0.0)]
    trainer = build(tiny_model_path, tmp_path, variant, rewards=rewards, beta=0.0)  # no KL: no reference model
    flat = [{"prompt": f"Flat problem {k}.", "answer": "0", "flat": True} for k in range(2)]

    # both groups of the batch are all-equal: a refill round from the dataset replaces them
    out = trainer._generate_and_score_completions(inputs(flat, G))
    assert _metric(trainer, "brevity/resample_rounds") == 1.0
    assert _metric(trainer, "brevity/inert_rows") == 0.0
    assert not any("Flat" in _decode(trainer, out, i) for i in range(2 * G)), "refills: dataset rows"
    rewards, lengths = out["brevity_rewards"].view(-1, G), out["brevity_lengths"].view(-1, G)
    assert bool((rewards.std(dim=1) > 0).all())
    assert torch.allclose(out["advantages"].view(-1, G).double(), _whiten(rewards.double(), lengths), atol=1e-5)

    # finish_reason reaches the rewards from the rollout: "stop" exactly when the completion ends with eos
    seen = _probe(trainer).calls[-1]
    eos = trainer.processing_class.eos_token_id
    assert seen["finish_reason"] == ["stop" if ids[-1] == eos else "length" for ids in seen["completion_ids"]]

    # the cap-hit path (train on fewer groups, never on zero-variance fillers) is in tests/rl/test_fidelity.py
    assert _metric(trainer, "brevity/groups_trained") == 2.0 and _metric(trainer, "brevity/resample_cap_hit") == 0.0


def test_curriculum_budget_follows_the_schedule_in_prompt_and_cap(tiny_model_path: str, tmp_path: Path) -> None:
    schedule = {"type": "stepwise_exponential", "start": 8, "end": 4, "total_steps": 2, "n_drops": 1}
    data = {"train": write_jsonl(tmp_path / "train.jsonl", problems(8)), "template": "budget"}
    trainer = build(
        tiny_model_path,
        tmp_path,
        {"name": "curriculum_budget", "schedule": schedule, "cap_generation": True},
        data=data,
        max_completion_length=32,
        beta=0.0,
    )
    batch = inputs(problems(2), G, template="budget")
    for step, budget in ((0, 8), (1, 4)):  # B(t): 8 until the drop at step 1, then 4
        trainer.state.global_step = step
        out = trainer._generate_and_score_completions(batch)
        assert f"use exactly {budget} tokens" in _decode(trainer, out, 0)
        lengths = out["completion_mask"].sum(dim=1)
        assert int(lengths.max()) <= 2 * budget, "generation capped at 2·B(t)"
        assert _metric(trainer, "brevity/budget") == float(budget)
        expected = [max(0.0, 1 - abs(n - budget) / budget) for n in lengths.tolist()]  # triangular(L, B)
        assert list(trainer._logs["rewards"]["budget_triangular"])[-2 * G :] == pytest.approx(expected)


def test_curriculum_reward_reads_the_budget_its_prompt_states(tiny_model_path: str, tmp_path: Path) -> None:
    """One budget object per run: a `rewards:` entry naming a schedule of its own (a constant 100 here) still scores
    against the B(t) the prompt states, which it reads from the row's `budget` column."""
    schedule = {"type": "stepwise_exponential", "start": 8, "end": 4, "total_steps": 2, "n_drops": 1}
    data = {"train": write_jsonl(tmp_path / "train.jsonl", problems(8)), "template": "budget"}
    rewards = [{"name": "budget_triangular", "params": {"schedule": 100}}]
    variant = {"name": "curriculum_budget", "schedule": schedule}
    trainer = build(tiny_model_path, tmp_path, variant, rewards=rewards, data=data, max_completion_length=32, beta=0)
    out = trainer._generate_and_score_completions(inputs(problems(2), G, template="budget"))
    assert "use exactly 8 tokens" in _decode(trainer, out, 0)
    expected = [max(0.0, 1 - abs(n - 8) / 8) for n in out["completion_mask"].sum(dim=1).tolist()]
    assert list(trainer._logs["rewards"]["budget_triangular"])[-2 * G :] == pytest.approx(expected)


def test_ulorl_carries_unfinished_samples_and_masks_mastered_tokens(tiny_model_path: str, tmp_path: Path) -> None:
    variant = {"name": "ulorl", "segment_length": 4, "max_total_tokens": 8, "dynamic_sampling": False}
    rewards = [ours("correctness"), ours("Probe", weight=0.0)]
    trainer = build(tiny_model_path, tmp_path, variant, rewards=rewards, max_completion_length=4)
    probe = _probe(trainer)

    # step 1: one segment for the new prompts is not enough, so more dataset rows are admitted; those carry over
    trainer._generate_and_score_completions(inputs(problems(2), G))
    assert _source(trainer).strategy.pending == 2 * G
    carried = {g.key for g in _source(trainer).strategy.groups}
    # step 2: the released groups are the carried ones, each with its own answer, not this batch's rows
    trainer.state.global_step = 1
    out = trainer._generate_and_score_completions(inputs(problems(2, start=50), G))
    seen = probe.calls[-1]
    assert seen["staleness"] == [1] * 2 * G, "the first segment came from the previous step"
    assert set(seen["answer"]) == {json.loads(key)["answer"] for key in carried}, "not this step's rows (50, 51)"
    for i, answer in enumerate(seen["answer"]):
        assert f"Problem {int(answer) - 1000}:" in _decode(trainer, out, i), "each sample brings its own answer"
    assert len(carried) == 2 and _source(trainer).strategy.pending == 2 * G

    # DMMPT with the paper's σ = 0.2: a random model's entropy (≈ 10 nats) is far above target, nothing is masked
    assert bool((out["tool_mask"] == 1).all())
    with torch.no_grad():
        logps, entropies, _ = trainer._get_per_token_logps_and_entropies(
            trainer.model,
            torch.cat([out["prompt_ids"], out["completion_ids"]], dim=1),
            torch.cat([out["prompt_mask"], out["completion_mask"]], dim=1),
            out["completion_ids"].size(1),
            compute_entropy=True,
        )
    assert torch.allclose(out["old_per_token_logps"], logps, atol=1e-5), "POIS: old log-probs = current policy"

    # a target above the entropy masks the positive samples' tokens with p >= τ, and nothing else
    completion_mask = out["completion_mask"].bool()
    positive = (out["brevity_rewards"] >= 1.0).unsqueeze(1)
    tau = float(logps.exp()[completion_mask & positive].median())
    from rl.losses import Dmmpt

    trainer.plan.token_mask = Dmmpt(tau=tau, sigma=float(entropies.max()) + 1.0)
    out["tool_mask"] = torch.ones_like(out["tool_mask"])
    trainer._apply_token_mask(out)
    expected = positive & (logps.exp() >= tau) & completion_mask
    assert expected.any() and (~expected & completion_mask).any()
    assert torch.equal(out["tool_mask"][completion_mask] == 0, expected[completion_mask])


def test_ulorl_released_surplus_fills_the_next_batches(tiny_model_path: str, tmp_path: Path) -> None:
    """A segment call can release more groups than the batch takes (carried warm-up rows release on top of a step's
    own prompts). That surplus fills the next batches and only the prompts a batch still lacks are admitted. Before,
    every call admitted all of its prompts, the surplus stayed for good, and every later batch trained on samples one
    optimizer step older than they had to be, which POIS then treats as on-policy (the CPU study's ulorl decline)."""
    variant = {"name": "ulorl", "segment_length": 4, "max_total_tokens": 8, "dynamic_sampling": False}
    trainer = build(tiny_model_path, tmp_path, variant, max_completion_length=4)
    # the random tiny model never stops within 8 tokens: every sample takes exactly two segments
    trainer._generate_and_score_completions(inputs(problems(4), G))  # 4 groups + 4 warm-up groups carried over
    assert _source(trainer).strategy.pending == 4 * G and _source(trainer).ready == []
    ready = []
    for step in range(1, 5):  # 2 prompts a step from now on: the 4 carried groups release, 2 are surplus
        trainer.state.global_step = step
        out = trainer._generate_and_score_completions(inputs(problems(2, start=10 * step), G))
        assert out["completion_ids"].shape[0] == 2 * G
        ready.append(len(_source(trainer).ready))
    assert ready[0] == 2 * G, "step 1 released more groups than it trains on"
    assert ready[2:] == [0, 0], f"the surplus must be used up, not kept: left over after each step {ready}"


def test_format_length_trains_without_answers(tiny_model_path: str, tmp_path: Path) -> None:
    questions = [{"question": f"What is {k} + {k}?"} for k in range(8)]
    data = {"train": write_jsonl(tmp_path / "q.jsonl", questions), "columns": {"prompt": "question", "answer": None}}
    variant = {"name": "format_length", "max_tokens": 12}
    rewards = [
        {"name": "answer_format"},
        {"name": "rise_fall_length", "params": {"max_tokens": 12}},
        ours("checksum"),  # label-free too; it makes a random model's groups vary, so the step updates
        ours("Probe", weight=0.0),
    ]
    trainer = build(
        tiny_model_path, tmp_path, variant, rewards=rewards, data=data, per_device_train_batch_size=4, beta=0.0
    )
    assert list(trainer.train_dataset["answer"]) == [None] * 8
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    assert _probe(trainer).calls[0]["answer"] == [None] * 4
    assert any(not torch.equal(before[n], p) for n, p in trainer.model.named_parameters()), "parameters changed"
    assert math.isfinite(trainer.state.log_history[0]["loss"])


def test_label_free_data_is_refused_by_a_reward_that_needs_answers(tiny_model_path: str, tmp_path: Path) -> None:
    data = {
        "train": write_jsonl(tmp_path / "q.jsonl", [{"question": "1 + 1?"}]),
        "columns": {"prompt": "question", "answer": None},
    }
    with pytest.raises(ValueError, match="format_length"):
        build(tiny_model_path, tmp_path, {"name": "grpo"}, data=data)


@pytest.mark.slow
@pytest.mark.parametrize(
    "variant", ["grpo", "s_grpo", "grpo_lambda", "dler", "curriculum_budget", "ulorl", "format_length"]
)
def test_smoke_config_trains(variant: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """experiments/smoke/<variant>.yaml trains its 2 steps on CPU (SmolLM2-135M) and moves the parameters."""
    from rl.experiment import load_config
    from rl.train import build_trainer

    monkeypatch.chdir(REPO)  # data paths in the YAMLs are relative to the repository root
    config = load_config(REPO / "experiments" / "smoke" / f"{variant}.yaml")
    config.grpo.output_dir = str(tmp_path)
    trainer = build_trainer(config)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    assert trainer.state.global_step == config.grpo.max_steps
    assert any(not torch.equal(before[n], p) for n, p in trainer.model.named_parameters()), "parameters changed"


def test_grpo_lambda_tie_break_rng_is_checkpointed() -> None:
    """The GRPO-λ tie-break generator lives on the plan; its state round-trips through the trainer's state."""
    import random

    from rl.trainer import BrevityTrainer
    from rl.variants import VARIANTS

    spec = VARIANTS["grpo_lambda"].Spec(seed=3)
    plan = VARIANTS["grpo_lambda"].plan(spec)
    assert isinstance(plan.rng, random.Random)
    trainer = BrevityTrainer.__new__(BrevityTrainer)  # only the state methods are exercised here
    trainer.plan, trainer._groups = plan, None
    from rollouts.refill import Refills

    trainer._refills = Refills([], seed=0, world=1, rank=0)
    plan.rng.random()
    state = trainer.brevity_state()
    expected = [plan.rng.random() for _ in range(3)]
    trainer.load_brevity_state(state)
    assert [plan.rng.random() for _ in range(3)] == expected


def test_readme_worked_example_adds_a_variant_that_trains(
    tiny_model_path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """rl/variants/README.md's example file, as written: registered in VARIANTS it parses from YAML, its group rule
    reaches the rewards the trainer trains on, and one training step moves the parameters."""
    import importlib
    import re

    from rl.variants import VARIANTS

    readme = (REPO / "rl" / "variants" / "README.md").read_text()
    (block,) = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    (tmp_path / "shortest_bonus.py").write_text(block)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("shortest_bonus")
    monkeypatch.setitem(VARIANTS, "shortest_bonus", module.VARIANT)

    trainer = build(tiny_model_path, tmp_path, {"name": "shortest_bonus", "bonus": 0.5}, rewards=[ours("correctness")])
    rows = [{"prompt": "Problem 1.", "pattern": "1111"}, {"prompt": "Problem 2.", "pattern": "0110"}]
    out = trainer._generate_and_score_completions(inputs(rows, G))
    correct = torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 1.0, 1.0, 0.0]])
    lengths = out["brevity_lengths"].view(-1, G).float().masked_fill(correct == 0, float("inf"))
    shortest = (correct > 0) & (lengths == lengths.min(dim=1, keepdim=True).values)
    assert out["brevity_rewards"].view(-1, G).tolist() == (correct + 0.5 * shortest).tolist()
    assert _metric(trainer, "brevity/bonus_rate") == 1.0

    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    assert trainer.state.global_step == 1
    assert any(not torch.equal(before[n], p) for n, p in trainer.model.named_parameters()), "parameters changed"
