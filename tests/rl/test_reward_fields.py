"""Item 1 of issue 16: every reward gets `finish_reason` and `num_tokens`, whichever engine generated, with the
model's extra EOS ids honoured. Through the production trainer on the tiny real model; greedy (`top_k: 1`), so a
second run with an extra EOS id declared in the model's generation config continues the first run's completions."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from rl.reward_fields import fill_reward_fields, generation_eos_ids
from tests.rl.variant_helpers import build, inputs, ours, problems

G, CAP = 4, 12
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def varied_model_path(tiny_model_path: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The tiny model with weights redrawn at std 0.2: its greedy text varies (the std-0.02 init repeats one token)."""
    import torch
    from transformers import AutoModelForCausalLM

    out = tmp_path_factory.mktemp("tiny-varied")
    shutil.copytree(tiny_model_path, out, dirs_exist_ok=True)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" not in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.2)
    model.save_pretrained(out)
    return str(out)


def _seen(trainer: Any) -> dict[str, Any]:
    """The reward kwargs the Probe reward received on the last generation round."""
    trainer._generate_and_score_completions(inputs(problems(2), G))
    return next(f for f in trainer.reward_funcs if type(f).__name__ == "Probe").calls[-1]


def _with_extra_eos(model_path: str, folder: Path, extra: int) -> str:
    """A copy of the model whose generation config lists a second EOS id after the tokenizer's (as Qwen3's does)."""
    shutil.copytree(model_path, folder)
    path = folder / "generation_config.json"
    config = json.loads(path.read_text())
    config["eos_token_id"] = [config["eos_token_id"], extra]
    path.write_text(json.dumps(config))
    return str(folder)


@pytest.mark.parametrize("engine", ["trl", "transformers"])
def test_every_engine_passes_finish_reason_and_num_tokens(varied_model_path: str, tmp_path: Path, engine: str) -> None:
    rewards = [{"name": "correctness"}, ours("Probe", weight=0.0)]
    settings = {"rollout": {"engine": engine}, "top_k": 1, "beta": 0.0, "max_completion_length": CAP}
    (tmp_path / "a").mkdir()
    trainer = build(varied_model_path, tmp_path / "a", {"name": "grpo"}, rewards=rewards, **settings)
    eos = trainer.processing_class.eos_token_id
    first = _seen(trainer)
    assert first["num_tokens"] == [len(ids) for ids in first["completion_ids"]]
    for ids, reason in zip(first["completion_ids"], first["finish_reason"]):  # "length" iff the cap without EOS
        assert reason == ("length" if len(ids) == CAP and ids[-1] != eos else "stop"), (ids, reason)
    assert "length" in first["finish_reason"], "the random tiny model should run into the cap"

    # a token the model writes, declared an EOS id: generation must stop on it. The cap-th token where it first
    # appears there: that completion is "stop" only if the extra id counts as an EOS, not merely for ending early.
    before = first["completion_ids"][0]
    last_new = max(k for k in range(len(before)) if before[k] not in before[:k])
    assert last_new == CAP - 1, before
    extra = before[last_new]
    model = _with_extra_eos(varied_model_path, tmp_path / "extra-eos", extra)
    (tmp_path / "b").mkdir()
    second = _seen(build(model, tmp_path / "b", {"name": "grpo"}, rewards=rewards, **settings))
    for old, ids, reason, n in zip(
        first["completion_ids"], second["completion_ids"], second["finish_reason"], second["num_tokens"]
    ):
        ends = [k for k, t in enumerate(old) if t in (eos, extra)]
        expected = old[: ends[0] + 1] if ends else old
        assert ids == expected
        assert reason == ("stop" if ends or len(old) < CAP else "length")
        assert n == len(expected)
    assert second["completion_ids"][0] == before and second["finish_reason"][0] == "stop"


