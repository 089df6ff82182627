"""Speculative sampling draws from exactly the distribution plain sampling draws from (statistical tests)."""

from collections import Counter

import numpy as np
import pytest
import torch
from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

from optimum_dynexec.speculative import acceptance
from optimum_dynexec.speculative.sampling import SamplingSettings, sample
from optimum_dynexec.speculative.tree import DraftTree

from helpers.chi_square import SIGNIFICANCE, goodness_of_fit
from helpers.tiny_causal_lm import load_speculative, random_prompt, shared_plain


# ------------------------------------------------------------------------------------------------------- warping

WARPINGS = [
    dict(temperature=1.0),
    dict(temperature=0.7),
    dict(temperature=1.8, top_k=5),
    dict(temperature=1.0, top_k=1),
    dict(temperature=1.0, top_p=0.8),
    dict(temperature=0.5, top_p=0.3),
    dict(temperature=1.3, top_k=20, top_p=0.9),
    dict(temperature=1.0, top_k=64, top_p=1.0),
]


@pytest.mark.parametrize("warping", WARPINGS, ids=lambda warping: "-".join(f"{k}={v}" for k, v in warping.items()))
def test_warping_matches_transformers(warping):
    logits = np.random.default_rng(0).normal(scale=3.0, size=(64, 50)).astype(np.float32)
    ours = SamplingSettings(**warping).probabilities(logits)

    scores = torch.from_numpy(logits.copy())
    warpers = [TemperatureLogitsWarper(warping["temperature"])]
    if warping.get("top_k"):
        warpers.append(TopKLogitsWarper(warping["top_k"]))
    if warping.get("top_p") is not None:
        warpers.append(TopPLogitsWarper(warping["top_p"]))
    for warper in warpers:
        scores = warper(None, scores)
    reference = torch.softmax(scores.double(), dim=-1).numpy()

    np.testing.assert_array_equal(ours == 0, reference == 0)  # the same tokens are filtered out
    np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-9)


def test_sampling_settings_reject_bad_values():
    for bad in (dict(temperature=0.0), dict(top_k=-1), dict(top_p=0.0), dict(top_p=1.5)):
        with pytest.raises(ValueError):
            SamplingSettings(**bad)


def test_sample_follows_the_distribution():
    probabilities = np.array([0.5, 0.0, 0.2, 0.3])
    rng = np.random.default_rng(0)
    counts = Counter(sample(probabilities, rng) for _ in range(20000))
    assert goodness_of_fit(counts, dict(enumerate(probabilities))) > SIGNIFICANCE


# ---------------------------------------------------------------------------------- the acceptance rule, alone

# Two wrong acceptance rules: every exactness check below must reject them.
def _always_accept(draft_tokens, draft_probs, target_probs, rng):
    return len(draft_tokens), sample(target_probs[len(draft_tokens)], rng)


def _resample_from_target_on_rejection(draft_tokens, draft_probs, target_probs, rng):
    """A classic mistake: after a rejection, draw from the target's distribution instead of the residual."""
    for position, token in enumerate(draft_tokens):
        if rng.random() * draft_probs[position, token] >= target_probs[position, token]:
            return position, sample(target_probs[position], rng)
    return len(draft_tokens), sample(target_probs[len(draft_tokens)], rng)



def _accept(draft_tokens, draft_probs, target_probs, rng):
    """The package's rule, through its public entry (`acceptance.accept` on a chain): `(accepted, next_token)`."""
    with np.errstate(divide="ignore"):
        logits = np.log(target_probs)
    path, next_token = acceptance.accept(DraftTree.chain(draft_tokens, draft_probs), logits, SamplingSettings(), rng)
    return len(path), next_token


def _as_chain_rule(rule):
    """A rule in the form above, as `acceptance.speculative_chain_accept` (the accepted path, not its length)."""
    def chain_rule(draft_tokens, draft_probs, target_probs, rng):
        accepted, next_token = rule(draft_tokens, draft_probs, target_probs, rng)
        return np.arange(accepted), next_token
    return chain_rule


