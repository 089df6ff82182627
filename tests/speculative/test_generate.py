"""`generate()` arguments with speculation: batches, streamers, EOS, stopping criteria, lengths, bad input."""

import pytest
import torch
from transformers import StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from optimum_dynexec.speculative import decoding

from helpers.tiny_causal_lm import (
    PAD_ID, load_plain, load_speculative, new_tokens, random_prompt, repetitive_prompt, shared_plain,
)


MAX_NEW_TOKENS = 32


@pytest.fixture(scope="module")
def llama(tiny_models):
    target_dir = tiny_models.ir("llama")
    return target_dir, tiny_models.ir("llama-draft"), shared_plain(target_dir)


@pytest.fixture
def accept_spy(monkeypatch):
    """Records `(draft_tokens, accepted_length)` of every verification of a drafted chain."""
    calls = []
    original = decoding.accept

    def spy(proposal, target_logits, sampling, rng):
        path, next_token = original(proposal, target_logits, sampling, rng)
        if len(proposal):
            calls.append((proposal.tokens.tolist(), len(path)))
        return path, next_token

    monkeypatch.setattr(decoding, "accept", spy)
    return calls


def _stopped_inside_an_accepted_draft(calls, token) -> bool:
    """Whether `token` was accepted from a draft with more accepted drafts after it (generation must stop there
    and drop those)."""
    return any(token in drafts[: accepted - 1] for drafts, accepted in calls)


# ------------------------------------------------------------------------------------------------------ batches

@pytest.mark.parametrize("drafting", ["draft_model", "prompt_lookup"])
def test_batch_of_left_padded_prompts_equals_plain(llama, drafting):
    target_dir, draft_dir, plain = llama
    model = load_speculative(target_dir, draft_model=draft_dir if drafting == "draft_model" else None)
    short, long = random_prompt(30, 5), random_prompt(31, 11)
    input_ids = torch.full((2, 11), PAD_ID, dtype=torch.long)
    attention_mask = torch.zeros((2, 11), dtype=torch.long)
    input_ids[0, -5:], attention_mask[0, -5:] = short[0], 1
    input_ids[1], attention_mask[1] = long[0], 1
    extra = dict(prompt_lookup_num_tokens=4) if drafting == "prompt_lookup" else {}

    expected = plain.generate(input_ids, attention_mask=attention_mask, max_new_tokens=MAX_NEW_TOKENS, do_sample=False)
    new_tokens(model, short, max_new_tokens=4, **extra)  # a speculative call first
    assert model.last_decoding_stats is not None
    output = model.generate(input_ids, attention_mask=attention_mask, max_new_tokens=MAX_NEW_TOKENS, do_sample=False,
                            **extra)
    assert torch.equal(output, expected)
    # The batch was decoded plainly: no speculation statistics, in particular not the previous call's.
    assert model.last_decoding_stats is None
    # The rows are what each prompt gives alone.
    assert output[0, 11:].tolist() == new_tokens(plain, short, max_new_tokens=MAX_NEW_TOKENS)


def test_left_padded_single_prompt_equals_plain(llama):
    target_dir, draft_dir, plain = llama
    model = load_speculative(target_dir, draft_model=draft_dir)
    prompt = random_prompt(41, 6)
    input_ids = torch.cat([torch.full((1, 3), PAD_ID), prompt], dim=1)
    attention_mask = torch.cat([torch.zeros((1, 3), dtype=torch.long), torch.ones_like(prompt)], dim=1)
    kwargs = dict(attention_mask=attention_mask, max_new_tokens=MAX_NEW_TOKENS, do_sample=False)
    output = model.generate(input_ids, **kwargs)
    assert torch.equal(output, plain.generate(input_ids, **kwargs))
    assert output[0, 9:].tolist() == new_tokens(plain, prompt, max_new_tokens=MAX_NEW_TOKENS)
    assert model.last_decoding_stats.drafted_tokens > 0


