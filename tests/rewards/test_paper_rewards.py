"""The papers' length rewards: kimi_length, shortest_correct, group_length, solve_rate_length (group-relative),
budget_conditioned and hard_limit (per completion). Worked values are computed by hand from each paper's formula."""

from __future__ import annotations

import math
import multiprocessing
import pickle
import socket
import threading
from types import SimpleNamespace
from typing import Any

import pytest

from rewards import REWARDS, make_reward
from rewards import group_length_rewards as glr
from rewards.group_length_rewards import alp_rule, grpo_lead_rule, kimi_rule, shorter_better_rule, split_groups
from rewards.limit_rewards import l1_exact, l1_max

T, F = True, False
NEW = ["kimi_length", "shortest_correct", "group_length", "budget_conditioned", "hard_limit", "solve_rate_length"]
PARAMS: dict[str, dict[str, Any]] = {
    "kimi_length": {"correct_above_wrong": True},
    "shortest_correct": {"alpha": 2.0, "beta": 0.001},
    "group_length": {"alpha": 0.05},
    "budget_conditioned": {"mode": "max"},
    "hard_limit": {"schedule": {"type": "linear", "start": 4000, "end": 2000, "total_steps": 600, "n_drops": 2}},
    "solve_rate_length": {"beta": 0.5, "normalizer": 4000},
}
GROUP_REWARDS = ["kimi_length", "shortest_correct", "group_length", "solve_rate_length"]


def batch(groups: list[tuple[str, list[tuple[bool, int]]]], **columns: Any) -> dict[str, Any]:
    """TRL's reward kwargs for groups of (correct, tokens): a correct completion boxes the reference 7."""
    members = [(prompt, c, n) for prompt, group in groups for c, n in group]
    return {
        "prompts": [p for p, _, _ in members],
        "completions": [r"so \boxed{7}" if c else r"so \boxed{8}" for _, c, _ in members],
        "completion_ids": [[5] * n for _, _, n in members],
        "answer": ["7"] * len(members),
        **columns,
    }


# ---- the pure rules, with the papers' formulas worked by hand ------------------------------------------------------


@pytest.mark.parametrize(
    ("correct", "lengths", "above", "expected"),
    [
        # λ = 0.5 − (L − 100)/400: 0.5, 0.25, 0.0, −0.5; wrong members get min(0, λ)
        ([T, T, F, F], [100, 200, 300, 500], False, [0.5, 0.25, 0.0, -0.5]),
        ([F, F, T, T], [100, 200, 300, 500], False, [0.0, 0.0, 0.0, -0.5]),
        # open-r1 #360: the short wrong answer (0) outscores the long correct one (−0.5) ...
        ([F, T], [100, 500], False, [0.0, -0.5]),
        # ... and no longer with correct_above_wrong: correct 1 + λ ≥ 0.5 > 0 ≥ wrong
        ([F, T], [100, 500], True, [0.0, 0.5]),
        ([T, F], [300, 300], False, [0.0, 0.0]),  # max L = min L: no length reward
        ([T, F], [300, 300], True, [1.0, 0.0]),
    ],
)
def test_kimi_rule(correct: list[bool], lengths: list[int], above: bool, expected: list[float]) -> None:
    assert kimi_rule(correct, lengths, correct_above_wrong=above) == pytest.approx(expected)


def test_kimi_correct_above_wrong_orders_every_group() -> None:
    lengths = [10, 50, 90, 400, 1000]
    for mask in range(1, 2 ** len(lengths) - 1):
        correct = [bool(mask >> i & 1) for i in range(len(lengths))]
        r = kimi_rule(correct, lengths, correct_above_wrong=True)
        assert min(v for v, c in zip(r, correct) if c) > max(v for v, c in zip(r, correct) if not c)


@pytest.mark.parametrize(
    ("correct", "lengths", "expected"),
    [
        # L_SOL = 200 (shortest correct): 2·1[c] − 0.001·|L − 200|
        ([F, T, T, F], [100, 200, 300, 400], [-0.1, 2.0, 1.9, -0.2]),
        # no correct member: L_SOL = mean = 200
        ([F, F], [100, 300], [-0.1, -0.1]),
    ],
)
def test_shorter_better_rule(correct: list[bool], lengths: list[int], expected: list[float]) -> None:
    assert shorter_better_rule(correct, lengths, alpha=2.0, beta=0.001) == pytest.approx(expected)


