"""The procedural caption/image set behind the StepSaver fixture, and its locally built CLIP tokenizer."""

import numpy as np
import pytest

from lab.fixtures.stable_diffusion import (
    COLOURS,
    SCENE_KINDS,
    build_clip_tokenizer,
    caption_vocabulary,
    render_scene,
    sample_captioned_images,
    sample_prompts,
    sample_scene,
)


def test_same_seed_same_images_and_captions():
    first_images, first_captions = sample_captioned_images(16, seed=3)
    second_images, second_captions = sample_captioned_images(16, seed=3)
    assert first_captions == second_captions
    np.testing.assert_array_equal(first_images, second_images)
    assert sample_captioned_images(16, seed=4)[1] != first_captions


@pytest.mark.parametrize("kind", SCENE_KINDS)
def test_images_show_what_the_caption_says(kind):
    rng = np.random.default_rng(0)
    for _ in range(20):
        scene = sample_scene(rng, kind)
        image = render_scene(scene).reshape(-1, 3).astype(int)
        words = scene.caption.split()
        assert scene.background in words and COLOURS[scene.background] is not None
        # The corners are background, and every named shape colour is present somewhere.
        corner = render_scene(scene)[0, 0].astype(int)
        assert np.abs(corner - COLOURS[scene.background]).max() <= 2
        for shape in scene.shapes:
            assert shape.colour in words and shape.kind in " ".join(words)
            assert (np.abs(image - COLOURS[shape.colour]).max(axis=1) <= 2).any()
        if kind == "plain":
            assert not scene.shapes and (np.abs(image - COLOURS[scene.background]).max(axis=1) <= 2).all()


def test_prompts_vary_in_complexity():
    prompts = sample_prompts(200, seed=0)
    lengths = [len(prompt.split()) for prompt in prompts]
    assert min(lengths) <= 4 and max(lengths) >= 14
    assert len(set(prompts)) == 200


def test_held_out_prompts_exclude_the_given_ones():
    training = sample_prompts(100, seed=0)
    held_out = sample_prompts(50, seed=1, exclude=training)
    assert not set(held_out) & set(training)


def test_tokenizer_keeps_caption_words_whole_and_has_a_max_length(tmp_path):
    tokenizer = build_clip_tokenizer(tmp_path)
    assert tokenizer.model_max_length == 32  # the OpenVINO export fails without it
    for word in caption_vocabulary():
        ids = tokenizer(word, add_special_tokens=False).input_ids
        assert len(ids) == 1, word
    # Unknown words still tokenize (byte alphabet), and the tokenizer round-trips through save/load.
    from transformers import AutoTokenizer

    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    text = "a zebra on the moon"
    assert reloaded(text).input_ids == tokenizer(text).input_ids
    assert len(tokenizer(text, add_special_tokens=False).input_ids) > 5