def test_assistant_model_per_call(llama, tiny_models):
    """`assistant_model=` drafts for one call, in place of the attached draft (here: none, then another one)."""
    target_dir, draft_dir, plain = llama
    assistant = load_plain(draft_dir)
    prompts = [random_prompt(42, 7), repetitive_prompt(plain, seed=43)]
    for model in (load_speculative(target_dir), load_speculative(target_dir, draft_model=tiny_models.ir("qwen2"))):
        accepted = 0
        for prompt in prompts:
            expected = new_tokens(plain, prompt, max_new_tokens=MAX_NEW_TOKENS)
            assert new_tokens(model, prompt, max_new_tokens=MAX_NEW_TOKENS, assistant_model=assistant) == expected
            accepted += model.last_decoding_stats.accepted_tokens
        assert accepted > 0  # the noisy copy drafted, not the unrelated attached draft
    assert new_tokens(model, prompts[0], max_new_tokens=MAX_NEW_TOKENS) == new_tokens(
        plain, prompts[0], max_new_tokens=MAX_NEW_TOKENS)


def test_num_return_sequences(llama):
    target_dir, draft_dir, plain = llama
    model = load_speculative(target_dir, draft_model=draft_dir)
    prompt = random_prompt(32, 6)
    kwargs = dict(attention_mask=torch.ones_like(prompt), max_new_tokens=8, do_sample=True, num_return_sequences=3)
    assert model.generate(prompt, **kwargs).shape == plain.generate(prompt, **kwargs).shape == (3, 14)


def test_return_dict_in_generate(llama):
    target_dir, draft_dir, plain = llama
    model = load_speculative(target_dir, draft_model=draft_dir)
    prompt = random_prompt(33, 6)
    kwargs = dict(attention_mask=torch.ones_like(prompt), max_new_tokens=12, do_sample=False,
                  return_dict_in_generate=True)
    assert torch.equal(model.generate(prompt, **kwargs).sequences, plain.generate(prompt, **kwargs).sequences)


# ------------------------------------------------------------------------------------------ streaming, stopping

class CollectingStreamer(BaseStreamer):
    def __init__(self):
        self.puts, self.ended = [], 0

    def put(self, value):
        assert not self.ended
        self.puts.append(value.tolist())

    def end(self):
        self.ended += 1


@pytest.mark.parametrize("drafting", ["draft_model", "prompt_lookup"])
def test_streamer_receives_the_tokens_in_order(llama, drafting):
    target_dir, draft_dir, plain = llama
    model = load_speculative(target_dir, draft_model=draft_dir if drafting == "draft_model" else None)
    prompt = repetitive_prompt(plain, seed=34) if drafting == "prompt_lookup" else random_prompt(34, 7)
    extra = dict(prompt_lookup_num_tokens=6) if drafting == "prompt_lookup" else {}

    expected_streamer, streamer = CollectingStreamer(), CollectingStreamer()
    expected = new_tokens(plain, prompt, max_new_tokens=MAX_NEW_TOKENS, streamer=expected_streamer)
    output = new_tokens(model, prompt, max_new_tokens=MAX_NEW_TOKENS, streamer=streamer, **extra)
    assert output == expected
    assert model.last_decoding_stats.accepted_tokens > 0
    assert streamer.ended == 1
    assert streamer.puts[0] == prompt.tolist()  # the prompt first, as transformers does
    assert [token for put in streamer.puts[1:] for token in put] == output
    assert streamer.puts == expected_streamer.puts