def test_grpo_lead_rule() -> None:
    # correct lengths 100, 200, 300: μ = 200, sample σ = sqrt((100² + 0 + 100²)/2) = 100, z = −1, 0, 1
    got = grpo_lead_rule([T, T, T, F], [100, 200, 300, 50], alpha=0.05)
    assert got == pytest.approx([math.exp(0.05), 1.0, math.exp(-0.05), -1.0], rel=1e-6)
    assert got[:3] == pytest.approx([1.051271, 1.0, 0.951229], abs=1e-6)
    assert grpo_lead_rule([T, F], [100, 200]) == [1.0, -1.0]  # one correct member: z = 0
    assert grpo_lead_rule([F, F], [100, 200], wrong_reward=0.0) == [0.0, 0.0]


@pytest.mark.parametrize(
    ("correct", "lengths", "expected"),
    [
        # p = 3/4: 1[c] − 0.5·(L/4000)·0.75
        ([T, T, T, F], [1000, 2000, 3000, 4000], [0.90625, 0.8125, 0.71875, -0.375]),
        # p = 0 -> max(0, 1/K) = 1/4: −0.5·1·0.25
        ([F, F, F, F], [4000] * 4, [-0.125] * 4),
        # p = 1: the full penalty
        ([T, T], [2000, 4000], [0.75, 0.5]),
    ],
)
def test_alp_rule(correct: list[bool], lengths: list[int], expected: list[float]) -> None:
    assert alp_rule(correct, lengths, beta=0.5, normalizer=4000) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("correct", "length", "budget", "exact", "max_"),
    [
        (T, 1500, 1000, 0.85, 0.35),  # 1 − 0.0003·500; clip(0.0003·(−500) + 0.5)
        (T, 500, 1000, 0.85, 0.65),
        (T, 1000, 1000, 1.0, 0.5),
        (T, 3000, 1000, 0.4, 0.0),  # clip(−0.6 + 0.5) = 0
        (T, 0, 4000, -0.2, 1.0),  # clip(1.2 + 0.5) = 1
        (F, 1500, 1000, -0.15, 0.0),
    ],
)
def test_l1_rewards(correct: bool, length: int, budget: int, exact: float, max_: float) -> None:
    assert l1_exact(correct, length, budget) == pytest.approx(exact)
    assert l1_max(correct, length, budget) == pytest.approx(max_)


# ---- the reward classes: TRL signature, shared grader, groups ------------------------------------------------------


def test_group_rewards_end_to_end() -> None:
    kwargs = batch(
        [("p1", [(T, 100), (T, 200), (F, 300), (F, 500)]), ("p2", [(F, 100), (T, 500), (T, 300), (F, 300)])]
    )
    assert make_reward("kimi_length")(**kwargs) == pytest.approx([0.5, 0.25, 0.0, -0.5, 0.0, -0.5, 0.0, 0.0])
    fixed = make_reward("kimi_length", correct_above_wrong=True)(**kwargs)
    assert fixed == pytest.approx([1.5, 1.25, 0.0, -0.5, 0.0, 0.5, 1.0, 0.0])
    # L_SOL = 100 and 300
    assert make_reward("shortest_correct")(**kwargs) == pytest.approx([2.0, 1.9, -0.2, -0.4, -0.2, 1.8, 2.0, 0.0])
    lead = make_reward("group_length")(**kwargs)  # p1: μ = 150, σ = √5000; p2: μ = 400, σ = √20000
    z1, z2 = 50 / (math.sqrt(5000) + 1e-6), 100 / (math.sqrt(20000) + 1e-6)
    expected = [math.exp(0.05 * z1), math.exp(-0.05 * z1), -1, -1, -1, math.exp(-0.05 * z2), math.exp(0.05 * z2), -1]
    assert lead == pytest.approx(expected)
    alp = make_reward("solve_rate_length", beta=0.5, normalizer=1000)(**kwargs)  # p = 1/2: 0.00025 per token
    assert alp == pytest.approx([0.975, 0.95, -0.075, -0.125, -0.025, 0.875, 0.925, -0.075])


