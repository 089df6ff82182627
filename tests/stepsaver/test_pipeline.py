"""OVStepSaverStableDiffusionPipeline on a tiny untrained pipeline (built from configs, exported once per module).

The step predictor is trained here on synthetic labels that separate plain prompts (few steps) from busy ones (many),
so a batch really mixes step counts; the predictor's own behaviour is checked here too, to train it once.
"""

import json

import numpy as np
import pytest
import torch
from optimum.intel import OVStableDiffusionPipeline

from lab.fixtures.stable_diffusion import build_tiny_pipeline
from optimum_dynexec.stepsaver import OVStepSaverStableDiffusionPipeline, StepPredictor
from optimum_dynexec.stepsaver.labels import LABELS_FORMAT_VERSION, LabelSettings, label_prompts, read_labels
from optimum_dynexec.stepsaver.training import PredictorTrainingArguments, train_from_labels_file

PLAIN = "a plain red background"
BUSY = "three small green triangles and two blue circles on a gray background"
SIZE = 32


COLOURS = ["red", "green", "blue", "yellow", "purple", "orange", "white", "black"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(OpenVINO pipeline folder, step predictor folder); the predictor is trained through the labels-file entry point
    on synthetic labels: plain backgrounds need 5 steps, one big shape 12, many small shapes 40."""
    root = tmp_path_factory.mktemp("stepsaver")
    build_tiny_pipeline(root / "diffusers")
    OVStableDiffusionPipeline.from_pretrained(root / "diffusers", export=True, compile=False).save_pretrained(root / "ov")
    rows = []
    for colour in COLOURS:
        rows.append((f"a plain {colour} background", 5))
        rows.append((f"a big {colour} circle on a gray background", 12))
        rows.append((f"four small {colour} triangles and two gray circles on a white background", 40))
    (root / "labels.json").write_text(json.dumps({
        "format_version": LABELS_FORMAT_VERSION,
        "settings": {"pipeline": str(root / "ov")},
        "labels": [{"prompt": prompt, "num_inference_steps": steps, "ssim_by_steps": {}} for prompt, steps in rows * 3],
    }))
    train_from_labels_file(root / "labels.json", root / "predictor",
                           arguments=PredictorTrainingArguments(epochs=40, quantile=0.5), progress=False)
    return root / "ov", root / "predictor"


def test_trained_predictor_learns_which_prompts_need_more_steps(exported):
    predictor = StepPredictor.from_pretrained(exported[1])
    # Wording of the same kinds with colour combinations never seen in training.
    plain, big, busy = predictor.predict([
        "a plain gray background",
        "a big red circle on a black background",
        "four small blue triangles and two purple circles on a black background",
    ])
    assert plain < big < busy
    assert plain <= 8 and busy >= 25
    assert predictor.config.quantile == 0.5
    assert predictor.config.labels["settings"]["pipeline"] == str(exported[0])
    assert predictor.config.labels["metrics"]["validation_size"] > 0


@pytest.fixture(scope="module")
def pipeline(exported):
    ov_folder, predictor_folder = exported
    pipe = OVStepSaverStableDiffusionPipeline.from_pretrained(
        ov_folder, step_predictor=StepPredictor.from_pretrained(predictor_folder), max_inference_steps=12
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _generators(count, seed=0):
    return [torch.Generator().manual_seed(seed + index) for index in range(count)]


def test_each_prompt_of_a_batch_runs_its_own_predicted_step_count(pipeline):
    prompts = [BUSY, PLAIN, BUSY]
    predicted = pipeline.predict_num_inference_steps(prompts)
    assert predicted[0] == predicted[2] != predicted[1], "precondition: the predictor separates the prompts"

    output = pipeline(prompts, height=SIZE, width=SIZE, generator=_generators(3), output_type="np")
    assert output.num_inference_steps == predicted

    # Each image is what the plain parent pipeline makes for that prompt, seed and step count alone.
    parent = OVStableDiffusionPipeline.__call__
    for index, prompt in enumerate(prompts):
        alone = parent(pipeline, prompt, num_inference_steps=predicted[index], height=SIZE, width=SIZE,
                       generator=_generators(1, seed=index)[0], output_type="np").images[0]
        np.testing.assert_allclose(output.images[index], alone, atol=1e-5)


def test_explicit_num_inference_steps_wins(pipeline):
    output = pipeline([PLAIN, BUSY], num_inference_steps=3, height=SIZE, width=SIZE, generator=_generators(2),
                      output_type="np")
    assert output.num_inference_steps == [3, 3]
    reference = OVStableDiffusionPipeline.__call__(pipeline, [PLAIN, BUSY], num_inference_steps=3, height=SIZE,
                                                   width=SIZE, generator=_generators(2), output_type="np").images
    np.testing.assert_allclose(output.images, reference, atol=1e-5)


def test_num_images_per_prompt_keeps_order_and_counts(pipeline):
    output = pipeline([BUSY, PLAIN], num_images_per_prompt=2, height=SIZE, width=SIZE, generator=_generators(4),
                      output_type="np", return_dict=False)
    images, _, steps = output
    predicted = pipeline.predict_num_inference_steps([BUSY, PLAIN])
    assert steps == [predicted[0]] * 2 + [predicted[1]] * 2
    assert images.shape == (4, SIZE, SIZE, 3)


def test_predictions_are_clamped_to_the_step_range(pipeline):
    raw = pipeline.step_predictor.predict([PLAIN, BUSY])
    try:
        pipeline.set_step_range(raw[0] + 1, raw[0] + 1)
        assert pipeline.predict_num_inference_steps([PLAIN, BUSY]) == [raw[0] + 1] * 2
    finally:
        pipeline.set_step_range(1, 12)


def test_bad_arguments_are_reported_by_name(pipeline, exported):
    with pytest.raises(ValueError, match="min_inference_steps"):
        pipeline.set_step_range(10, 5)
    with pytest.raises(ValueError, match="max_inference_steps"):
        pipeline.set_step_range(1, 0)
    with pytest.raises(ValueError, match="generator"):
        pipeline([PLAIN, BUSY], height=SIZE, width=SIZE, generator=_generators(3))
    with pytest.raises(TypeError, match="step_predictor"):
        OVStepSaverStableDiffusionPipeline.from_pretrained(exported[0], step_predictor="not a predictor")
    with pytest.raises(ValueError, match="step predictor folder"):
        StepPredictor.from_pretrained(exported[0])


def test_without_predictor_it_behaves_like_the_parent(exported):
    plain = OVStepSaverStableDiffusionPipeline.from_pretrained(exported[0])
    assert plain.step_predictor is None
    with pytest.raises(ValueError, match="no step predictor"):
        plain.predict_num_inference_steps(PLAIN)
    plain.set_progress_bar_config(disable=True)
    output = plain(PLAIN, num_inference_steps=2, height=SIZE, width=SIZE, output_type="np")
    assert output.num_inference_steps == [2]


def test_save_pretrained_round_trip(pipeline, tmp_path):
    pipeline.set_step_range(2, 9)
    try:
        pipeline.save_pretrained(tmp_path)
    finally:
        pipeline.set_step_range(1, 12)
    assert (tmp_path / "step_predictor" / "openvino_model.xml").is_file()
    assert json.loads((tmp_path / "stepsaver_config.json").read_text()) == {"min_inference_steps": 2,
                                                                           "max_inference_steps": 9}
    reloaded = OVStepSaverStableDiffusionPipeline.from_pretrained(tmp_path)
    assert (reloaded.min_inference_steps, reloaded.max_inference_steps) == (2, 9)
    prompts = [PLAIN, BUSY]
    np.testing.assert_allclose(reloaded.step_predictor.predict_log_steps(prompts),
                               pipeline.step_predictor.predict_log_steps(prompts), atol=1e-5)

    # The parent class still loads the folder, and makes the same image at the same step count.
    parent = OVStableDiffusionPipeline.from_pretrained(tmp_path)
    parent.set_progress_bar_config(disable=True)
    reloaded.set_progress_bar_config(disable=True)
    kwargs = dict(num_inference_steps=2, height=SIZE, width=SIZE, output_type="np")
    np.testing.assert_allclose(parent(PLAIN, generator=torch.Generator().manual_seed(0), **kwargs).images,
                               reloaded(PLAIN, generator=torch.Generator().manual_seed(0), **kwargs).images, atol=1e-5)


def test_load_in_8bit_also_compresses_the_predictor(pipeline, tmp_path):
    pipeline.save_pretrained(tmp_path)
    quantized = OVStepSaverStableDiffusionPipeline.from_pretrained(tmp_path, load_in_8bit=True)
    element_types = {op.get_output_element_type(0).get_type_name()
                     for op in quantized.step_predictor.model.model.get_ops() if op.get_type_name() == "Constant"}
    assert "u8" in element_types or "i8" in element_types
    # 8-bit weights barely move a regression output.
    np.testing.assert_allclose(quantized.step_predictor.predict_log_steps([PLAIN, BUSY]),
                               pipeline.step_predictor.predict_log_steps([PLAIN, BUSY]), atol=0.2)


def test_labels_on_a_real_pipeline_resume_and_are_consistent(exported, tmp_path):
    pipe = OVStableDiffusionPipeline.from_pretrained(exported[0])
    pipe.set_progress_bar_config(disable=True)
    settings = LabelSettings(pipeline=str(exported[0]), candidate_steps=[1, 2, 3], reference_steps=6,
                             ssim_threshold=0.5, height=SIZE, width=SIZE)
    output = tmp_path / "labels.json"
    first = label_prompts(pipe, [PLAIN], output, settings, progress=False)
    both = label_prompts(pipe, [PLAIN, BUSY], output, settings, progress=False)
    assert [label["prompt"] for label in both] == [PLAIN, BUSY]
    assert both[0] == first[0]  # resumed, not recomputed differently
    for label in both:
        ssims = {int(steps): value for steps, value in label["ssim_by_steps"].items()}
        chosen = label["num_inference_steps"]
        # The label is the first candidate that reached the threshold (or the reference if none did).
        passing = [steps for steps in sorted(ssims) if ssims[steps] >= settings.ssim_threshold]
        assert chosen == (passing[0] if passing else settings.reference_steps)
        assert all(ssims[steps] < settings.ssim_threshold for steps in ssims if steps < chosen)
    assert read_labels(output)[1] == both


class _BrightnessJudge:
    """A stand-in for the shape judge (which needs training): fidelity is mean brightness, features the per-channel
    means and spreads, so the benchmark's bookkeeping can be checked against numbers computed here."""

    def prompt_fidelity(self, images, prompts):
        assert len(images) == len(prompts)
        return np.asarray(images, dtype=np.float64).mean(axis=(1, 2, 3)) / 255

    def features(self, images):
        images = np.asarray(images, dtype=np.float64)
        return np.concatenate([images.mean(axis=(1, 2)), images.std(axis=(1, 2))], axis=1)

    def frechet_distance_of_features(self, features):
        return float(np.abs(features.mean(axis=0)).sum())

    def fidelity_and_features(self, images, prompts):
        return self.prompt_fidelity(images, prompts), self.features(images)


def test_benchmark_compares_stepsaver_with_fixed_counts_on_the_same_prompts(pipeline):
    from lab.benchmark.diffusion import STEPSAVER, format_table, run_benchmark

    prompts = [PLAIN, BUSY, "a big blue circle on a gray background"]
    result = run_benchmark(pipeline, prompts, fixed_steps=(3, 6, 9), repeats=2, guidance_scale=2.0, progress=False,
                           judge=_BrightnessJudge())
    assert result["reference"] == "fixed-9"
    predicted = pipeline.predict_num_inference_steps(prompts)
    gaps = []
    for row, steps in zip(result["prompts"], predicted):
        assert row[STEPSAVER]["num_inference_steps"] == steps
        assert row["fixed-6"]["num_inference_steps"] == 6
        assert row["fixed-9"]["ssim"] == pytest.approx(1.0)
        gaps.append(row[STEPSAVER]["prompt_fidelity"] - row["fixed-6"]["prompt_fidelity"])
    summary = result["summary"]
    # No fixed-50 here, so the middle fixed count is the baseline.
    assert summary["fixed-6"]["images_per_hour_vs_fixed_50"] == pytest.approx(1.0)
    gap = summary[STEPSAVER]["prompt_fidelity_gap_vs_fixed-6"]
    assert gap["mean"] == pytest.approx(np.mean(gaps))
    assert gap["ci95"][0] <= gap["mean"] <= gap["ci95"][1]
    assert gap["prompts_better"] + gap["prompts_worse"] <= len(prompts)
    frechet = summary[STEPSAVER]["frechet_distance_gap_vs_fixed-6"]
    assert frechet["mean"] == pytest.approx(summary[STEPSAVER]["frechet_distance"] - summary["fixed-6"]["frechet_distance"])
    assert "StepSaver minus fixed-6, prompt fidelity" in format_table(result)
