"""The paged-attention session speculation runs on: which graphs get it, and a cache that forgets exactly."""

import numpy as np
import openvino as ov
import pytest

from helpers.tiny_causal_lm import EXACT_PRECISION_CONFIG, TEST_OV_CONFIG, load_speculative, random_prompt
from optimum_dynexec.speculative.kv_cache import DecoderSession
from optimum_dynexec.speculative.paged_session import PagedDecoderSession, decoder_session_for, paged_graph


def _compiled_paged(ir) -> ov.CompiledModel:
    core = ov.Core()
    graph = paged_graph(core.read_model(ir / "openvino_model.xml"))
    assert graph is not None
    return core.compile_model(graph, "CPU", {**EXACT_PRECISION_CONFIG, **TEST_OV_CONFIG})


def _tokens(seed: int, count: int) -> np.ndarray:
    return random_prompt(seed, count)[0].numpy()


@pytest.fixture(scope="module")
def paged_llama(tiny_models):
    return _compiled_paged(tiny_models.ir("llama"))


def test_rolled_back_tokens_are_forgotten_exactly(paged_llama):
    """Drafts appended and rolled back leave no trace: the next call's logits equal a session that never saw them."""
    prefix, rejected, accepted = _tokens(0, 12), _tokens(1, 5), _tokens(2, 4)
    speculating = PagedDecoderSession(paged_llama)
    speculating.append(prefix)
    speculating.append(rejected)
    speculating.rollback(len(prefix) + 2)  # two of the drafts were kept
    assert speculating.length == len(prefix) + 2 and speculating.masked_slots == 0
    logits = speculating.append(accepted).copy()

    fresh = PagedDecoderSession(paged_llama)
    fresh.append(np.concatenate([prefix, rejected[:2]]))
    np.testing.assert_allclose(logits, fresh.append(accepted), rtol=1e-5, atol=1e-5)


def test_the_cache_grows_and_keeps_what_it_holds(paged_llama):
    """A session that starts with room for one block and doubles as the sequence grows computes what one with room
    for the whole sequence computes."""
    sequence = _tokens(3, 150)
    small, large = PagedDecoderSession(paged_llama, capacity=1), PagedDecoderSession(paged_llama, capacity=1024)
    for start in range(0, len(sequence), 10):
        chunk = sequence[start : start + 10]
        np.testing.assert_allclose(small.append(chunk), large.append(chunk), rtol=1e-5, atol=1e-5)
    assert small.length == large.length == len(sequence)


def test_last_logits_only_is_the_last_row(paged_llama):
    tokens = _tokens(4, 9)
    every_row = PagedDecoderSession(paged_llama).append(tokens).copy()
    last = PagedDecoderSession(paged_llama).append(tokens, last_logits_only=True)
    assert last.shape == (1, every_row.shape[1])
    np.testing.assert_allclose(last[0], every_row[-1], rtol=1e-5, atol=1e-5)


def test_rollback_beyond_the_sequence_is_refused(paged_llama):
    session = PagedDecoderSession(paged_llama)
    session.append(_tokens(5, 4))
    with pytest.raises(ValueError, match="roll back to length 5"):
        session.rollback(5)


@pytest.mark.parametrize("name, stateful, paged", [
    ("llama", True, True),
    ("mistral-window", True, True),  # the rewrite keeps the sliding window
    ("llama", False, False),  # stateless: no variables to rewrite; slicing its cache is free anyway
    ("mpt", True, False),  # no `position_ids`: positions counted by cache slot
])
def test_which_graphs_speculate_on_a_paged_session(tiny_models, name, stateful, paged):
    model = load_speculative(tiny_models.ir(name, stateful=stateful))
    session = decoder_session_for(model)
    assert isinstance(session, PagedDecoderSession if paged else DecoderSession)
    assert decoder_session_for(model) is session  # kept while the model's graph and settings stay