def _run_acceptance(draft_tokens_of, draft_probs, target_probs, draws, seed=0, accept=_accept):
    """Emitted sequences (drafts kept + the target's token) of `draws` independent verifications."""
    rng = np.random.default_rng(seed)
    outputs = []
    for _ in range(draws):
        draft_tokens = draft_tokens_of(rng)
        accepted, next_token = accept(draft_tokens, draft_probs, target_probs, rng)
        outputs.append(tuple(draft_tokens[:accepted]) + (next_token,))
    return outputs


def _check_positions(outputs, target_probs):
    """With position-wise target distributions that ignore the prefix, the token emitted at position i is
    distributed as `target_probs[i]` among the verifications that reached position i."""
    for position in range(target_probs.shape[0]):
        counts = Counter(output[position] for output in outputs if len(output) > position)
        assert sum(counts.values()) > 500, f"too few verifications reached position {position}"
        probabilities = dict(enumerate(target_probs[position]))
        assert goodness_of_fit(counts, probabilities) > SIGNIFICANCE, position


def _synthetic_sampled_drafts():
    rng = np.random.default_rng(1)
    vocab, length = 6, 3
    target_probs = rng.dirichlet(np.ones(vocab), size=length + 1)
    target_probs[0, 4] = 0.0  # a token the draft proposes and the target never emits
    target_probs /= target_probs.sum(axis=1, keepdims=True)
    draft_probs = rng.dirichlet(np.ones(vocab), size=length)

    def draft_tokens_of(rng):
        return np.array([sample(row, rng) for row in draft_probs])

    return draft_tokens_of, draft_probs, target_probs


def test_speculative_accept_with_sampled_drafts():
    draft_tokens_of, draft_probs, target_probs = _synthetic_sampled_drafts()
    outputs = _run_acceptance(draft_tokens_of, draft_probs, target_probs, draws=12000)
    _check_positions(outputs, target_probs)
    lengths = Counter(len(output) for output in outputs)
    assert lengths[1] and lengths[len(draft_probs) + 1], "both early rejection and full acceptance must occur"


@pytest.mark.parametrize("wrong_rule", [_always_accept, _resample_from_target_on_rejection])
def test_synthetic_check_rejects_wrong_rules(wrong_rule):
    draft_tokens_of, draft_probs, target_probs = _synthetic_sampled_drafts()
    outputs = _run_acceptance(draft_tokens_of, draft_probs, target_probs, draws=12000, accept=wrong_rule)
    with pytest.raises(AssertionError):
        _check_positions(outputs, target_probs)


def test_speculative_accept_with_deterministic_drafts():
    """Prompt lookup: the drafts are fixed tokens, `draft_probs=None` (one-hot proposals)."""
    rng = np.random.default_rng(2)
    target_probs = rng.dirichlet(np.ones(5), size=3)
    draft = np.array([int(target_probs[0].argmax()), int(target_probs[1].argmax())])
    outputs = _run_acceptance(lambda rng: draft, None, target_probs, draws=12000)
    _check_positions(outputs, target_probs)
    # A draft the target gives probability 0 is never kept.
    target_probs[0, draft[0]] = 0.0
    target_probs[0] /= target_probs[0].sum()
    outputs = _run_acceptance(lambda rng: draft, None, target_probs, draws=3000)
    assert all(len(output) == 1 and output[0] != draft[0] for output in outputs)
    _check_positions(outputs, target_probs[:1])


def test_speculative_accept_when_draft_equals_target():
    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.ones(5), size=3)
    draft_tokens = np.array([sample(row, rng) for row in probs[:2]])
    for _ in range(200):
        accepted, _ = _accept(draft_tokens, probs[:2], probs, rng)
        assert accepted == 2


