"""Greedy speculative generation is token-identical to plain `OVModelForCausalLM.generate()` on the same IR."""

import numpy as np
import openvino as ov
import pytest
from optimum.intel import OVModelForCausalLM

from optimum_dynexec.speculative.modeling import OVSpeculativeModelForCausalLM

from helpers.tiny_causal_lm import (
    architecture_cases, expected_tokens, load_plain, load_speculative, looping_prompt, new_tokens, random_prompt,
    repetitive_prompt, shared_plain,
)


MAX_NEW_TOKENS = 40
# Drafting settings that keep drafting whatever the acceptance, so rejections (and rollbacks) happen at every step,
# next to this package's adaptive defaults.
KEEP_DRAFTING = dict(num_assistant_tokens=4, num_assistant_tokens_schedule="constant", assistant_confidence_threshold=0.0)


def _totals(stats_list):
    drafted = sum(stats.drafted_tokens for stats in stats_list)
    accepted = sum(stats.accepted_tokens for stats in stats_list)
    return drafted, accepted


def _prompts(plain):
    return [random_prompt(0, 5), random_prompt(1, 17), looping_prompt(2), repetitive_prompt(plain, seed=3)]


@pytest.mark.parametrize("architecture, stateful", architecture_cases())
def test_greedy_draft_model_matches_plain(tiny_models, architecture, stateful):
    """A draft model (a different model with the same vocabulary) proposes; output equals plain decoding."""
    target_dir = tiny_models.ir(architecture, stateful)
    plain = shared_plain(target_dir)
    model = load_speculative(target_dir, draft_model=tiny_models.ir("llama-draft"))
    assert isinstance(model, OVSpeculativeModelForCausalLM) and model.stateful == stateful

    stats = []
    for prompt in _prompts(plain):
        expected = expected_tokens(target_dir, prompt, MAX_NEW_TOKENS)
        for settings in ({}, KEEP_DRAFTING):
            assert new_tokens(model, prompt, max_new_tokens=MAX_NEW_TOKENS, **settings) == expected, settings
            stats.append(model.last_decoding_stats)
            assert stats[-1].new_tokens == MAX_NEW_TOKENS
    drafted, accepted = _totals(stats)
    assert drafted > accepted, "no draft was rejected: the rollback path was not exercised"
    if architecture == "llama":  # "llama-draft" is a noisy copy of this target
        assert accepted > 0 and any(0 < length < 4 for s in stats for length in s.accepted_lengths)


@pytest.mark.parametrize("architecture, stateful", architecture_cases())
def test_greedy_prompt_lookup_matches_plain(tiny_models, architecture, stateful):
    target_dir = tiny_models.ir(architecture, stateful)
    plain = shared_plain(target_dir)
    model = load_speculative(target_dir)

    stats = []
    for prompt in _prompts(plain):
        expected = expected_tokens(target_dir, prompt, MAX_NEW_TOKENS)
        for settings in (dict(prompt_lookup_num_tokens=4), dict(prompt_lookup_num_tokens=6, **KEEP_DRAFTING)):
            assert new_tokens(model, prompt, max_new_tokens=MAX_NEW_TOKENS, **settings) == expected, settings
            stats.append(model.last_decoding_stats)
    drafted, accepted = _totals(stats)
    assert accepted > 0, "prompt lookup never had a draft accepted"
    assert drafted > accepted, "no lookup draft was rejected: the rollback path was not exercised"