def test_a_new_prompt_keeps_what_the_cache_holds_of_it(paged_llama):
    """`start` keeps the longest common prefix with the held sequence (never the prompt's last token), and what is
    computed after it equals a fresh prefill of the whole prompt."""
    shared, first_rest, second_rest = _tokens(6, 7), _tokens(7, 5), _tokens(8, 4)
    session = PagedDecoderSession(paged_llama)
    first = np.concatenate([shared, first_rest])
    assert session.start(first) == 0
    session.append(first)
    second = np.concatenate([shared, second_rest])
    assert session.start(second) == len(shared)
    logits = session.append(second[len(shared):], last_logits_only=True).copy()
    np.testing.assert_allclose(logits, PagedDecoderSession(paged_llama).append(second, last_logits_only=True),
                               rtol=1e-5, atol=1e-5)
    assert session.start(second) == len(second) - 1  # the same prompt again: all but its last token
    assert session.start(second[:1]) == 0


def test_generations_that_share_a_prompt_prefix_match_plain_decoding(tiny_models):
    """A chat's next turn reuses the cache of the previous one, and the output stays plain greedy decoding's."""
    import torch

    from helpers.tiny_causal_lm import expected_tokens

    path = tiny_models.ir("llama")
    model = load_speculative(path)
    turn = random_prompt(9, 10)
    first = model.generate(turn, attention_mask=torch.ones_like(turn), max_new_tokens=12, do_sample=False,
                           prompt_lookup_num_tokens=3)
    assert first[0, turn.shape[1]:].tolist() == expected_tokens(path, turn, 12)
    follow_up = torch.cat([first, random_prompt(10, 5)], dim=1)
    # What the next call keeps: the whole first turn but its last token, which no call has run yet.
    assert decoder_session_for(model).start(follow_up[0].numpy()) == first.shape[1] - 1
    second = model.generate(follow_up, attention_mask=torch.ones_like(follow_up), max_new_tokens=12, do_sample=False,
                            prompt_lookup_num_tokens=3)
    assert second[0, follow_up.shape[1]:].tolist() == expected_tokens(path, follow_up, 12)


@pytest.mark.parametrize("pad", [True, False])
def test_short_calls_padded_to_the_verification_size_score_only_their_own_tokens(paged_llama, pad):
    """After a 6-token verification, single-token calls run 6 rows (one input shape); what they return and keep is
    exactly what the unpadded sequence gives."""
    prefix, draft, steps = _tokens(11, 8), _tokens(12, 6), _tokens(13, 3)
    session = PagedDecoderSession(paged_llama, pad=pad)
    session.append(prefix, last_logits_only=True)
    session.append(draft)
    session.rollback(len(prefix) + 1)
    for index, token in enumerate(steps):
        logits = session.append(steps[index : index + 1])
        assert logits.shape[0] == 1 and session.length == len(prefix) + 2 + index
        reference = PagedDecoderSession(paged_llama).append(
            np.concatenate([prefix, draft[:1], steps[: index + 1]]), last_logits_only=True)
        np.testing.assert_allclose(logits, reference, rtol=1e-5, atol=1e-5)
    assert session.start(np.concatenate([prefix, draft[:1], steps, [7]])) == len(prefix) + 1 + len(steps)


def test_the_plain_graph_is_released_while_speculating_and_compiled_again_for_a_fallback(tiny_models):
    """One compiled copy of the weights while speculating; a call that falls back to plain decoding (a batch) still
    decodes as plain and keeps its graph from then on."""
    import torch

    from helpers.tiny_causal_lm import expected_tokens

    path = tiny_models.ir("llama")
    model = load_speculative(path)
    assert model.request is not None  # compiled at load, as optimum-intel does
    prompt = random_prompt(14, 9)
    model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=6, do_sample=False,
                   prompt_lookup_num_tokens=3)
    assert model.request is None
    batch = torch.cat([prompt, prompt])
    output = model.generate(batch, attention_mask=torch.ones_like(batch), max_new_tokens=6, do_sample=False,
                            prompt_lookup_num_tokens=3)
    assert output[0, prompt.shape[1]:].tolist() == expected_tokens(path, prompt, 6)
    assert model.request is not None
    model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=6, do_sample=False,
                   prompt_lookup_num_tokens=3)
    assert model.request is not None  # released once only: no recompiling back and forth
