"""HFEngine on CPU against a tiny random Qwen2 and the real SmolLM2: semantics, padding, seeds, logprobs, errors."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import pytest
import torch

from rollouts.hf_engine import HFEngine
from rollouts.types import Engine, Request, SamplingParams

PROMPTS = ([1, 5, 6, 7, 8, 9, 10, 11], [3, 4], [12, 400, 9000, 77, 5])
GREEDY = SamplingParams(temperature=0, max_tokens=6)


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """One intra-op thread: on 2 shared cores a SmolLM2 forward took 4.1 s with 2 threads and 0.24 s with 1."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def engines(tiny_model_path: str) -> dict[str, HFEngine]:
    """One engine per CPU-testable mode over the same tiny model (the static one with a small KV bucket)."""
    dynamic = HFEngine(tiny_model_path, mode="dynamic")
    return {"dynamic": dynamic, "static": HFEngine(dynamic.model, tokenizer=None, mode="static", kv_bucket=4)}


def ids(completions: list) -> list[list[int]]:
    return [c.token_ids for c in completions]


def test_protocol_and_auto_mode(engines: dict[str, HFEngine]) -> None:
    assert isinstance(engines["dynamic"], Engine)
    assert HFEngine(engines["dynamic"].model).mode == "dynamic"  # auto on CPU
    assert engines["dynamic"].eos_token_ids == engines["static"].eos_token_ids == (2,)


@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_n_samples_padding_and_per_request_caps(engines: dict[str, HFEngine], mode: str) -> None:
    """A left-padded batch gives each prompt's solo greedy output; n samples come in order; caps are per request."""
    engine = engines[mode]
    alone = [engine.generate([Request(p, GREEDY)])[0][0] for p in PROMPTS]
    reqs = [
        Request(PROMPTS[0], GREEDY),
        Request(PROMPTS[1], SamplingParams(temperature=0, max_tokens=3)),
        Request(PROMPTS[2], SamplingParams(n=3, temperature=1.0, max_tokens=5, seed=1, logprobs=True)),
    ]
    out = engine.generate(reqs)
    assert [len(group) for group in out] == [1, 1, 3]
    assert out[0][0].token_ids == alone[0].token_ids
    assert out[1][0].token_ids == alone[1].token_ids[:3]
    assert [len(c.token_ids) for c in out[1] + out[2]] == [3, 5, 5, 5]
    assert all(c.finish_reason == "length" for group in out for c in group)
    assert len({tuple(c.token_ids) for c in out[2]}) == 3  # distinct samples
    assert all(c.logprobs is not None and len(c.logprobs) == 5 for c in out[2]) and out[0][0].logprobs is None
    solo = engine.generate([Request(PROMPTS[2], reqs[2].params)])[0]  # seeds do not depend on the batch
    assert ids(solo) == ids(out[2])
    assert [c.logprobs for c in solo] == [pytest.approx(c.logprobs, abs=1e-5) for c in out[2]]


@pytest.mark.parametrize(
    ("max_prefill_tokens", "decode_attention"), [(32768, "window"), (7, "window"), (32768, "ragged"), (7, "ragged")]
)
def test_static_mode_equals_dynamic(
    engines: dict[str, HFEngine], max_prefill_tokens: int, decode_attention: str
) -> None:
    """Static decoding equals the dynamic loop, also when the prefill runs in pieces (7 tokens: one slot per piece
    for the 6 rows, so every piece attends over the slots the previous pieces wrote), with either decode attention
    (ragged: each row reads slots [P - len, P + step) only; a wrong start or end changes the logprobs)."""
    reqs = [
        Request(p, SamplingParams(n=2, temperature=0.8, top_p=0.9, top_k=40, max_tokens=6, seed=i, logprobs=True))
        for i, p in enumerate(PROMPTS)
    ]
    static = HFEngine(
        engines["dynamic"].model, mode="static", kv_bucket=4, max_prefill_tokens=max_prefill_tokens,
        decode_attention=decode_attention,
    )  # fmt: skip
    assert static.decode_attention == decode_attention
    dyn, sta = engines["dynamic"].generate(reqs), static.generate(reqs)
    assert [ids(g) for g in dyn] == [ids(g) for g in sta]
    diff = max(
        abs(a - b) for gd, gs in zip(dyn, sta) for cd, cs in zip(gd, gs) for a, b in zip(cd.logprobs, cs.logprobs)
    )
    assert diff < 1e-4


