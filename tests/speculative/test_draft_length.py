"""The adaptive number of drafted tokens (`DraftLength`), alone and end to end."""

import pytest

from optimum_dynexec.speculative.drafters import DraftLength

from helpers.tiny_causal_lm import load_speculative, new_tokens, random_prompt, repetitive_prompt, shared_plain


def _lengths(draft_length: DraftLength, steps: int) -> list:
    return [draft_length.next_length() for _ in range(steps)]


def _reject_until_zero(draft_length: DraftLength) -> None:
    while draft_length.current > 0:
        proposed = draft_length.next_length()
        draft_length.update(proposed, 0)


def test_grows_on_full_acceptance_up_to_the_maximum():
    draft_length = DraftLength(2, maximum=7)
    seen = []
    for _ in range(5):
        proposed = draft_length.next_length()
        seen.append(proposed)
        draft_length.update(proposed, proposed)
    assert seen == [2, 4, 6, 7, 7]


def test_shrinks_to_zero_on_rejections():
    draft_length = DraftLength(4, maximum=16)
    seen = []
    for _ in range(4):
        proposed = draft_length.next_length()
        seen.append(proposed)
        draft_length.update(proposed, proposed // 2)  # partial acceptance counts as a rejection
    assert seen == [4, 3, 2, 1]
    assert draft_length.current == 0
    assert _lengths(draft_length, 3) == [0, 0, 0], "at zero, the loop decodes plainly"


def test_probes_back_from_zero_with_a_growing_interval():
    draft_length = DraftLength(1, maximum=16)
    draft_length.update(draft_length.next_length(), 0)
    # One probe of one token every 4 steps; each failed probe doubles the interval, up to 64.
    intervals = []
    for _ in range(7):
        lengths = []
        while not lengths or lengths[-1] == 0:
            lengths.append(draft_length.next_length())
        assert lengths[-1] == 1
        intervals.append(len(lengths))
        draft_length.update(1, 0)
    assert intervals == [4, 8, 16, 32, 64, 64, 64]
    # A successful probe resumes drafting and grows again.
    assert _lengths(draft_length, 63) == [0] * 63
    assert draft_length.next_length() == 1
    draft_length.update(1, 1)
    assert draft_length.next_length() == 1
    draft_length.update(1, 1)
    assert draft_length.next_length() == 3
    # ... and the probe interval is back to its start.
    _reject_until_zero(draft_length)
    assert _lengths(draft_length, 4) == [0, 0, 0, 1]


def test_plain_steps_do_not_count_as_feedback():
    draft_length = DraftLength(3, maximum=16)
    draft_length.update(0, 0)
    assert draft_length.next_length() == 3


def test_constant_never_changes():
    draft_length = DraftLength(5, maximum=16, schedule="constant")
    for accepted in (5, 5, 0, 0, 0, 0, 0, 0, 2):
        assert draft_length.next_length() == 5
        draft_length.update(5, accepted)
    draft_length.begin()
    assert draft_length.next_length() == 5


def test_heuristic_persists_across_calls_and_transient_resets():
    persistent = DraftLength(4, maximum=16, schedule="heuristic")
    transient = DraftLength(4, maximum=16, schedule="heuristic_transient")
    for draft_length in (persistent, transient):
        draft_length.begin()
        draft_length.update(draft_length.next_length(), 4)  # grows to 6
        _reject_until_zero(draft_length)
        _lengths(draft_length, 2)  # two plain steps into a probe interval
        draft_length.begin()  # the next generate() call
    assert persistent.next_length() == 0  # transformers' "heuristic": the length carries over
    assert transient.next_length() == 4
    # The transient schedule forgets everything, including how far into a probe interval the last call was.
    _reject_until_zero(transient)
    assert _lengths(transient, 4) == [0, 0, 0, 1]


@pytest.mark.parametrize("bad", [dict(schedule="bogus"), dict(initial=0), dict(initial=2.5)])
def test_bad_settings_raise(bad):
    arguments = dict(initial=4, maximum=16, schedule="heuristic")
    arguments.update(bad)
    with pytest.raises(ValueError):
        DraftLength(**arguments)


# ------------------------------------------------------------------------------------------------- end to end

def test_speculation_backs_off_on_unpredictable_text(tiny_models):
    """A draft that does not know the target: the cost falls back to plain decoding, one target call per token,
    and drafting (which costs draft-model calls) almost stops."""
    model = load_speculative(tiny_models.ir("qwen2"), draft_model=tiny_models.ir("llama-draft"))
    totals = dict(new_tokens=0, target_calls=0, drafted_tokens=0, accepted_tokens=0)
    for seed in range(3):
        new_tokens(model, random_prompt(20 + seed, 12), max_new_tokens=64)
        for name in totals:
            totals[name] += getattr(model.last_decoding_stats, name)
    assert totals["new_tokens"] == 3 * 64
    assert totals["accepted_tokens"] < 0.1 * totals["drafted_tokens"], "this draft should not predict this target"
    assert totals["target_calls"] >= 0.9 * totals["new_tokens"]
    assert totals["drafted_tokens"] <= 0.25 * totals["new_tokens"]


def test_prompt_lookup_saves_target_calls_on_repetitive_text(tiny_models):
    target_dir = tiny_models.ir("llama")
    model = load_speculative(target_dir)
    prompt = repetitive_prompt(shared_plain(target_dir), seed=21)
    new_tokens(model, prompt, max_new_tokens=64, prompt_lookup_num_tokens=8)
    stats = model.last_decoding_stats
    assert stats.new_tokens == 64
    assert stats.target_calls <= 64 / 4
    assert stats.mean_accepted_length >= 4


def test_prompt_lookup_defaults_to_a_constant_length_and_trigrams(tiny_models, monkeypatch):
    """Prompt lookup drafts for free: unless the caller sets a schedule its length stays constant, n-grams up to 3."""
    from helpers.tiny_causal_lm import load_speculative, random_prompt

    from optimum_dynexec.speculative import drafters, modeling

    made = []
    original = drafters.PromptLookupDrafter.__init__

    def spy(self, draft_length, max_matching_ngram_size=2):
        made.append((draft_length.schedule, max_matching_ngram_size))
        original(self, draft_length, max_matching_ngram_size)

    monkeypatch.setattr(modeling.PromptLookupDrafter, "__init__", spy)
    model = load_speculative(tiny_models.ir("llama"))
    prompt = random_prompt(2, 8)
    model.generate(prompt, max_new_tokens=3, prompt_lookup_num_tokens=4)
    model.generate(prompt, max_new_tokens=3, prompt_lookup_num_tokens=4, num_assistant_tokens_schedule="heuristic",
                   max_matching_ngram_size=2)
    assert made == [("constant", 3), ("heuristic", 2)]
