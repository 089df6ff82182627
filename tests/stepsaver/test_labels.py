"""Minimal-step labelling logic, on a stand-in pipeline whose images converge at a known, per-prompt step count."""

import json

import numpy as np
import pytest

from optimum_dynexec.stepsaver.labels import LabelSettings, image_similarity, label_prompts, read_labels


class ConvergingPipeline:
    """Images that approach a fixed reference as steps grow; prompt "needs N" is within SSIM 0.9 from N steps on."""

    def __init__(self):
        self.reference = np.random.default_rng(0).uniform(0.2, 0.8, (32, 32, 3))
        self.calls = []

    def __call__(self, prompt, num_inference_steps, generator=None, output_type="np", **kwargs):
        self.calls.append((prompt, num_inference_steps))
        needed = int(prompt.split()[-1])
        noise_level = 0.0 if num_inference_steps >= needed else 0.3
        noise = np.random.default_rng(num_inference_steps).normal(0, 1, self.reference.shape)
        image = np.clip(self.reference + noise_level * noise, 0, 1)

        class Output:
            images = [image]

        return Output()


def settings(**overrides):
    values = dict(pipeline="stand-in", candidate_steps=[2, 4, 8, 16], reference_steps=32, ssim_threshold=0.9)
    values.update(overrides)
    return LabelSettings(**values)


def test_image_similarity_orders_images_by_closeness():
    rng = np.random.default_rng(1)
    reference = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    slightly = np.clip(reference.astype(int) + rng.integers(-5, 6, reference.shape), 0, 255).astype(np.uint8)
    very = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert image_similarity(reference, reference) == pytest.approx(1.0)
    assert 1.0 > image_similarity(slightly, reference) > image_similarity(very, reference)


def test_label_is_the_first_converged_candidate_and_search_stops_there(tmp_path):
    pipeline = ConvergingPipeline()
    labels = label_prompts(pipeline, ["needs 3", "needs 8", "needs 99"], tmp_path / "labels.json", settings(),
                           progress=False)
    assert [label["num_inference_steps"] for label in labels] == [4, 8, 32]  # 99: never converged -> reference
    assert [steps for prompt, steps in pipeline.calls if prompt == "needs 3"] == [32, 2, 4]
    assert set(labels[1]["ssim_by_steps"]) == {"2", "4", "8"}


def test_labelling_resumes_without_redoing_prompts(tmp_path):
    output = tmp_path / "labels.json"
    label_prompts(ConvergingPipeline(), ["needs 3", "needs 8"], output, settings(), progress=False)
    resumed = ConvergingPipeline()
    labels = label_prompts(resumed, ["needs 3", "needs 8", "needs 16"], output, settings(), progress=False)
    assert {prompt for prompt, _ in resumed.calls} == {"needs 16"}
    assert [label["prompt"] for label in labels] == ["needs 3", "needs 8", "needs 16"]
    assert read_labels(output)[1] == labels
    assert not [path for path in tmp_path.iterdir() if path.name != "labels.json"], "no temporary files left"


def test_resuming_with_other_settings_is_refused(tmp_path):
    output = tmp_path / "labels.json"
    label_prompts(ConvergingPipeline(), ["needs 3"], output, settings(), progress=False)
    with pytest.raises(ValueError, match="ssim_threshold"):
        label_prompts(ConvergingPipeline(), ["needs 3"], output, settings(ssim_threshold=0.95), progress=False)
    assert json.loads(output.read_text())["settings"]["ssim_threshold"] == 0.9


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(ssim_threshold=1.5), "ssim_threshold"),
        (dict(candidate_steps=[8, 4]), "increasing"),
        (dict(candidate_steps=[4, 40], reference_steps=32), "reference_steps"),
    ],
)
def test_bad_settings_name_the_argument(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        label_prompts(ConvergingPipeline(), ["needs 3"], tmp_path / "labels.json", settings(**overrides),
                      progress=False)
    assert not (tmp_path / "labels.json").exists()


def test_a_file_that_is_not_a_labels_file_is_refused(tmp_path):
    path = tmp_path / "other.json"
    path.write_text(json.dumps({"something": "else"}))
    with pytest.raises(ValueError, match="not a StepSaver labels file"):
        read_labels(path)