# ------------------------------------------------------------------------------------ end to end, with generate()

# The first three generated tokens, drawn through `generate()`: the first from the prompt's logits, the next two
# from one verification of two drafted tokens (accepted, residual or bonus).
SAMPLING = dict(do_sample=True, temperature=2.0, top_k=3, top_p=0.95)
SPECULATION = dict(num_assistant_tokens=2, num_assistant_tokens_schedule="constant", assistant_confidence_threshold=0.0)
OUTCOME_LENGTH = 3


def _exact_distribution(plain, prompt, settings: SamplingSettings, depth: int) -> dict:
    """P(first `depth` generated tokens) from the target's own logits, warped as `generate()` warps them."""
    distribution = {}

    def expand(prefix, probability):
        if len(prefix) == depth:
            distribution[prefix] = probability
            return
        input_ids = torch.cat([prompt, torch.tensor([prefix], dtype=prompt.dtype).reshape(1, -1)], dim=1)
        logits = plain(input_ids=input_ids, attention_mask=torch.ones_like(input_ids)).logits[0, -1].numpy()
        probabilities = settings.probabilities(logits[None])[0]
        for token in np.flatnonzero(probabilities):
            expand(prefix + (int(token),), probability * probabilities[token])

    expand((), 1.0)
    return distribution


def _draw(model, prompt, draws: int, seed: int):
    """Outcome counts of `draws` generations, and (drafted, accepted) token totals over them."""
    torch.manual_seed(seed)
    counts, drafted, accepted = Counter(), 0, 0
    for _ in range(draws):
        output = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=OUTCOME_LENGTH,
                                **SAMPLING, **SPECULATION)
        counts[tuple(output[0, prompt.shape[1]:].tolist())] += 1
        drafted += model.last_decoding_stats.drafted_tokens
        accepted += model.last_decoding_stats.accepted_tokens
    return counts, (drafted, accepted)


@pytest.fixture(scope="module")
def sampling_setup(tiny_models):
    target_dir = tiny_models.ir("llama")
    prompt = random_prompt(11, 8)
    settings = SamplingSettings(SAMPLING["temperature"], SAMPLING["top_k"], SAMPLING["top_p"])
    exact = _exact_distribution(shared_plain(target_dir), prompt, settings, OUTCOME_LENGTH)
    assert abs(sum(exact.values()) - 1.0) < 1e-9
    return target_dir, tiny_models.ir("llama-draft"), prompt, exact


def test_speculative_sampling_is_exact(sampling_setup):
    target_dir, draft_dir, prompt, exact = sampling_setup
    model = load_speculative(target_dir, draft_model=draft_dir)
    counts, (drafted, accepted) = _draw(model, prompt, draws=1000, seed=0)
    # Both paths of the acceptance rule ran many times.
    assert 0.2 * drafted < accepted < 0.8 * drafted
    assert goodness_of_fit(counts, exact) > SIGNIFICANCE


# Draws for a power above 1 - 1e-6 at this significance: the outcome distribution under each wrong rule was
# computed exactly (enumerating drafts, acceptances and residuals with both models' warped probabilities), and the
# power from the noncentral chi-square of its distance to the exact distribution.
@pytest.mark.parametrize("wrong_rule, draws", [(_always_accept, 150), (_resample_from_target_on_rejection, 700)])
def test_a_wrong_acceptance_rule_fails_the_same_check(sampling_setup, monkeypatch, wrong_rule, draws):
    """The exactness check has teeth: it rejects a loop whose acceptance rule is wrong."""
    target_dir, draft_dir, prompt, exact = sampling_setup
    monkeypatch.setattr(acceptance, "speculative_chain_accept", _as_chain_rule(wrong_rule))
    model = load_speculative(target_dir, draft_model=draft_dir)
    counts, _ = _draw(model, prompt, draws=draws, seed=0)
    assert goodness_of_fit(counts, exact) < SIGNIFICANCE
