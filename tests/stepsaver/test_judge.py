"""The no-network quality judge of the StepSaver benchmark: caption parsing, and a small judge trained for real."""

import numpy as np
import pytest

from lab.benchmark.shape_judge import (JudgeRecipe, PromptFacts, ShapeJudge, procedural_set,
                                                  judge_code_fingerprint)
from lab.fixtures.stable_diffusion import SCENE_KINDS, render_scene, sample_scene


@pytest.mark.parametrize("kind", SCENE_KINDS)
def test_caption_facts_match_the_scene(kind):
    rng = np.random.default_rng(7)
    for _ in range(40):
        scene = sample_scene(rng, kind)
        assert PromptFacts.of_prompt(scene.caption) == PromptFacts.of_scene(scene), scene.caption


def test_text_outside_the_grammar_is_refused():
    with pytest.raises(ValueError, match="grammar"):
        PromptFacts.of_prompt("a photo of an astronaut riding a horse")


@pytest.fixture(scope="module")
def small_judge(tmp_path_factory):
    cache = tmp_path_factory.mktemp("judge_cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OPTIMUM_DYNEXEC_CACHE", str(cache))
        judge = ShapeJudge.load(JudgeRecipe(train_images=4000, epochs=4, width=16, learning_rate=4e-3), progress=False)
        assert [path.name.split("-")[-1] for path in cache.iterdir()] == [judge_code_fingerprint()]
        # A second load reads the cache entry instead of training again: same weights.
        again = ShapeJudge.load(JudgeRecipe(train_images=4000, epochs=4, width=16, learning_rate=4e-3), progress=False)
    for mine, theirs in zip(judge.network.state_dict().values(), again.network.state_dict().values()):
        assert np.array_equal(mine.numpy(), theirs.numpy())
    return judge


def test_judge_reads_procedural_images_and_tells_a_wrong_prompt(small_judge):
    rng = np.random.default_rng(99)
    scenes = [sample_scene(rng) for _ in range(200)]
    images = np.stack([render_scene(scene) for scene in scenes])
    prompts = [scene.caption for scene in scenes]
    right = small_judge.prompt_fidelity(images, prompts)
    wrong = small_judge.prompt_fidelity(images, prompts[1:] + prompts[:1])
    # A judge this small (a few seconds of training) reads backgrounds and counts well, colours and kinds less so.
    assert small_judge.metrics["background_accuracy"] > 0.95
    assert small_judge.metrics["count_accuracy"] > 0.7
    assert right.mean() > wrong.mean() + 0.2, (right.mean(), wrong.mean())


def test_frechet_distance_prefers_real_renders_to_damaged_ones(small_judge):
    images = procedural_set(200, seed=5)[0]
    blurred = images.reshape(200, 16, 2, 16, 2, 3).mean(axis=(2, 4)).repeat(2, axis=1).repeat(2, axis=2)
    washed = (0.5 * images + 0.5 * 128).astype(np.uint8)
    real = small_judge.frechet_distance(images, reference_count=500)
    assert real < small_judge.frechet_distance(blurred.astype(np.uint8), reference_count=500)
    assert real < small_judge.frechet_distance(washed, reference_count=500)


def test_judge_refuses_wrong_images(small_judge):
    with pytest.raises(ValueError, match="one prompt per image"):
        small_judge.prompt_fidelity(np.zeros((2, 32, 32, 3), np.uint8), ["a plain red background"])
    with pytest.raises(TypeError, match="uint8"):
        small_judge.features(np.zeros((1, 32, 32, 3), np.float32))


def test_the_judge_cache_key_follows_the_code_that_defines_the_judge(monkeypatch):
    from lab.benchmark import shape_judge
    from lab.fixtures import stable_diffusion

    before = judge_code_fingerprint()
    assert judge_code_fingerprint() == before  # stable between calls
    original = stable_diffusion.render_scene

    def render_scene(scene, size=32, supersample=2):  # a changed renderer: different training images
        return original(scene, size, supersample)

    monkeypatch.setattr(stable_diffusion, "render_scene", render_scene)
    assert judge_code_fingerprint() != before
    monkeypatch.undo()
    monkeypatch.setattr(shape_judge, "GRAMMAR_CODE", shape_judge.GRAMMAR_CODE + ("caption_vocabulary",))
    assert judge_code_fingerprint() != before
