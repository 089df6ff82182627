"""A draft restricted to part of the vocabulary: its logits, loading, and exact speculation with it."""

import shutil

import numpy as np
import openvino as ov
import pytest
import torch
from helpers.tiny_causal_lm import VOCAB_SIZE, load_plain, load_speculative, new_tokens, random_prompt
from optimum.intel import OVModelForCausalLM

from optimum_dynexec.speculative.draft_vocabulary import EXCLUDED_LOGIT, restrict_vocabulary

KEPT = np.arange(3, VOCAB_SIZE, 3)  # every third token


@pytest.fixture(scope="module")
def restricted_draft(tiny_models, tmp_path_factory):
    folder = tmp_path_factory.mktemp("restricted") / "draft"
    shutil.copytree(tiny_models.ir("llama-draft"), folder)
    model = ov.Core().read_model(folder / "openvino_model.xml")
    restrict_vocabulary(model, KEPT)
    ov.save_model(model, folder / "restricted.xml")
    (folder / "restricted.xml").replace(folder / "openvino_model.xml")
    (folder / "restricted.bin").replace(folder / "openvino_model.bin")
    return folder


def test_kept_tokens_keep_their_logits_and_the_others_are_excluded(tiny_models, restricted_draft):
    prompt = random_prompt(0, 10)
    full = load_plain(tiny_models.ir("llama-draft"))(input_ids=prompt, attention_mask=torch.ones_like(prompt)).logits
    restricted = load_plain(restricted_draft)(input_ids=prompt, attention_mask=torch.ones_like(prompt)).logits
    assert restricted.shape == full.shape
    # The rewritten lm_head runs another kernel than the fused original: ~5e-3 apart; a wrong column would be O(1).
    np.testing.assert_allclose(restricted[..., KEPT].numpy(), full[..., KEPT].numpy(), atol=2e-2)
    others = np.setdiff1d(np.arange(VOCAB_SIZE), KEPT)
    assert (restricted[..., others].numpy() == EXCLUDED_LOGIT).all()


def test_speculation_with_a_restricted_draft_is_exact(tiny_models, restricted_draft):
    target_dir = tiny_models.ir("llama")
    plain = load_plain(target_dir)
    model = load_speculative(target_dir, draft_model=restricted_draft)
    drafted = 0
    for seed in range(3):
        prompt = random_prompt(seed, 12)
        assert new_tokens(model, prompt, max_new_tokens=30) == new_tokens(plain, prompt, max_new_tokens=30)
        drafted += model.last_decoding_stats.drafted_tokens
        assert set(np.unique(OVModelForCausalLM.generate(model.draft_model, prompt, max_new_tokens=5,
                                                         do_sample=False)[0, 12:].numpy())) <= set(KEPT.tolist())
    assert drafted > 0


def test_bad_ids_and_a_second_restriction_are_refused(tiny_models, restricted_draft):
    model = ov.Core().read_model(tiny_models.ir("llama-draft") / "openvino_model.xml")
    with pytest.raises(ValueError, match="token_ids"):
        restrict_vocabulary(model, [5, VOCAB_SIZE])
    with pytest.raises(ValueError, match="restricted vocabulary already"):
        restrict_vocabulary(ov.Core().read_model(restricted_draft / "openvino_model.xml"), KEPT)


def test_most_chosen_tokens_are_the_most_frequent_sorted_by_id():
    from optimum_dynexec.speculative.draft_vocabulary import most_chosen_tokens

    choices = np.array([[5, 5, 5, 2, 2, 9], [9, 9, 9, 9, 1, 0]])  # 9: five times, 5: three, 2: two
    assert most_chosen_tokens(choices, 2, 12).tolist() == [5, 9]
    assert most_chosen_tokens(choices, 3, 12).tolist() == [2, 5, 9]