def test_seeds_reproduce_and_stop_tokens_end_samples(engines: dict[str, HFEngine]) -> None:
    """Same seed -> same samples; a stop id seen at test time ends the sample, kept in token_ids, reason "stop"."""
    engine = engines["dynamic"]
    params = SamplingParams(temperature=1.0, max_tokens=8, seed=7, logprobs=True)
    first = engine.generate([Request(PROMPTS[0], params)])[0][0]
    assert first.token_ids == engine.generate([Request(PROMPTS[0], params)])[0][0].token_ids
    other = engine.generate([Request(PROMPTS[0], SamplingParams(temperature=1.0, max_tokens=8, seed=8))])[0][0]
    assert other.token_ids != first.token_ids
    cut = next(k for k in range(1, 8) if first.token_ids[k] not in first.token_ids[:k])
    stop = SamplingParams(temperature=1.0, max_tokens=8, seed=7, logprobs=True, stop_token_ids=(first.token_ids[cut],))
    stopped = engine.generate([Request(PROMPTS[0], stop)])[0][0]
    assert stopped.finish_reason == "stop"
    assert stopped.token_ids == first.token_ids[: cut + 1]
    assert stopped.logprobs == pytest.approx(first.logprobs[: cut + 1])
    at_cap = SamplingParams(temperature=1.0, max_tokens=cut + 1, seed=7, stop_token_ids=stop.stop_token_ids)
    assert engine.generate([Request(PROMPTS[0], at_cap)])[0][0].finish_reason == "stop"  # stop wins over length


@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_on_finish_reports_each_sample_once_as_it_finishes(engines: dict[str, HFEngine], mode: str) -> None:
    """Every completion reaches `on_finish` once, equal to the returned one; in dynamic mode a sample that stops
    early (a stop token, a smaller max_tokens) is reported while the rest of its batch still decodes."""
    engine = engines[mode]
    sampled = SamplingParams(temperature=1.0, max_tokens=8, seed=7)
    first = engine.generate([Request(PROMPTS[0], sampled)])[0][0]
    stop = SamplingParams(temperature=1.0, max_tokens=8, seed=7, stop_token_ids=(first.token_ids[1],))
    reqs = [Request(PROMPTS[0], stop), Request(PROMPTS[1], SamplingParams(n=2, temperature=0, max_tokens=8))]
    reqs.append(Request(PROMPTS[2], SamplingParams(temperature=0, max_tokens=3)))
    forwards: list[int] = []
    hook = engine.model.register_forward_hook(lambda *args: forwards.append(1))
    seen: list[tuple[int, list[int], int]] = []
    try:
        out = engine.generate(reqs, on_finish=lambda i, c: seen.append((i, c.token_ids, len(forwards))))
    finally:
        hook.remove()
    assert sorted((i, ids) for i, ids, _ in seen) == sorted((i, c.token_ids) for i, g in enumerate(out) for c in g)
    at = {i: calls for i, _, calls in seen}
    if mode == "dynamic":  # the stopped sample (2 tokens) and the short one (3) come before the 8-token ones
        assert at[0] < at[2] < at[1] <= len(forwards)
    assert engine._finish_hook is None


