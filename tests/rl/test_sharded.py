"""Sharded training (FSDP2, ZeRO-3): the rollout engine decodes on a whole copy that follows the policy every step.

Unit tests check rl/weight_sync.py on a plain model (and ZeRO-3's one-at-a-time gather against a stand-in that
asserts it). The slow tests train the tiny model 3 steps through `rl.train.build_trainer` with the transformers engine
four times, 2 processes over gloo each: FSDP2 (the shipped experiments/accelerate/fsdp2.yaml, on CPU:
tests/rl/sharded_run.py says how), DeepSpeed ZeRO-3 and ZeRO-2 (the shipped zero3.yaml / zero2.yaml with real
DeepSpeed on its CPU accelerator) and DDP (cpu_2proc.yaml). Under each sharded backend the engine's copy must equal
the gathered policy after every sync, change with every optimizer step, and decode exactly what the DDP run's engine
(the live model itself) decodes, with the same weights; under ZeRO-2 (weights whole) the engine is the live model.
"""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from rl.weight_sync import clean_name, full_copy, full_state, plain_class
from tests.rl.experiments import cpu_experiment
from tests.rl.test_distributed import ACCELERATE_CPU, REPO, _env, _free_port

FSDP2_YAML = REPO / "experiments" / "accelerate" / "fsdp2.yaml"
ZERO3_YAML = REPO / "experiments" / "accelerate" / "zero3.yaml"
ZERO2_YAML = REPO / "experiments" / "accelerate" / "zero2.yaml"
STEPS = 3


def _tiny_model() -> Any:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=16, max_position_embeddings=64, tie_word_embeddings=True, eos_token_id=0,
    )  # fmt: skip
    torch.manual_seed(0)
    return Qwen2ForCausalLM(config).eval()


@pytest.mark.parametrize(
    "name, clean",
    [
        ("model.layers.0.mlp.up_proj.weight", "model.layers.0.mlp.up_proj.weight"),
        ("model.layers.0._checkpoint_wrapped_module.mlp.up_proj.weight", "model.layers.0.mlp.up_proj.weight"),
        ("_fsdp_wrapped_module.model.layers.1._fsdp_wrapped_module.self_attn.q_proj.bias",
         "model.layers.1.self_attn.q_proj.bias"),
    ],
)  # fmt: skip
def test_clean_name_strips_wrapper_prefixes(name: str, clean: str) -> None:
    assert clean_name(name) == clean


def test_full_state_of_a_plain_model_is_its_state_dict() -> None:
    model = _tiny_model()
    state = model.state_dict()
    full = list(full_state(model))
    assert [name for name, _ in full] == list(state), "names and order of the HF state dict, tied weights included"
    assert all(torch.equal(tensor, state[name]) and not tensor.requires_grad for name, tensor in full)


def test_full_copy_is_a_frozen_twin_that_takes_the_weights_through_the_engine() -> None:
    from rollouts.hf_engine import HFEngine
    from rollouts.types import Request, SamplingParams

    model = _tiny_model()
    clone = full_copy(model, "cpu", torch.float32)
    assert type(clone) is plain_class(model) is type(model)
    assert clone.lm_head.weight is clone.model.embed_tokens.weight, "tied weights stay tied in the copy"
    assert not clone.training and not any(p.requires_grad for p in clone.parameters())
    assert torch.equal(clone.model.rotary_emb.inv_freq, model.model.rotary_emb.inv_freq)  # a non-persistent buffer
    engine = HFEngine(clone, max_model_len=64)
    engine.load_weights(full_state(model))
    for name, tensor in model.state_dict().items():
        assert torch.equal(clone.state_dict()[name], tensor), name
    ids = torch.tensor([[3, 5, 7, 9]])
    assert torch.equal(clone(ids).logits, model(ids).logits)
    greedy = SamplingParams(temperature=0.0, max_tokens=6)
    request = [Request([3, 5, 7, 9], greedy)]
    on_live = HFEngine(model, max_model_len=64).generate(request)[0][0]
    assert engine.generate(request)[0][0].token_ids == on_live.token_ids


def test_full_copy_keeps_the_dtype_asked_for() -> None:
    clone = full_copy(_tiny_model(), "cpu", torch.bfloat16)
    assert {p.dtype for p in clone.parameters()} == {torch.bfloat16}
    assert torch.get_default_dtype() == torch.float32, "the default dtype is restored"