@pytest.mark.parametrize("drafting", ["draft_model", "prompt_lookup"])
@pytest.mark.parametrize("stateful", [True, False], ids=["stateful", "stateless"])
def test_consecutive_calls_see_no_leftover_state(tiny_models, stateful, drafting):
    """Back-to-back generations on one model give what each gives on a fresh model."""
    target_dir = tiny_models.ir("llama", stateful)
    plain = shared_plain(target_dir)
    prompts = [random_prompt(3, 9), repetitive_prompt(plain, seed=4), random_prompt(5, 30)]
    kwargs = dict(max_new_tokens=MAX_NEW_TOKENS, **KEEP_DRAFTING)
    if drafting == "draft_model":
        load = lambda: load_speculative(target_dir, draft_model=tiny_models.ir("llama-draft"))  # noqa: E731
    else:
        load = lambda: load_speculative(target_dir)  # noqa: E731
        kwargs["prompt_lookup_num_tokens"] = 4

    alone = []
    for prompt in prompts:
        model = load()
        alone.append(new_tokens(model, prompt, **kwargs))
        assert alone[-1] == new_tokens(plain, prompt, max_new_tokens=MAX_NEW_TOKENS)

    model = load()
    for prompt, expected in zip(prompts + prompts[::-1], alone + alone[::-1]):
        assert new_tokens(model, prompt, **kwargs) == expected
    # And mixing in a plain (non-speculative) call on the same compiled model changes nothing either.
    assert new_tokens(model, prompts[0], max_new_tokens=MAX_NEW_TOKENS) == alone[0]
    assert new_tokens(model, prompts[1], **kwargs) == alone[1]


def test_export_through_speculative_class(tiny_models):
    """`export=True, stateful=False` through our class (phi3: optimum-intel swaps in `OVPhi3ForCausalLM`)."""
    from optimum.intel.openvino.modeling_decoder import OVPhi3ForCausalLM

    draft = load_plain(tiny_models.ir("llama-draft"))
    model = load_speculative(tiny_models.checkpoint("phi3"), export=True, stateful=False, draft_model=draft)
    assert isinstance(model, OVSpeculativeModelForCausalLM) and isinstance(model, OVPhi3ForCausalLM)
    assert not model.stateful and model.draft_model is draft

    plain_dir = tiny_models.ir("phi3", stateful=False)
    assert type(shared_plain(plain_dir)) is OVPhi3ForCausalLM
    for prompt in _prompts(shared_plain(plain_dir))[1::2]:
        expected = expected_tokens(plain_dir, prompt, MAX_NEW_TOKENS)
        assert new_tokens(model, prompt, max_new_tokens=MAX_NEW_TOKENS, **KEEP_DRAFTING) == expected
        assert model.last_decoding_stats.drafted_tokens > model.last_decoding_stats.accepted_tokens
        assert new_tokens(model, prompt, max_new_tokens=MAX_NEW_TOKENS, prompt_lookup_num_tokens=4) == expected


@pytest.mark.parametrize("stateful", [True, False], ids=["stateful", "stateless"])
def test_long_generation_past_the_initial_cache_bookkeeping(tiny_models, stateful):
    """Past 1024 cached tokens (rolled-back slots included), where the session's slot arrays and the draft's token
    buffer grow."""
    target_dir = tiny_models.ir("llama", stateful)
    plain = shared_plain(target_dir)
    model = load_speculative(target_dir, draft_model=tiny_models.ir("llama-draft"))
    prompt = random_prompt(8, 960)
    expected = new_tokens(plain, prompt, max_new_tokens=96)
    assert new_tokens(model, prompt, max_new_tokens=96, **KEEP_DRAFTING) == expected
    stats = model.last_decoding_stats
    assert stats.drafted_tokens - stats.accepted_tokens > 0


def test_stateless_draft_at_the_cpus_default_precision(tiny_models):
    """A stateless draft compiled at the CPU's default precision: on bf16 CPUs optimum-intel makes its past
    key/value ports bf16, which numpy cannot hold, so the session must bind them retyped."""
    target_dir = tiny_models.ir("llama")
    draft = OVModelForCausalLM.from_pretrained(tiny_models.ir("llama-draft", stateful=False))  # default ov_config
    model = load_speculative(target_dir, draft_model=draft)
    for prompt in _prompts(shared_plain(target_dir))[:2]:
        expected = expected_tokens(target_dir, prompt, MAX_NEW_TOKENS)
        assert new_tokens(model, prompt, max_new_tokens=MAX_NEW_TOKENS, **KEEP_DRAFTING) == expected
        assert model.last_decoding_stats.accepted_tokens > 0