def test_eos_inside_an_accepted_draft_stops_where_plain_stops(llama, accept_spy):
    target_dir, _, plain = llama
    model = load_speculative(target_dir)
    prompt = repetitive_prompt(plain, seed=35)
    unrestricted = new_tokens(plain, prompt, max_new_tokens=MAX_NEW_TOKENS)
    tried = []
    for token in dict.fromkeys(unrestricted[2:]):  # candidate EOS ids, in order of first appearance
        accept_spy.clear()
        expected = new_tokens(plain, prompt, max_new_tokens=MAX_NEW_TOKENS, eos_token_id=token)
        output = new_tokens(model, prompt, max_new_tokens=MAX_NEW_TOKENS, eos_token_id=token, prompt_lookup_num_tokens=8)
        assert output == expected
        assert output[-1] == token and len(output) < MAX_NEW_TOKENS
        tried.append(token)
        if _stopped_inside_an_accepted_draft(accept_spy, token):
            break
    else:
        pytest.fail(f"no EOS candidate among {tried} was accepted in the middle of a draft")


def test_several_eos_ids(llama):
    target_dir, draft_dir, plain = llama
    model = load_speculative(target_dir, draft_model=draft_dir)
    prompt = random_prompt(36, 9)
    unrestricted = new_tokens(plain, prompt, max_new_tokens=MAX_NEW_TOKENS)
    eos = [unrestricted[20], unrestricted[9]]
    expected = new_tokens(plain, prompt, max_new_tokens=MAX_NEW_TOKENS, eos_token_id=eos)
    assert new_tokens(model, prompt, max_new_tokens=MAX_NEW_TOKENS, eos_token_id=eos) == expected
    assert len(expected) <= 10


class StopAfter(StoppingCriteria):
    """Stops once `count` tokens follow the prompt."""

    def __init__(self, prompt_length: int, count: int):
        self.stop_length = prompt_length + count

    def __call__(self, input_ids, scores, **kwargs):
        return torch.full((input_ids.shape[0],), input_ids.shape[1] >= self.stop_length, dtype=torch.bool)


def _tokens_dropped_after_the_stop(stats) -> int:
    """Tokens the target calls produced (prefill token, kept drafts and the target's token of each call) that were
    not emitted because generation stopped: 2 or more means it stopped inside a block of accepted drafts."""
    plain_steps = stats.target_calls - 1 - len(stats.accepted_lengths)
    produced = 1 + sum(length + 1 for length in stats.accepted_lengths) + plain_steps
    return produced - stats.new_tokens


def test_stopping_criteria_stop_where_plain_stops(llama):
    target_dir, _, plain = llama
    model = load_speculative(target_dir)
    prompt = repetitive_prompt(plain, seed=37)
    dropped = []
    for count in (1, 2, 3, 7, 11):
        criteria = StoppingCriteriaList([StopAfter(prompt.shape[1], count)])
        expected = new_tokens(plain, prompt, max_new_tokens=MAX_NEW_TOKENS, stopping_criteria=criteria)
        assert len(expected) == count
        output = new_tokens(model, prompt, max_new_tokens=MAX_NEW_TOKENS, stopping_criteria=criteria,
                            prompt_lookup_num_tokens=8)
        assert output == expected, count
        dropped.append(_tokens_dropped_after_the_stop(model.last_decoding_stats))
    assert max(dropped) >= 2, "the criteria never fired inside a block of accepted drafts"


@pytest.mark.parametrize("drafting", ["draft_model", "prompt_lookup"])
def test_max_new_tokens_is_honoured_exactly(llama, drafting):
    target_dir, draft_dir, plain = llama
    model = load_speculative(target_dir, draft_model=draft_dir if drafting == "draft_model" else None)
    prompt = repetitive_prompt(plain, seed=38)
    extra = dict(prompt_lookup_num_tokens=8) if drafting == "prompt_lookup" else {}
    expected = new_tokens(plain, prompt, max_new_tokens=40)
    for count in (1, 2, 3, 5, 9, 17, 40):
        assert new_tokens(model, prompt, max_new_tokens=count, **extra) == expected[:count], count
    # `max_length` counts the prompt.
    output = new_tokens(model, prompt, max_length=prompt.shape[1] + 13, **extra)
    assert output == expected[:13]


# ---------------------------------------------------------------------------------------------------- bad input

