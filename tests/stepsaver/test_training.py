"""Step predictor training: the quantile objective and input checks (what a trained predictor learns, and its
save/load round trip, are checked in test_stepsaver_pipeline.py, which trains one anyway)."""

import json

import pytest
import torch

from lab.fixtures.stable_diffusion import build_clip_tokenizer
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