def test_truncated_completion_counts_as_wrong() -> None:
    kwargs = batch([("p", [(T, 100), (T, 500)])], finish_reason=["stop", "length"])
    assert make_reward("kimi_length")(**kwargs) == pytest.approx([0.5, -0.5])  # the cut one is wrong: min(0, −0.5)
    assert make_reward("hard_limit", schedule=4000)(**kwargs) == [1.0, 0.0]


def test_group_size_and_duplicate_prompts() -> None:
    # the same prompt twice in a row: the run of 8 is cut by the gcd of the runs (4) into two groups
    kwargs = batch([("p", [(T, 100), (T, 200), (F, 300), (F, 500)])] * 2 + [("q", [(T, 10)] * 4)])
    reward = make_reward("kimi_length")
    assert reward(**kwargs) == pytest.approx([0.5, 0.25, 0.0, -0.5] * 2 + [0.0] * 4)
    assert make_reward("kimi_length", group_size=4)(**kwargs) == reward(**kwargs)
    with pytest.raises(ValueError, match="not whole groups"):
        make_reward("kimi_length", group_size=5)(**kwargs)
    with pytest.raises(ValueError, match="mix prompts"):
        make_reward("kimi_length", group_size=6)(**batch([("p", [(T, 1)] * 3), ("q", [(T, 1)] * 3)]))
    no_prompts = {k: v for k, v in kwargs.items() if k != "prompts"}
    with pytest.raises(ValueError, match="group_size"):
        reward(**no_prompts)
    assert make_reward("kimi_length", group_size=4)(**no_prompts) == reward(**kwargs)
    assert [list(g) for g in split_groups(["a", "a", "b", "b"], None)] == [[0, 1], [2, 3]]


def test_budget_conditioned_reads_the_budget_column() -> None:
    kwargs = batch([("p", [(T, 1500), (T, 500), (F, 1500)])], budget=[1000, 1000, 1000])
    assert make_reward("budget_conditioned")(**kwargs) == pytest.approx([0.85, 0.85, -0.15])
    assert make_reward("budget_conditioned", mode="max")(**kwargs) == pytest.approx([0.35, 0.65, 0.0])
    with pytest.raises(ValueError, match="budget"):
        make_reward("budget_conditioned")(**batch([("p", [(T, 1)])]))
    with pytest.raises(ValueError, match="mode"):
        make_reward("budget_conditioned", mode="min")


def test_hard_limit_tightens_with_the_schedule() -> None:
    reward = make_reward("hard_limit", **PARAMS["hard_limit"])  # 4000, then 3000 from step 200, 2000 from step 400
    logged: dict[str, float] = {}
    kwargs = batch([("p", [(T, 1500), (T, 2500), (T, 3500), (F, 100)])], log_metric=logged.__setitem__)
    expected = {0: [1.0, 1.0, 1.0, 0.0], 200: [1.0, 1.0, 0.0, 0.0], 400: [1.0, 0.0, 0.0, 0.0]}
    for step, values in expected.items():
        assert reward(**kwargs, trainer_state=SimpleNamespace(global_step=step)) == values
    assert logged == {"hard_limit/limit": 2000.0}
    with pytest.raises(ValueError, match="global_step"):
        reward(**kwargs)
    assert make_reward("hard_limit", schedule=2000)(**kwargs) == [1.0, 0.0, 0.0, 0.0]  # a fixed limit needs no step


# ---- registry, pickling, process split -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", NEW)
def test_registered_and_picklable(name: str) -> None:
    reward = make_reward(name, **PARAMS[name])
    assert REWARDS[name] is type(reward) and reward.__name__ == name
    copy = pickle.loads(pickle.dumps(reward))
    assert copy == reward
    kwargs = batch([("p", [(T, 1500), (F, 2500)]), ("q", [(T, 100), (T, 200)])], budget=1000)
    kwargs["trainer_state"] = SimpleNamespace(global_step=0)
    assert copy(**kwargs) == reward(**kwargs)


