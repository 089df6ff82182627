"""Step predictor training: the quantile objective, the labels-file entry point, and what the exported model learns."""

import json

import pytest
import torch

from optimum_dynexec.fixtures.stable_diffusion import build_clip_tokenizer
from optimum_dynexec.stepsaver import StepPredictor
from optimum_dynexec.stepsaver.labels import LABELS_FORMAT_VERSION
from optimum_dynexec.stepsaver.training import (
    PredictorTrainingArguments,
    pinball_loss,
    train_from_labels_file,
    train_step_predictor,
)


def test_pinball_loss_prices_under_prediction_by_the_quantile():
    target = torch.tensor([1.0])
    assert pinball_loss(torch.tensor([0.0]), target, 0.8).item() == pytest.approx(0.8)  # too low
    assert pinball_loss(torch.tensor([2.0]), target, 0.8).item() == pytest.approx(0.2)  # too high
    # The constant minimising it over a sample is that sample's quantile.
    sample = torch.arange(1.0, 11.0)
    losses = {value: pinball_loss(torch.full_like(sample, value), sample, 0.8).item() for value in range(1, 11)}
    assert min(losses, key=losses.get) in (8, 9)


def _write_labels(path, pipeline_folder, rows):
    path.write_text(json.dumps({
        "format_version": LABELS_FORMAT_VERSION,
        "settings": {"pipeline": str(pipeline_folder)},
        "labels": [{"prompt": prompt, "num_inference_steps": steps, "ssim_by_steps": {}} for prompt, steps in rows],
    }))


def test_trained_predictor_learns_which_prompts_need_more_steps(tmp_path):
    pipeline_folder = tmp_path / "pipeline"
    build_clip_tokenizer(pipeline_folder / "tokenizer")
    colours = ["red", "green", "blue", "yellow", "purple", "orange", "white", "black"]
    rows = []
    for colour in colours:
        rows.append((f"a plain {colour} background", 5))
        rows.append((f"four small {colour} triangles and two gray circles on a white background", 40))
        rows.append((f"a big {colour} circle on a gray background", 12))
    _write_labels(tmp_path / "labels.json", pipeline_folder, rows * 3)

    predictor = train_from_labels_file(tmp_path / "labels.json", tmp_path / "predictor",
                                       arguments=PredictorTrainingArguments(epochs=40, quantile=0.5), progress=False)
    # Held-out wording of the same kinds (a colour combination never seen in training).
    plain, big, busy = predictor.predict([
        "a plain gray background",
        "a big red circle on a black background",
        "four small blue triangles and two purple circles on a black background",
    ])
    assert plain < big < busy
    assert plain <= 8 and busy >= 25
    assert predictor.config.quantile == 0.5
    assert predictor.config.labels["settings"]["pipeline"] == str(pipeline_folder)

    reloaded = StepPredictor.from_pretrained(tmp_path / "predictor")
    assert reloaded.predict(["a plain gray background"]) == [plain]


def test_training_input_errors_name_the_problem(tmp_path):
    tokenizer = build_clip_tokenizer()
    with pytest.raises(ValueError, match="prompts but"):
        train_step_predictor(["a", "b", "c", "d"], [1, 2, 3], tokenizer, tmp_path)
    with pytest.raises(ValueError, match="at least 4"):
        train_step_predictor(["a"], [1], tokenizer, tmp_path)
    with pytest.raises(ValueError, match="quantile"):
        train_step_predictor(["a"] * 4, [1] * 4, tokenizer, tmp_path, PredictorTrainingArguments(quantile=1.0))
    _write_labels(tmp_path / "labels.json", tmp_path / "missing", [("a", 1)] * 4)
    with pytest.raises(ValueError, match="--tokenizer"):
        train_from_labels_file(tmp_path / "labels.json", tmp_path / "out")