@pytest.mark.parametrize(
    "params",
    [
        SamplingParams(temperature=0.7, max_tokens=6, seed=3, logprobs=True),
        SamplingParams(temperature=1.3, top_k=20, top_p=0.95, max_tokens=6, seed=4, logprobs=True),
        SamplingParams(temperature=0, max_tokens=6, logprobs=True),
    ],
)
def test_logprobs_match_teacher_forcing(engines: dict[str, HFEngine], params: SamplingParams) -> None:
    """Behaviour logprobs = log-softmax(logits / T) after top-k/top-p (vLLM's processed_logprobs); greedy: T = 1."""
    engine = engines["static"]
    out = engine.generate([Request(p, params) for p in PROMPTS[:2]])
    for prompt, (completion,) in zip(PROMPTS, out):
        full = torch.tensor([list(prompt) + completion.token_ids])
        with torch.no_grad():
            logits = engine.model(full).logits[0, len(prompt) - 1 : -1].double()
        logits = logits / (params.temperature or 1.0)
        if params.top_k:
            kth = logits.topk(params.top_k, dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if params.top_p < 1:
            sorted_logits, order = logits.sort(dim=-1, descending=True)
            probs = sorted_logits.softmax(-1)
            drop = (probs.cumsum(-1) - probs) >= params.top_p
            logits = logits.scatter(-1, order, sorted_logits.masked_fill(drop, float("-inf")))
        expected = logits.log_softmax(-1).gather(1, torch.tensor(completion.token_ids)[:, None])[:, 0]
        assert completion.logprobs == pytest.approx(expected.tolist(), abs=1e-4)


def test_load_weights_changes_output_in_place(tiny_model_path: str) -> None:
    engine = HFEngine(tiny_model_path, mode="static", kv_bucket=4)
    req = [Request(PROMPTS[0], GREEDY)]
    before = ids(engine.generate(req)[0])
    original = engine.model.state_dict()["model.embed_tokens.weight"].clone()
    engine.load_weights([("model.embed_tokens.weight", original.flip(0))])
    assert ids(engine.generate(req)[0]) != before
    engine.load_weights([("model.embed_tokens.weight", original)])
    assert ids(engine.generate(req)[0]) == before
    with pytest.raises(ValueError, match="unknown weight"):
        engine.load_weights([("model.no_such.weight", original)])


def test_errors(engines: dict[str, HFEngine]) -> None:
    engine = engines["dynamic"]  # tiny model: 1024 positions
    with pytest.raises(ValueError, match="empty prompt"):
        engine.generate([Request([], GREEDY)])
    with pytest.raises(ValueError, match="context"):
        engine.generate([Request([5] * 1000, GREEDY, prefix_ids=[6] * 30)])
    with pytest.raises(ValueError, match="max_tokens"):
        engine.generate([Request([5] * 1000, SamplingParams(max_tokens=30))])
    with pytest.raises(ValueError, match="mode"):
        HFEngine(engine.model, mode="fast")
    with pytest.raises(ValueError, match="decode_attention"):
        HFEngine(engine.model, mode="static", decode_attention="paged")
    assert HFEngine(engine.model, mode="static").decode_attention == "window"  # auto on CPU: no Triton kernel here
    model = engine.model
    saved = model.generation_config.eos_token_id, model.config.eos_token_id
    model.generation_config.eos_token_id = model.config.eos_token_id = None
    try:
        with pytest.raises(ValueError, match="EOS"):
            HFEngine(model, tokenizer=SimpleNamespace(eos_token_id=None, pad_token_id=0))
    finally:
        model.generation_config.eos_token_id, model.config.eos_token_id = saved


def test_smollm2_greedy_matches_generate_and_continues_prefixes(smollm2_path: str) -> None:
    """Real weights: greedy ids equal HF generate's, padding changes nothing, a cut prefix continues bit-identically."""
    from rollouts.models import load_tokenizer

    engine = HFEngine(smollm2_path)
    tokenizer = load_tokenizer(smollm2_path)
    chat = [{"role": "user", "content": "What is 12 + 30? Answer briefly."}]
    prompt = tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=True, return_dict=False)
    short = tokenizer("Hello", add_special_tokens=False)["input_ids"]
    full, _ = engine.generate([Request(prompt, SamplingParams(temperature=0, max_tokens=6)), Request(short, GREEDY)])
    reference = engine.model.generate(torch.tensor([prompt]), max_new_tokens=6, do_sample=False)[0, len(prompt) :]
    assert full[0].token_ids == reference.tolist()[: len(full[0].token_ids)]
    cut = min(3, len(full[0].token_ids) - 1)
    params = SamplingParams(temperature=0, max_tokens=6 - cut)
    rest = engine.generate([Request(prompt, params, prefix_ids=full[0].token_ids[:cut])])[0][0]
    assert full[0].token_ids[:cut] + rest.token_ids == full[0].token_ids


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["compiled"])
def test_slow_modes_match_dynamic(tiny_model_path: str, mode: str) -> None:
    """torch.compile takes minutes on a CPU."""
    reqs = [Request(p, SamplingParams(temperature=0, max_tokens=6)) for p in PROMPTS]
    dynamic = HFEngine(tiny_model_path, mode="dynamic")
    assert [ids(g) for g in HFEngine(dynamic.model, mode=mode).generate(reqs)] == [
        ids(g) for g in dynamic.generate(reqs)
    ]


