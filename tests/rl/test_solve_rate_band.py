"""Dynamic sampling's solve-rate band (issue 16, item 3) end to end: DLER trains on the tiny real model with the
transformers engine and `variant.solve_rate_band`; a completion is "solved" when its token ids sum to an even number
(`parity`), so the random model's groups come with every solve rate and the band has something to drop."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tests.rl.variant_helpers import build, ours, unpadded

G = 4
BAND = [0.25, 0.5]  # 1 or 2 of 4 solved


def test_dler_trains_only_on_groups_inside_the_band(tiny_model_path: str, tmp_path: Path) -> None:
    variant = {"name": "dler", "target_length": 12, "require_think_close": False, "solve_rate_band": BAND}
    rewards = [ours("parity"), ours("Probe", weight=0.0)]
    trainer = build(tiny_model_path, tmp_path, variant, rewards=rewards, beta=0.0, max_steps=2)
    assert trainer.plan.sample_filter.band == (0.25, 0.5)
    records: list[dict[str, Any]] = []
    generate = trainer._generate_and_score_completions

    def recorded(inputs: Any) -> Any:
        out = generate(inputs)
        records.append(out)
        return out

    trainer._generate_and_score_completions = recorded
    before = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    trainer.train()

    assert len(records) == 2, "one generation batch per step"
    for out in records:
        ids = unpadded(out["completion_ids"], out["completion_mask"])
        solved = out["brevity_solved"].view(-1, G)
        assert solved.flatten().tolist() == [sum(x) % 2 == 0 for x in ids], "solved = the reward above 0"
        valid = out["brevity_valid"].view(-1, G)[:, 0]
        assert int(valid.sum()) == 2, "the batch's 2 groups, refilled until both are inside the band"
        counts = solved.sum(dim=1)[valid].tolist()
        assert all(1 <= k <= 2 for k in counts), counts

    logs = [h for h in trainer.state.log_history if "brevity/groups_seen" in h]
    assert len(logs) == 2, "kept / dropped counts logged every step"
    for h in logs:
        assert h["brevity/groups_seen"] == h["brevity/groups_kept"] + h["brevity/groups_dropped"]
        assert h["brevity/groups_kept"] >= 2
        assert h["brevity/groups_out_of_band"] <= h["brevity/groups_dropped"]
        assert h["brevity/groups_seen"] == 2 * (1 + h["brevity/resample_rounds"])
    assert sum(h["brevity/groups_out_of_band"] for h in logs) > 0, "the band dropped groups"

    # every completion of every round, refills included, got its own finish reason and length
    eos = trainer.processing_class.eos_token_id
    probe = next(f for f in trainer.reward_funcs if type(f).__name__ == "Probe")
    assert len(probe.calls) == sum(1 + h["brevity/resample_rounds"] for h in logs)
    for call in probe.calls:
        for ids, reason, n in zip(call["completion_ids"], call["finish_reason"], call["num_tokens"], strict=True):
            assert n == len(ids) and reason == ("length" if len(ids) == 12 and ids[-1] != eos else "stop")

    changed = [name for name, p in trainer.model.named_parameters() if not torch.equal(before[name], p.detach())]
    assert changed, "training updated the model"