def test_readme_reward_example_runs_through_the_trainer(
    tiny_model_path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's reward section: its Python blocks run as written, and `my_rewards.brevity_bonus` named by dotted
    path in an experiment scores the completions from the fields the trainer passes."""
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Rewards") :]
    section = section[: section.index("\n## ", 1)]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    example = next(b for b in blocks if b.startswith("# my_rewards.py"))
    for block in blocks:
        if block is not example:
            exec(compile(block, "README.md", "exec"), {})  # noqa: S102 - the README's own snippet
    (tmp_path / "my_rewards.py").write_text(example)
    monkeypatch.syspath_prepend(str(tmp_path))

    rewards = [{"name": "my_rewards.brevity_bonus", "weight": 0.2}, ours("Probe", weight=0.0)]
    trainer = build(tiny_model_path, tmp_path, {"name": "grpo"}, rewards=rewards, beta=0.0, max_completion_length=CAP)
    seen = _seen(trainer)
    logged = list(trainer._logs["rewards"]["brevity_bonus"])[-2 * G :]
    expected = [
        -1.0 if r == "length" else 1 / (1 + n / 100) for r, n in zip(seen["finish_reason"], seen["num_tokens"])
    ]
    assert logged == pytest.approx(expected)
    assert "length" in seen["finish_reason"]


def test_fill_reward_fields_and_generation_eos_ids() -> None:
    rows: list[dict[str, Any]] = [{"answer": "1"}, {"answer": "1"}, {"answer": "1"}]
    fill_reward_fields(rows, [[5, 6, 7], [5, 9], [5, 2]], eos_token_ids=[2, 9], max_tokens=3)
    assert [r["finish_reason"] for r in rows] == ["length", "stop", "stop"]
    assert [r["num_tokens"] for r in rows] == [3, 2, 2]
    fill_reward_fields(rows[:1], [[1]])  # brevity's rollouts: the finish reason came from the engine
    assert rows[0] == {"answer": "1", "finish_reason": "length", "num_tokens": 1}
    shared = {"answer": "1"}
    with pytest.raises(ValueError, match="a row of its own"):
        fill_reward_fields([shared, shared], [[1], [2]])
    with pytest.raises(ValueError, match="2 input rows for 1 completions"):
        fill_reward_fields([{}, {}], [[1]])

    config = type("GenerationConfig", (), {"eos_token_id": [2, 7]})()
    assert generation_eos_ids([2], config) == [2, 7]
    assert generation_eos_ids([2], type("C", (), {"eos_token_id": 5})()) == [2, 5]
    assert generation_eos_ids([2, 9], None) == [2, 9]


def test_grading_verdicts_read_the_field_only_when_graded_alike() -> None:
    from rewards.correctness import GRADED_CORRECT, GRADING, Grading

    grading = Grading(answer_format="boxed")
    kwargs: dict[str, Any] = {"answer": ["12", "12"]}
    texts = ["\\boxed{12}", "\\boxed{13}"]
    assert grading.verdicts(texts, kwargs, "r") == [True, False]  # no field: graded here
    marked = {**kwargs, GRADED_CORRECT: [False, True], GRADING: [grading, grading]}
    assert grading.verdicts(texts, marked, "r") == [False, True], "the trainer's verdict is read, not regraded"
    other = Grading(answer_format="boxed", require_think_close=True)
    assert other.verdicts(texts, marked, "r") == [False, False], "graded otherwise: grades itself"


def test_dler_grades_each_completion_once(
    tiny_model_path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DLER's `truncation` reward and its weight-0 `correctness` column grade alike: the trainer grades each
    completion once and both read that verdict (before, each graded every completion)."""
    import rewards.correctness

    calls = []
    grade = rewards.correctness.grade
    monkeypatch.setattr(rewards.correctness, "grade", lambda *a, **k: calls.append(a) or grade(*a, **k))
    spec = {"name": "dler", "target_length": CAP, "require_think_close": False, "dynamic_sampling": False}
    trainer = build(tiny_model_path, tmp_path, spec, beta=0.0, max_completion_length=CAP)
    assert [r.__name__ for r in trainer.reward_funcs] == ["truncation", "correctness"]
    trainer._generate_and_score_completions(inputs(problems(2), G))
    assert len(calls) == 2 * G, "one grade per completion"