def test_draft_with_another_vocabulary_is_refused(llama, tiny_models):
    target_dir, _, _ = llama
    other_vocabulary = tiny_models.ir("small-vocab")
    with pytest.raises(ValueError, match="vocabulary"):
        load_speculative(target_dir, draft_model=other_vocabulary)
    model = load_speculative(target_dir)
    with pytest.raises(ValueError, match="vocabulary"):
        model.generate(random_prompt(39, 5), max_new_tokens=4, assistant_model=load_plain(other_vocabulary))


@pytest.mark.parametrize("arguments, error, message", [
    (dict(num_assistant_tokens_schedule="bogus"), ValueError, "num_assistant_tokens_schedule"),
    (dict(num_assistant_tokens_schedule="bogus", prompt_lookup_num_tokens=4), ValueError,
     "num_assistant_tokens_schedule"),
    (dict(num_assistant_tokens=0), ValueError, "`num_assistant_tokens` must be an integer from 1"),
    (dict(prompt_lookup_num_tokens=0), ValueError, "`prompt_lookup_num_tokens` must be an integer from 1"),
    (dict(num_assistant_tokens=10000), ValueError, "`num_assistant_tokens` must be an integer from 1"),
    (dict(num_assistant_tokens=2.5), ValueError, "`num_assistant_tokens` must be an integer from 1"),
    (dict(prompt_lookup_num_tokens=4, max_matching_ngram_size=0), ValueError, "max_matching_ngram_size"),
    (dict(prompt_lookup_num_tokens=4, assistant_model="draft"), ValueError, "not both"),
    (dict(assistant_model="a-model-id"), TypeError, "OVModelForCausalLM"),
    (dict(assistant_model=torch.nn.Linear(2, 2)), TypeError, "OVModelForCausalLM"),
])
def test_bad_generate_arguments_raise_clear_errors(llama, arguments, error, message):
    target_dir, draft_dir, _ = llama
    model = load_speculative(target_dir, draft_model=draft_dir)
    with pytest.raises(error, match=message):
        model.generate(random_prompt(40, 5), max_new_tokens=4, do_sample=False, **arguments)


def test_draft_model_folder_without_a_model_is_refused(llama, tmp_path):
    target_dir, _, _ = llama
    with pytest.raises(ValueError, match="neither an OpenVINO model"):
        load_speculative(target_dir, draft_model=tmp_path)
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(ValueError, match="neither an OpenVINO model"):
        load_speculative(target_dir, draft_model=tmp_path)


def test_draft_runs_one_token_per_call_after_the_prompt(llama, monkeypatch):
    """After the prompt, the draft is only ever run on single tokens: drafting feeds one, and catching up after a
    fully accepted draft (the last draft token + the target's bonus) feeds them one call each, because OpenVINO
    re-plans a request whose input shape changes."""
    from optimum_dynexec.speculative.paged_session import PagedDecoderSession, decoder_session_for

    target_dir, _, plain = llama
    model = load_speculative(target_dir, draft_model=target_dir)  # its own draft: every draft is fully accepted
    draft_session = decoder_session_for(model.draft_model)  # the session the draft drafts on
    assert isinstance(draft_session, PagedDecoderSession)
    lengths = []
    original = PagedDecoderSession.append

    def spy(session, tokens, *args, **kwargs):
        if session is draft_session:
            lengths.append(len(tokens))
        return original(session, tokens, *args, **kwargs)

    monkeypatch.setattr(PagedDecoderSession, "append", spy)
    prompt = random_prompt(3, 9)
    expected = new_tokens(plain, prompt, max_new_tokens=MAX_NEW_TOKENS)
    assert new_tokens(model, prompt, max_new_tokens=MAX_NEW_TOKENS, num_assistant_tokens=3,
                      num_assistant_tokens_schedule="constant", assistant_confidence_threshold=0.0) == expected
    stats = model.last_decoding_stats
    assert any(length == 3 for length in stats.accepted_lengths), "no draft was fully accepted"
    assert lengths[0] == prompt.shape[1] + 1  # the prompt and the target's first token
    assert set(lengths[1:]) == {1}