def test_required_parameters_fail_loudly() -> None:
    with pytest.raises(ValueError, match="schedule"):
        make_reward("hard_limit")
    with pytest.raises(ValueError, match="beta > 0 and normalizer > 0"):
        make_reward("solve_rate_length")
    with pytest.raises(ValueError, match="unknown parameter"):
        make_reward("kimi_length", alpha=1.0)


def _in_threads(reward: Any, parts: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Run `reward` as len(parts) processes would: one thread per rank, exchanging records like all_gather_object."""
    world = len(parts)
    slots: list[Any] = [None] * world
    barrier = threading.Barrier(world)
    local = threading.local()

    def fake_gather(records: list[Any]) -> tuple[list[Any], int]:
        slots[local.rank] = records
        barrier.wait()
        return [r for part in slots for r in part], sum(len(p) for p in slots[: local.rank])

    monkeypatch.setattr(glr, "gather_records", fake_gather)
    out: list[Any] = [None] * world

    def run(rank: int) -> None:
        local.rank = rank
        out[rank] = reward(**parts[rank])

    threads = [threading.Thread(target=run, args=(r,)) for r in range(world)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [v for part in out for v in part]


def _split(kwargs: dict[str, Any], at: int) -> list[dict[str, Any]]:
    return [{k: v[:at] for k, v in kwargs.items()}, {k: v[at:] for k, v in kwargs.items()}]


@pytest.mark.parametrize("name", GROUP_REWARDS)
def test_two_processes_compute_what_one_does(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """3 groups of 4 split 6 + 6, so the middle group straddles the two processes (as tests/rl/test_distributed)."""
    kwargs = batch(
        [
            ("a", [(T, 100), (F, 900), (T, 300), (T, 120)]),
            ("b", [(F, 50), (T, 700), (T, 400), (F, 1000)]),
            ("c", [(T, 600), (T, 650), (F, 30), (T, 800)]),
        ]
    )
    reward = make_reward(name, **PARAMS[name])
    one = reward(**kwargs)
    assert _in_threads(reward, _split(kwargs, 6), monkeypatch) == one
    # without the gather, each process would see half of group b and score it differently
    monkeypatch.setattr(glr, "gather_records", lambda records: (list(records), 0))
    assert [v for part in _split(kwargs, 6) for v in reward(**part)] != one


def _gloo_worker(rank: int, port: int, name: str, part: dict[str, Any], queue: Any) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        queue.put((rank, make_reward(name, **PARAMS[name])(**part)))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_processes_compute_what_one_does() -> None:
    """The real gather: torch.distributed (gloo) with 2 processes, a group split across them."""
    pytest.importorskip("torch.distributed")
    kwargs = batch([("a", [(T, 100), (F, 900), (T, 300)]), ("b", [(F, 50), (T, 700), (T, 400)])])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    parts = _split(kwargs, 2)
    procs = [ctx.Process(target=_gloo_worker, args=(r, port, "group_length", parts[r], queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = dict(queue.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    assert results[0] + results[1] == make_reward("group_length")(**kwargs)


def test_one_yaml_line_with_every_variant() -> None:
    """`- {name: ..., weight: ..., params: {...}}` parses and builds next to each paper experiment's own rewards."""
    from pathlib import Path

    import yaml

    from rl.experiment import parse_config
    from rl.train import build_rewards

    lines = [{"name": name, "weight": 1.0, "params": PARAMS[name]} for name in NEW]
    papers = sorted((Path(__file__).resolve().parents[2] / "experiments" / "papers").glob("*.yaml"))
    assert len(papers) == 7
    for path in papers:
        raw = yaml.safe_load(path.read_text())
        raw["rewards"] = (raw.get("rewards") or [{"name": "correctness"}]) + lines
        built = build_rewards(parse_config(raw, str(path)))
        assert [f.__name__ for f in built[-len(NEW) :]] == NEW, path.name