def test_zero3_parameters_are_gathered_one_at_a_time_while_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stand-in for DeepSpeed: a partitioned parameter is empty except inside GatheredParameters([it])."""
    model = _tiny_model()
    whole = {name: p.detach().clone() for name, p in model.named_parameters()}
    for i, p in enumerate(model.parameters()):
        p.ds_id = i
        p.data = torch.empty(0)
    by_id = {p.ds_id: whole[name] for name, p in model.named_parameters()}
    active: list[int] = []

    class GatheredParameters:
        def __init__(self, params: list[torch.nn.Parameter]) -> None:
            assert len(params) == 1, "one parameter per gather"
            self.param = params[0]

        def __enter__(self) -> None:
            assert not active, "two gathers open at once"
            active.append(self.param.ds_id)
            self.param.data = by_id[self.param.ds_id].clone()

        def __exit__(self, *exc: object) -> None:
            active.pop()
            self.param.data = torch.empty(0)

    fake = types.ModuleType("deepspeed")
    fake.zero = types.SimpleNamespace(GatheredParameters=GatheredParameters)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "deepspeed", fake)
    copied = {name: tensor.clone() for name, tensor in full_state(model)}  # the consumer copies before the next
    assert not active
    for name, tensor in whole.items():
        assert torch.equal(copied[name], tensor), name
    assert torch.equal(copied["lm_head.weight"], whole["model.embed_tokens.weight"]), "a tied alias is whole too"


# ---- 2 processes: FSDP2 vs DDP --------------------------------------------------------------------------------------
def _experiment(model: str, output_dir: Path) -> dict[str, Any]:
    return cpu_experiment(
        model, output_dir,
        variant={"name": "grpo"},
        rewards=[{"name": "tests.rl.sharded_run:even_tokens"}],  # varies inside groups: the weights move
        num_generations=4, per_device_train_batch_size=4, max_completion_length=8, max_steps=STEPS,
        learning_rate=1.0e-3,
    )  # fmt: skip


def launch_sharded_run(name: str, experiment: dict[str, Any], root: Path) -> list[dict[str, Any]]:
    """Train `experiment` with 2 processes on CPU under `name` ("fsdp2", "zero3", "zero2" or "ddp": the shipped
    launcher files, made to fit the CPU) through tests/rl/sharded_run.py; its per-rank logs."""
    if name == "ddp":
        launcher = ACCELERATE_CPU
    else:
        launcher = root / f"{name}_cpu.yaml"
        raw = yaml.safe_load({"fsdp2": FSDP2_YAML, "zero3": ZERO3_YAML, "zero2": ZERO2_YAML}[name].read_text())
        raw.update(num_processes=2, mixed_precision="no")
        if name == "fsdp2":  # accelerate's MULTI_CPU mode; under DeepSpeed use_cpu would drop DeepSpeed
            raw["use_cpu"] = True
        launcher.write_text(yaml.safe_dump(raw))
    config = root / f"{name}.yaml"
    config.write_text(yaml.safe_dump(experiment))
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(launcher),
        "--main_process_port", str(_free_port()),
        "-m", "tests.rl.sharded_run", "--config", str(config), "--out", str(root / name),
    ]  # fmt: skip
    env = _env()
    if name.startswith("zero"):  # ACCELERATE_USE_CPU would drop DeepSpeed too (rl/trl_args.py gives it gloo instead)
        del env["ACCELERATE_USE_CPU"]
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{name} run failed:\n{(proc.stdout + proc.stderr)[-6000:]}"
    return [json.loads((root / name / f"rank{r}.json").read_text()) for r in range(2)]


@pytest.fixture(scope="module")
def runs(tiny_model_path: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    """{"fsdp2" | "zero3" | "zero2" | "ddp": per-rank logs}; the runs go one after the other (two cores)."""
    root = tmp_path_factory.mktemp("sharded")
    return {
        name: launch_sharded_run(name, _experiment(tiny_model_path, root / "runs" / name), root)
        for name in ("fsdp2", "zero3", "zero2", "ddp")
    }


def check_synced_every_step(log: dict[str, Any]) -> None:
    """A sharded run's rank log: all steps trained, one sync per optimizer step into an engine of its own."""
    assert log["final_global_step"] == STEPS
    assert [s["global_step"] for s in log["syncs"]] == list(range(STEPS)), "one sync per optimizer step"
    for sync in log["syncs"]:
        assert sync["sharded"] and not sync["engine_is_live_model"]
        assert sync["synced_step"] == sync["global_step"]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["fsdp2", "zero3"])
