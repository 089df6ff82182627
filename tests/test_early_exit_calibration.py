"""Threshold sweep, threshold pick, curve files: checked on logits whose answers are known by construction."""

import json
import subprocess
import sys

import numpy as np
import pytest

from optimum_dynexec.early_exit.calibration import (
    exit_layers_at,
    normalised_entropies,
    pick_threshold,
    save_curve,
    sweep_thresholds,
)


def _three_layer_logits():
    """Row 0 is confident (and right) from layer 1, row 1 from layer 2 (wrong before), row 2 never (right at 3)."""
    sure, unsure = [9.0, 0.0], [0.1, 0.0]
    layer_1 = [sure, [0.2, 0.0], unsure]
    layer_2 = [sure, [0.0, 9.0], unsure]
    layer_3 = [sure, [0.0, 9.0], [0.0, 0.3]]
    return np.array([layer_1, layer_2, layer_3]), np.array([0, 1, 1])


def test_entropy_is_normalised_to_zero_for_certain_and_one_for_uniform():
    entropies = normalised_entropies(np.array([[[50.0, 0.0, 0.0], [1.0, 1.0, 1.0]]]), [1.0])
    np.testing.assert_allclose(entropies[0], [0.0, 1.0], atol=1e-12)


def test_temperature_sharpens_or_flattens_the_entropy():
    logits = np.array([[[2.0, 0.0]]])
    assert normalised_entropies(logits, [0.5])[0, 0] < normalised_entropies(logits, [1.0])[0, 0] < normalised_entropies(logits, [4.0])[0, 0]


def test_exit_layers_follow_the_first_confident_layer():
    logits, _ = _three_layer_logits()
    entropies = normalised_entropies(logits, [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(exit_layers_at(entropies, 0.1), [1, 2, 3])
    np.testing.assert_array_equal(exit_layers_at(entropies, 0.0), [3, 3, 3])
    np.testing.assert_array_equal(exit_layers_at(entropies, 1.0), [1, 1, 1])


def test_sweep_reports_accuracy_and_speed_per_threshold():
    logits, labels = _three_layer_logits()
    sweep = sweep_thresholds(logits, labels, [1.0] * 3, thresholds=[0.0, 0.1, 1.0])
    assert sweep["full_accuracy"] == 1.0 and sweep["layer_accuracy"] == pytest.approx([1 / 3, 2 / 3, 1.0])
    never, tuned, always = sweep["points"]
    assert (never["accuracy"], never["mean_exit_layer"], never["layer_speedup"]) == (1.0, 3.0, 1.0)
    assert (tuned["accuracy"], tuned["mean_exit_layer"], tuned["exit_histogram"]) == (1.0, 2.0, [1, 1, 1])
    assert always["accuracy"] == pytest.approx(1 / 3) and always["layer_speedup"] == 3.0


def test_pick_takes_the_fastest_threshold_meeting_the_target():
    logits, labels = _three_layer_logits()
    sweep = sweep_thresholds(logits, labels, [1.0] * 3, thresholds=[0.0, 0.1, 1.0])
    assert pick_threshold(sweep, 0.99)["threshold"] == 0.1
    assert pick_threshold(sweep, 0.3)["threshold"] == 1.0
    with pytest.raises(ValueError, match="target_relative_accuracy"):
        pick_threshold(sweep, 99)


def _confident_first_exit(num_examples, wrong_fraction):
    """Two layers: every row leaves layer 1 confidently (wrong on `wrong_fraction` of rows); layer 2 is always right."""
    labels = np.zeros(num_examples, dtype=np.int64)
    first = np.tile([20.0, 0.0], (num_examples, 1))
    first[: int(round(wrong_fraction * num_examples))] = [0.0, 20.0]
    last = np.tile([5.0, 0.0], (num_examples, 1))
    return np.stack([first, last]), labels


def test_confidence_pick_needs_the_lower_bound_to_reach_the_target():
    # 99.2% relative accuracy at the fast threshold: enough as a point estimate; not with 90% confidence on 1,000
    # examples (8 errors, the bootstrap's 90th percentile ~12, i.e. 98.8%), but enough on 20,000 (~176 of 20,000).
    for num_examples, fast_is_sure in ((1000, False), (20000, True)):
        logits, labels = _confident_first_exit(num_examples, 0.008)
        point = sweep_thresholds(logits, labels, [1.0, 1.0], thresholds=[0.0, 0.5])
        sure = sweep_thresholds(logits, labels, [1.0, 1.0], thresholds=[0.0, 0.5], confidence=0.9, bootstrap_samples=400)
        slow, fast = sure["points"]
        assert fast["relative_accuracy"] == pytest.approx(0.992)
        assert fast["relative_accuracy_lower_bound"] < fast["relative_accuracy"]
        assert slow["relative_accuracy_lower_bound"] == 1.0  # the full model against itself: no spread
        assert pick_threshold(point, 0.99)["threshold"] == 0.5
        assert pick_threshold(sure, 0.99)["threshold"] == (0.5 if fast_is_sure else 0.0)
    with pytest.raises(ValueError, match="confidence"):
        sweep_thresholds(logits, labels, [1.0, 1.0], confidence=90)


def test_curve_is_written_as_json_and_png(tmp_path):
    logits, labels = _three_layer_logits()
    sweep = sweep_thresholds(logits, labels, [1.0] * 3, confidence=0.9, bootstrap_samples=50)
    json_path, png_path = save_curve(sweep, tmp_path, pick_threshold(sweep, 0.99))
    assert json.loads(json_path.read_text())["chosen"]["threshold"] == pytest.approx(pick_threshold(sweep, 0.99)["threshold"])
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*partial*"))


def test_calibrate_exits_cli_writes_the_curve_and_saves_the_threshold(tmp_path):
    import shutil

    from test_early_exit_helpers import exported_folder, synthetic_task

    model_dir = tmp_path / "model"
    shutil.copytree(exported_folder("bert"), model_dir)
    texts, labels = synthetic_task(40, seed=11)
    (tmp_path / "validation.csv").write_text("text,label\n" + "\n".join(f"{t},{l}" for t, l in zip(texts, labels)))
    command = [sys.executable, "-m", "optimum.commands.optimum_cli", "dynexec", "calibrate-exits", "--model",
               str(model_dir), "--dataset", str(tmp_path), "--output", str(tmp_path / "curve"),
               "--target-accuracy", "0.9", "--save-threshold"]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-2000:]
    curve = json.loads((tmp_path / "curve" / "calibration.json").read_text())
    assert (tmp_path / "curve" / "calibration.png").is_file() and len(curve["points"]) == 101
    saved = json.loads((model_dir / "early_exit_config.json").read_text())["entropy_threshold"]
    assert curve["chosen"] is not None and saved == pytest.approx(curve["chosen"]["threshold"])