def _tiny_cuda_model() -> torch.nn.Module:
    """A random 2-layer float32 Qwen2 built here, without SmolLM2's tokenizer: GPU tests need no GGUF package."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=49152, hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=64, max_position_embeddings=1024, eos_token_id=2, pad_token_id=2,
    )  # fmt: skip
    torch.manual_seed(0)
    return Qwen2ForCausalLM(config).to("cuda").eval()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("mode", ["static", "compiled"])
def test_gpu_modes_match_dynamic(mode: str) -> None:
    """float32 on the GPU: same ids as the dynamic loop, greedy and seeded.

    The model is built here, without SmolLM2's tokenizer, so the test runs on a GPU machine without the GGUF package.
    """
    model = _tiny_cuda_model()
    reqs = [Request(p, SamplingParams(temperature=0, max_tokens=40)) for p in PROMPTS]
    reqs += [Request(p, SamplingParams(n=2, temperature=0.9, max_tokens=40, seed=i)) for i, p in enumerate(PROMPTS)]
    dynamic = HFEngine(model, mode="dynamic")
    fast = HFEngine(model, mode=mode)
    expected = [ids(g) for g in dynamic.generate(reqs)]
    assert [ids(g) for g in fast.generate(reqs)] == expected
    assert [ids(g) for g in fast.generate(reqs)] == expected, "graphs are reused on the second call"


@pytest.mark.parametrize("decode_attention", ["window", "ragged"])
def test_prefix_reuse_copies_cached_kv_and_changes_nothing(tiny_model_path: str, decode_attention: str) -> None:
    """Exits after traces and continuations of unfinished samples copy their cached prefix instead of prefilling it;
    the outputs equal an engine that prefills everything, and a weight update invalidates the cache."""
    reusing = HFEngine(
        tiny_model_path, mode="static", kv_bucket=4, batch_buckets=True, decode_attention=decode_attention
    )
    plain = HFEngine(reusing.model, mode="static", kv_bucket=4, batch_buckets=True, prefix_reuse=False)

    def both(requests: list[Request]) -> list[list]:
        out, expected = reusing.generate(requests), plain.generate(requests)
        assert [ids(g) for g in out] == [ids(g) for g in expected]
        for got, want in zip(out, expected):
            for a, b in zip(got, want):
                assert a.logprobs == pytest.approx(b.logprobs, abs=1e-4)
        return out

    traces = both([Request(p, SamplingParams(temperature=1.0, max_tokens=12, seed=3, logprobs=True)) for p in PROMPTS])
    assert reusing.reused_tokens == 0  # nothing cached yet
    inducer = [50, 51, 52]
    exits = [
        Request(p, SamplingParams(temperature=1.0, max_tokens=6, seed=10 * i + k, logprobs=True), t[:cut] + inducer)
        for i, (p, (trace,)) in enumerate(zip(PROMPTS, traces))
        for k, cut in enumerate((1, 4, len(trace.token_ids)))
        for t in [trace.token_ids]
    ]
    answers = both(exits)  # 9 rows: a bucket of 16, a new workspace filled from the traces' one
    # an exit's prompt + trace prefix is cached, but for a cut at the trace's end, whose last token was never fed
    # back; one prefill covers the longest uncached suffix S for every row, so each row copies all but S tokens
    lengths = [len(r.prompt_ids) + len(r.prefix_ids) for r in exits]
    cached = [
        len(r.prompt_ids) + min(len(r.prefix_ids) - 3, len(t.token_ids) - 1)
        for r, (t,) in zip(exits, [g for g in traces for _ in range(3)])
    ]
    suffix = max(n - c for n, c in zip(lengths, cached))
    assert suffix == 4 and reusing.reused_tokens == sum(n - suffix for n in lengths)
    more = [
        Request(r.prompt_ids, SamplingParams(temperature=1.0, max_tokens=5, seed=99), list(r.prefix_ids) + a.token_ids)
        for r, (a,) in zip(exits, answers)
    ]
    before = reusing.reused_tokens
    both(more)  # longer rows: the workspace grows, its old cache is copied before it goes
    assert reusing.reused_tokens - before == sum(len(r.prompt_ids) + len(r.prefix_ids) - 1 for r in more)
    with torch.no_grad():  # an optimizer step: in place, so version counters change
        reusing.model.model.layers[0].mlp.up_proj.weight.mul_(1.5)
    before = reusing.reused_tokens
    both(more)
    assert reusing.reused_tokens == before


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_prefix_reuse_matches_dynamic() -> None:
    """CUDA graphs + compile: exits cut from traces reuse the traces' cached KV and still equal the dynamic loop.

    Greedy exits: the reused KV was computed by decode steps, not a prefill, so it differs in the last float bits;
    with a random model's near-uniform distribution over 49k tokens that moves a sampled token to its neighbour."""
    model = _tiny_cuda_model()
    dynamic, fast = HFEngine(model, mode="dynamic"), HFEngine(model, mode="compiled")
    traces = [Request(p, SamplingParams(n=2, temperature=0.9, max_tokens=60, seed=i)) for i, p in enumerate(PROMPTS)]
    expected = [ids(g) for g in dynamic.generate(traces)]
    assert [ids(g) for g in fast.generate(traces)] == expected
    exits = [
        Request(r.prompt_ids, SamplingParams(temperature=0, max_tokens=30), t[:cut] + [50, 51, 52])
        for r, group in zip(traces, expected)
        for t in group
        for cut in (5, 33, 60)
    ]
    assert [ids(g) for g in fast.generate(exits)] == [ids(g) for g in dynamic.generate(exits)]
    assert fast.reused_tokens > 0