def test_engine_copy_follows_the_gathered_policy(runs: dict[str, list[dict[str, Any]]], backend: str) -> None:
    for log in runs[backend]:
        check_synced_every_step(log)
        for sync in log["syncs"]:
            assert sync["mismatched"] == [], f"step {sync['global_step']}: engine weights differ from the policy's"
            assert sync["engine_param_types"] == ["Parameter"]
            if backend == "fsdp2":
                assert sync["live_param_types"] == ["DTensor"]
            else:  # DeepSpeed partitions in place: this rank's parameters are empty outside a gather
                assert sync["live_local_numel"] == 0 and sync["engine_numel"] > 0
    if backend == "zero3":
        assert runs[backend][0]["distributed_type"] == "DistributedType.DEEPSPEED"
        assert runs[backend][0]["zero_stage"] == 3
    prints = [s["fingerprint"] for s in runs[backend][0]["syncs"]]
    for before, after in zip(prints, prints[1:]):
        assert before.keys() == after.keys()
        assert before != after, "an optimizer step did not reach the engine"


@pytest.mark.slow
def test_zero2_engine_decodes_on_the_live_policy(runs: dict[str, list[dict[str, Any]]]) -> None:
    """ZeRO-2 shards optimizer states and gradients, not weights: no copy, the engine is the live model."""
    for log in runs["zero2"]:
        assert log["distributed_type"] == "DistributedType.DEEPSPEED" and log["zero_stage"] == 2
        assert log["final_global_step"] == STEPS
        assert all(s["engine_is_live_model"] and not s["sharded"] and s["mismatched"] == [] for s in log["syncs"])


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["fsdp2", "zero3", "zero2"])
def test_sharded_run_decodes_and_trains_like_ddp(runs: dict[str, list[dict[str, Any]]], backend: str) -> None:
    for sharded, ddp in zip(runs[backend], runs["ddp"]):
        assert all(s["engine_is_live_model"] and not s["sharded"] for s in ddp["syncs"])
        assert len(sharded["batches"]) == len(ddp["batches"]) == STEPS
        for step, (a, b) in enumerate(zip(sharded["batches"], ddp["batches"])):
            assert a["completion_ids"] == b["completion_ids"], f"rank {sharded['rank']} step {step}: samples differ"
    for a, b in zip(runs[backend][0]["syncs"], runs["ddp"][0]["syncs"]):
        assert a["fingerprint"].keys() == b["fingerprint"].keys()
        for name, values in a["fingerprint"].items():  # gradient reductions differ in the last bits only
            assert values == pytest.approx(b["fingerprint"][name], rel=1e-4, abs=1e-6), (a["global_step"], name)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["fsdp2", "zero3", "zero2"])
def test_sharded_run_saves_the_model_ddp_saves(
    runs: dict[str, list[dict[str, Any]]], backend: str, tiny_model_path: str
) -> None:
    """The end of `brevity train` (rl.train.finish) writes one whole, trained model, whatever shards it: the weights
    a DDP run saves, up to what its gradient reductions' last bits become after Adam (lr 1e-3: a weight the two runs
    update differently moves ~1e-3, ten times the tolerance)."""
    from safetensors.torch import load_file

    initial = load_file(str(Path(tiny_model_path) / "model.safetensors"))
    saved = {
        name: load_file(str(Path(runs[name][0]["output_dir"]) / "model.safetensors")) for name in (backend, "ddp")
    }
    assert saved["ddp"].keys() == initial.keys()
    extra = saved[backend].keys() - initial.keys()  # FSDP2's full state dict keeps the tied lm_head alias
    assert initial.keys() <= saved[backend].keys() and extra <= {"lm_head.weight"}, extra
    for name in extra:
        assert torch.equal(saved[backend][name], saved[backend]["model.embed_tokens.weight"])
    for name, expected in saved["ddp"].items():  # Adam turns last-bit gradient differences into up to ~1e-4 per weight
        assert saved[backend][name].shape == initial[name].shape, name
        torch.testing.assert_close(
            saved[backend][name], expected, rtol=0, atol=1e-4, msg=lambda m, name=name: f"{name}: {m}"
        )
        assert (saved[backend][name] - expected).norm() <= 1e-4 * expected.norm(), name
    assert any(not torch.equal(saved[backend][n], initial[n]) for n in initial), "the saved model is the initial one"