def test_attention_window_is_read_from_each_family_config():
    """The window the sessions keep exact: set where some layer attends within a sliding window, `None` otherwise
    (a wrong `None` on a windowed model gives silently different output past the window; see the `mistral-window`
    cases above)."""
    import transformers

    from optimum_dynexec.speculative.kv_cache import attention_window

    assert attention_window(transformers.MistralConfig()) == 4096  # Mistral's default window
    assert attention_window(transformers.MistralConfig(sliding_window=None)) is None
    assert attention_window(transformers.LlamaConfig()) is None
    assert attention_window(transformers.Phi3Config()) is None
    assert attention_window(transformers.Qwen2Config(sliding_window=8)) is None  # `use_sliding_window` is off
    mixed = transformers.Qwen2Config(use_sliding_window=True, sliding_window=8, num_hidden_layers=2, max_window_layers=1)
    assert attention_window(mixed) == 8  # one full layer, one windowed
    full = transformers.Qwen2Config(use_sliding_window=True, sliding_window=8, num_hidden_layers=2, max_window_layers=2)
    assert attention_window(full) is None
    assert attention_window(transformers.GPTNeoConfig(window_size=16)) == 16  # its "local" layers


def test_windowed_stateful_session_drops_masked_slots_once_past_the_window(tiny_models):
    """Within the window, rejected tokens stay masked in the stateful cache; once the sequence outgrows the window,
    the next call finds the cache rewritten without them, and its logits are a fresh run's."""
    from optimum_dynexec.speculative.kv_cache import DecoderSession

    target_dir = tiny_models.ir("mistral-window")
    session = DecoderSession.for_model(load_plain(target_dir))
    assert session.window == 8
    tokens = random_prompt(4, 12)[0].numpy()
    session.append(tokens[:5])
    session.append(tokens[5:7])
    session.rollback(6)  # 1 masked slot
    session.append(tokens[6:7])  # 8 slots: still within the window
    assert session.masked_slots == 1
    logits = session.append(tokens[7:12]).copy()  # 13 slots with the masked one: past the window
    assert session.masked_slots == 0 and session.length == 12

    fresh = DecoderSession.for_model(load_plain(target_dir))
    assert np.allclose(logits, fresh.append(tokens[:12])[7:], atol=1e-5)


def test_a_stateless_ir_that_rounds_its_cache_is_flagged_at_load(tiny_models, tmp_path, caplog):
    """optimum-intel saves a stateless model loaded at bf16 with its cache rounded to bf16 inside the graph, where
    speculation can differ from plain decoding at near-ties: loading such an IR warns and says how to re-export.
    The test suite's IRs, and this package's own export, keep an f32 cache."""
    from optimum_dynexec.speculative.kv_cache import cache_rounded_to_16_bits

    rounding = OVModelForCausalLM.from_pretrained(tiny_models.checkpoint("llama"), export=True, stateful=False,
                                                  compile=False, ov_config={"INFERENCE_PRECISION_HINT": "bf16"})
    rounding.save_pretrained(tmp_path / "rounding")
    with caplog.at_level("WARNING"):
        model = load_speculative(tmp_path / "rounding")
    assert len(cache_rounded_to_16_bits(model.model)) == 4  # 2 layers x (key, value)
    assert "rounds its KV cache to 16 bits" in caplog.text and "export=True" in caplog.text

    caplog.clear()
    with caplog.at_level("WARNING"):
        plain_ir = load_speculative(tiny_models.ir("llama", stateful=False))
    assert not cache_rounded_to_16_bits(plain_ir.model) and "rounds its KV cache" not in caplog.text
    ours = OVSpeculativeModelForCausalLM.from_pretrained(tiny_models.checkpoint("llama"), export=True, stateful=False,
                                                         compile=False)
    ours.save_pretrained(tmp_path / "ours")
    assert not cache_rounded_to_16_bits(ov.Core().read_model(tmp_path / "ours" / "openvino_model.xml"))
    assert len(cache_rounded_to_16_bits(ov.Core().read_model(tmp_path / "rounding" / "openvino_model.xml"))) == 4
