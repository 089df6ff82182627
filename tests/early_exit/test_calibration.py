"""Threshold sweep, threshold pick, curve files: checked on logits whose answers are known by construction."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from optimum_dynexec.early_exit.calibration import (
    CERTIFICATION_THRESHOLDS,
    binomial_tail_p_value,
    certify_exits,
    certify_threshold,
    consistency_temperatures,
    exit_layers_at,
    fit_temperature,
    fixed_sequence_rejections,
    held_out_report,
    minimum_certifying_rows,
    normalised_entropies,
    pick_threshold,
    save_curve,
    sweep_exits,
    sweep_thresholds,
)
from optimum_dynexec.early_exit.data import load_texts


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

    from helpers.tiny_classifiers import exported_folder, synthetic_task

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


# ----- certified thresholds (Learn-then-Test) ---------------------------------------------------------------------


def _two_layer_draw(rng, num_rows):
    """Predictions and entropies whose true inconsistency is known: layer 1's entropy h is uniform on [0, 1] and its
    prediction disagrees with layer 2's with probability h, so threshold t has risk P(h < t and disagree) = t^2 / 2."""
    entropy = rng.random(num_rows)
    disagrees = rng.random(num_rows) < entropy
    predictions = np.stack([disagrees.astype(np.int64), np.zeros(num_rows, dtype=np.int64)])
    return predictions, np.stack([entropy, np.zeros(num_rows)])


def test_certified_threshold_keeps_its_promise_over_many_calibration_draws():
    # The guarantee itself: over draws of the calibration rows, the certified threshold's TRUE risk exceeds epsilon
    # in at most delta of them. The naive pick (largest threshold whose calibration risk is <= epsilon, what the old
    # point-estimate pick does) fails about half the time, so this check can tell a valid procedure from an invalid one.
    epsilon, delta, num_rows, draws = 0.05, 0.1, 400, 400
    thresholds = np.round(np.arange(0.0, 1.0001, 0.02), 2)
    rng = np.random.default_rng(1234)
    certified, naive = [], []
    for _ in range(draws):
        sweep = sweep_exits(*_two_layer_draw(rng, num_rows), thresholds=thresholds)
        certified.append(certify_threshold(sweep, epsilon, delta)["chosen"]["threshold"])
        naive.append(max(point["threshold"] for point in sweep["points"] if point["inconsistent_rows"] <= epsilon * num_rows))
    true_risk = lambda chosen: np.asarray(chosen) ** 2 / 2  # noqa: E731
    certified_failures = float(np.mean(true_risk(certified) > epsilon))
    margin = 3 * np.sqrt(delta * (1 - delta) / draws)
    assert certified_failures <= delta + margin, certified_failures
    assert float(np.mean(true_risk(naive) > epsilon)) > 0.3
    assert np.median(certified) >= 0.2  # and it certifies real early exits, not just threshold 0


def test_fit_temperature_recovers_a_known_temperature():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(size=(4000, 5)) * 3
    probabilities = np.exp(true_logits) / np.exp(true_logits).sum(-1, keepdims=True)
    targets = np.array([rng.choice(5, p=row) for row in probabilities])
    # Logits that are 2.5x too sharp should be divided by ~2.5.
    assert fit_temperature(true_logits * 2.5, targets) == pytest.approx(2.5, rel=0.1)


def test_consistency_temperatures_fit_each_exit_to_the_full_models_answer():
    rng = np.random.default_rng(1)
    full = rng.normal(size=(3000, 4)) * 4
    answers = full.argmax(-1)
    # Exit 1 sees the full model's logits through noise and is 3x overconfident about them; exit 2 is exact.
    noisy = (full + rng.normal(size=full.shape) * 2.0) * 3.0
    temperatures = consistency_temperatures(np.stack([noisy, full * 0.5, full]))
    assert temperatures[0] == pytest.approx(fit_temperature(noisy, answers))
    assert temperatures[0] > 1.5 and temperatures[1] < 0.5 * temperatures[0]
    assert temperatures[2] == 1.0  # the last layer is never gated


def test_certify_exits_fits_on_some_rows_and_certifies_on_the_others():
    rng = np.random.default_rng(2)
    full = rng.normal(size=(400, 3)) * 3
    logits = np.stack([full + rng.normal(size=full.shape) * 1.5, full])
    result = certify_exits(logits, epsilon=0.1, delta=0.1, fit_share=0.25)
    assert result["fit_rows"] == 100 and result["num_examples"] == 300 and result["sweep"]["num_examples"] == 300
    assert [test["threshold"] for test in result["tests"]] == list(CERTIFICATION_THRESHOLDS)
    # Which rows fit is fixed by the seed; changing the certifying rows leaves the temperatures alone.
    fitting = np.random.default_rng(result["seed"]).permutation(400)[:100]
    certifying = np.setdiff1d(np.arange(400), fitting)
    changed = logits.copy()
    changed[:, certifying] *= 7.0
    assert certify_exits(changed, epsilon=0.1, delta=0.1, fit_share=0.25)["temperatures"] == result["temperatures"]
    assert result["temperatures"] == consistency_temperatures(logits[:, fitting])
    # The certified threshold's risk on the certifying rows is what a threshold certified there must show.
    chosen = result["chosen"]
    assert chosen["threshold"] > 0.0 and chosen["p_value"] <= 0.1
    assert chosen["inconsistent_rows"] == next(point["inconsistent_rows"] for point in result["sweep"]["points"]
                                               if point["threshold"] == chosen["threshold"])
    with pytest.raises(ValueError, match="`fit_share` must be strictly between 0 and 1"):
        certify_exits(logits, fit_share=1.0)


def test_certify_exits_can_fit_on_other_rows_and_certify_on_all():
    rng = np.random.default_rng(3)
    full = rng.normal(size=(300, 3)) * 3
    logits = np.stack([full + rng.normal(size=full.shape) * 1.5, full])
    other = rng.normal(size=(80, 3)) * 3
    fit_logits = np.stack([other + rng.normal(size=other.shape) * 1.5, other])
    result = certify_exits(logits, epsilon=0.1, delta=0.1, fit_logits=fit_logits)
    # Every calibration row certifies; the temperatures are the other rows' alone.
    assert result["fit_rows"] == 80 and result["num_examples"] == 300 and result["sweep"]["num_examples"] == 300
    assert result["temperatures"] == consistency_temperatures(fit_logits)
    assert certify_exits(logits * 5.0, epsilon=0.1, delta=0.1, fit_logits=fit_logits)["temperatures"] == result["temperatures"]
    assert result["chosen"]["threshold"] > 0.0 and result["chosen"]["p_value"] <= 0.1
    with pytest.raises(ValueError, match="`fit_logits` must be \\[layers, rows, labels\\] with 2 layers"):
        certify_exits(logits, fit_logits=fit_logits[:1])


def test_minimum_certifying_rows_is_where_a_flawless_count_starts_to_certify():
    for epsilon, delta in ((0.01, 0.05), (0.01, 0.1), (0.05, 0.05)):
        needed = minimum_certifying_rows(epsilon, delta)
        assert binomial_tail_p_value(0, needed, epsilon) <= delta < binomial_tail_p_value(0, needed - 1, epsilon)
    assert minimum_certifying_rows(0.01, 0.05) == 299


def test_p_value_is_the_binomial_tail():
    assert binomial_tail_p_value(0, 10, 0.1) == pytest.approx(0.9**10)
    assert binomial_tail_p_value(1, 3, 0.5) == pytest.approx(0.5)  # (1 + 3) / 8
    hand = sum(math.comb(20, k) * 0.1**k * 0.9 ** (20 - k) for k in range(3))
    assert binomial_tail_p_value(2, 20, 0.1) == pytest.approx(hand, rel=1e-12)
    np.testing.assert_allclose(binomial_tail_p_value([0, 1], 3, 0.5), [0.125, 0.5])


def test_threshold_zero_is_always_certified_and_too_few_rows_certify_nothing_more():
    # Every row consistent at every threshold: the only obstacle is n. With no error, threshold t is certified when
    # 0.99^n <= delta: n = 230 (0.0994) is enough at delta 0.1, n = 229 (0.1003) is not.
    for num_rows, expected in ((229, 0.0), (230, 1.0)):
        predictions = np.zeros((3, num_rows), dtype=np.int64)
        sweep = sweep_exits(predictions, np.full((3, num_rows), 0.5))
        result = certify_threshold(sweep, epsilon=0.01, delta=0.1)
        assert result["chosen"]["threshold"] == expected
        assert result["tests"][0] == {"threshold": 0.0, "p_value": 0.0, "certified": True}
    assert result["chosen"]["consistency"] == 1.0 and result["chosen"]["layer_speedup"] == 3.0
    assert result["chosen"]["p_value"] == pytest.approx(0.99**230)
    # Without threshold 0 in the sweep, nothing certified still falls back to running every layer.
    few = sweep_exits(np.zeros((3, 5), dtype=np.int64), np.full((3, 5), 0.5), thresholds=[0.6, 0.9])
    fallback = certify_threshold(few, 0.01, 0.1)["chosen"]
    assert (fallback["threshold"], fallback["mean_exit_layer"], fallback["layer_speedup"]) == (0.0, 3.0, 1.0)


def test_fixed_sequence_testing_stops_at_the_first_threshold_it_cannot_certify():
    assert fixed_sequence_rejections([0.01, 0.5, 0.01], 0.05) == 1
    assert fixed_sequence_rejections([0.01, 0.02], 0.05) == 2
    assert fixed_sequence_rejections([0.2, 0.01], 0.05) == 0
    # 0.3 has no inconsistent row but 0.2 has too many: the walk never reaches 0.3.
    counts = {0.0: 0, 0.1: 0, 0.2: 50, 0.3: 0}
    sweep = {"num_layers": 2, "num_examples": 1000, "full_accuracy": None, "points": [
        {"threshold": threshold, "inconsistent_rows": count, "consistency": 1 - count / 1000, "mean_exit_layer": 1.5,
         "layer_speedup": 4 / 3} for threshold, count in counts.items()]}
    result = certify_threshold(sweep, epsilon=0.01, delta=0.05)
    assert result["chosen"]["threshold"] == 0.1
    assert [test["certified"] for test in result["tests"]] == [True, True, False, False]


def test_accuracy_criterion_counts_rows_the_full_model_gets_right_and_the_exit_wrong():
    # Row 0: exit wrong, full right (a loss). Row 1: exit right, full wrong (inconsistent, but no loss).
    predictions = np.array([[1, 1, 0], [0, 0, 0]])
    sweep = sweep_exits(predictions, np.array([[0.1, 0.1, 0.9], [0.0, 0.0, 0.0]]), labels=[0, 1, 0], thresholds=[0.0, 0.5])
    fast = sweep["points"][1]
    assert (fast["inconsistent_rows"], fast["lost_rows"], fast["accuracy"]) == (2, 1, pytest.approx(2 / 3))
    result = certify_threshold(sweep, 0.5, 0.9, criterion="accuracy")
    assert result["chosen"]["p_value"] == pytest.approx(binomial_tail_p_value(1, 3, 0.5))
    assert "accuracy >= full accuracy - 0.5" in result["guarantee"]
    with pytest.raises(ValueError, match="needs labels"):
        certify_threshold(sweep_exits(predictions, np.zeros((2, 3))), 0.1, 0.1, criterion="accuracy")


@pytest.mark.parametrize("bad", [0, 1, 1.5, -0.1, float("nan"), True, "0.1"])
def test_epsilon_and_delta_must_be_probabilities(bad):
    sweep = sweep_exits(np.zeros((2, 4), dtype=np.int64), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="`epsilon`"):
        certify_threshold(sweep, epsilon=bad, delta=0.1)
    with pytest.raises(ValueError, match="`delta`"):
        certify_threshold(sweep, epsilon=0.1, delta=bad)


def test_sweep_refuses_empty_or_mismatched_rows_and_unknown_criteria():
    with pytest.raises(ValueError, match="`predictions`"):
        sweep_exits(np.zeros((2, 0), dtype=np.int64), np.zeros((2, 0)))
    with pytest.raises(ValueError, match="`entropies`"):
        sweep_exits(np.zeros((2, 3), dtype=np.int64), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="`labels`"):
        sweep_exits(np.zeros((2, 3), dtype=np.int64), np.zeros((2, 3)), labels=[0, 1])
    with pytest.raises(ValueError, match="`criterion`"):
        certify_threshold(sweep_exits(np.zeros((2, 3), dtype=np.int64), np.zeros((2, 3))), 0.1, 0.1, "speed")


def test_held_out_report_sets_the_realised_values_against_the_promise():
    # 100 held-out rows, all leaving at layer 1; 3 disagree with the full model, which is right on all of them.
    predictions = np.zeros((2, 100), dtype=np.int64)
    predictions[0, :3] = 1
    test_sweep = sweep_exits(predictions, np.zeros((2, 100)), labels=np.zeros(100, dtype=np.int64), thresholds=[0.5])
    certification = {"criterion": "consistency", "epsilon": 0.02, "delta": 0.05, "chosen": {"threshold": 0.5}}
    report = held_out_report(test_sweep, certification)
    assert report["promised_consistency"] == pytest.approx(0.98)
    assert (report["realised_consistency"], report["realised_accuracy_relative_to_full"]) == (0.97, 0.97)
    assert report["promise_met"] is False
    hand = 1 - sum(math.comb(100, k) * 0.02**k * 0.98 ** (100 - k) for k in range(3))  # P(>= 3 of 100 at 2%)
    assert report["risk_p_value"] == pytest.approx(hand, rel=1e-9)
    unlabelled = held_out_report(sweep_exits(predictions, np.zeros((2, 100)), thresholds=[0.5]), certification)
    assert unlabelled["realised_accuracy_relative_to_full"] is None and unlabelled["realised_consistency"] == 0.97


def test_unlabelled_texts_load_without_labels(tmp_path):
    (tmp_path / "validation.csv").write_text("text\nred rose\nblue sky\n")
    (tmp_path / "test.csv").write_text("text,label\nred rose,alpha\n")
    assert load_texts(str(tmp_path), "validation") == (["red rose", "blue sky"], None)
    assert load_texts(str(tmp_path), "test") == (["red rose"], ["alpha"])
    with pytest.raises(ValueError, match="--text-column"):
        load_texts(str(tmp_path), "validation", text_column="sentence")
    (tmp_path / "empty.csv").write_text("text\n")
    with pytest.raises(ValueError, match="empty"):
        load_texts(str(tmp_path / "empty.csv"))


def test_calibrate_exits_cli_certifies_on_unlabelled_texts_and_checks_held_out_ones(tmp_path):
    from helpers.tiny_classifiers import exported_folder, synthetic_task

    import shutil

    model_dir = tmp_path / "model"
    shutil.copytree(exported_folder("bert"), model_dir)
    texts, _ = synthetic_task(60, seed=12)
    test_texts, test_labels = synthetic_task(30, seed=13)
    (tmp_path / "validation.csv").write_text("text\n" + "\n".join(texts))  # no labels: consistency needs none
    (tmp_path / "test.csv").write_text("text,label\n" + "\n".join(f"{t},{l}" for t, l in zip(test_texts, test_labels)))
    command = [sys.executable, "-m", "optimum.commands.optimum_cli", "dynexec", "calibrate-exits", "--model",
               str(model_dir), "--dataset", str(tmp_path), "--output", str(tmp_path / "curve"), "--epsilon", "0.2",
               "--delta", "0.2", "--test-split", "test", "--inference-precision", "f32", "--save-threshold"]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-2000:]
    curve = json.loads((tmp_path / "curve" / "calibration.json").read_text())
    # f32 is not this CPU plugin's default (bf16 where it has AMX/AVX512-bf16): read back from the compiled model.
    assert curve["inference_precision"] == "f32" and "applies at f32" in curve["precision_note"]
    assert "inference precision f32" in completed.stdout
    certification = curve["certification"]
    assert (certification["criterion"], certification["epsilon"], certification["delta"]) == ("consistency", 0.2, 0.2)
    # No train split here: half the rows fit the temperatures, the other half certify, and the guarantee counts only
    # the certifying ones.
    assert "has no 'train' split" in completed.stdout
    assert certification["fit_rows"] == 30 and certification["num_examples"] == 30
    assert len(certification["tests"]) == len(CERTIFICATION_THRESHOLDS)
    assert certification["chosen"]["p_value"] <= 0.2 and curve["chosen"]["threshold"] == certification["chosen"]["threshold"]
    held_out = curve["held_out"]
    assert held_out["split"] == "test" and held_out["num_rows"] == 30
    assert held_out["promised_consistency"] == pytest.approx(0.8)
    assert 0.0 <= held_out["realised_consistency"] <= 1.0
    assert held_out["realised_accuracy_relative_to_full"] is not None and "risk_p_value" in held_out
    assert "promised >= 0.8000" in completed.stdout
    saved = json.loads((model_dir / "early_exit_config.json").read_text())
    assert saved["entropy_threshold"] == pytest.approx(certification["chosen"]["threshold"])
    assert saved["calibration"]["inference_precision"] == "f32" and saved["calibration"]["epsilon"] == 0.2
    # The certified score is the entropy at the fitted temperatures: they are saved with the threshold.
    assert saved["exit_temperatures"] == pytest.approx(certification["temperatures"])
    assert saved["calibration"]["temperatures"] == pytest.approx(certification["temperatures"])
    # The accuracy criterion needs the labels this split does not have.
    refused = subprocess.run(command[:11] + ["--criterion", "accuracy"], capture_output=True, text=True, timeout=300)
    assert refused.returncode != 0 and "has no 'label' column" in refused.stderr


def test_calibrate_exits_cli_fits_temperatures_on_the_train_split_and_certifies_on_every_calibration_text(tmp_path):
    from helpers.tiny_classifiers import exported_folder, synthetic_task

    train_texts, _ = synthetic_task(50, seed=14)
    texts, _ = synthetic_task(60, seed=15)
    (tmp_path / "train.csv").write_text("text\n" + "\n".join(train_texts))
    (tmp_path / "validation.csv").write_text("text\n" + "\n".join(texts))
    command = [sys.executable, "-m", "optimum.commands.optimum_cli", "dynexec", "calibrate-exits", "--model",
               str(exported_folder("bert")), "--dataset", str(tmp_path), "--output", str(tmp_path / "curve"),
               "--inference-precision", "f32"]
    completed = subprocess.run(command + ["--epsilon", "0.2", "--delta", "0.2"], capture_output=True, text=True,
                               timeout=300)
    assert completed.returncode == 0, completed.stderr[-2000:]
    certification = json.loads((tmp_path / "curve" / "calibration.json").read_text())["certification"]
    assert (certification["fit_split"], certification["fit_rows"], certification["num_examples"]) == ("train", 50, 60)
    assert "fitted on 50 texts of 'train'" in completed.stdout and "certified on all 60" in completed.stdout
    # At the default 1% / 5%, 60 texts cannot certify any threshold: the message says how many would be needed.
    too_few = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert too_few.returncode == 0, too_few.stderr[-2000:]
    assert "Only threshold 0" in too_few.stdout and "needs at least 299 of them" in " ".join(too_few.stdout.split())
    # The temperatures must come from other texts than those that certify.
    for extra, message in ((["--fit-split", "validation"], "--fit-split 'validation' is also --split"),
                           (["--fit-split", "unlabelled"], "--fit-split 'unlabelled': "),
                           (["--fit-split", "train", "--fit-share", "0.5"], "pass one of them")):
        refused = subprocess.run(command + extra, capture_output=True, text=True, timeout=300)
        assert refused.returncode != 0 and message in refused.stderr, (extra, refused.stderr[-1000:])


def test_cli_help_shows_the_defaults_and_the_library_criteria():
    import argparse

    from optimum_dynexec.commands import calibrate_exits
    from optimum_dynexec.early_exit import calibration

    parser = argparse.ArgumentParser()
    calibrate_exits.CalibrateExitsCommand.parse_args(parser)
    text = " ".join(parser.format_help().split())
    for default in ("Default: consistency.", "Default: 0.01.", "Default: 0.05.", "Default: validation.", "Default: None"):
        assert default in text
    assert "Default: train when --dataset has it" in text
    # Repeated there to keep optimum-cli's start-up light.
    assert calibrate_exits.CRITERIA == calibration.CRITERIA
    assert calibrate_exits.DEFAULT_FIT_SHARE == calibration.DEFAULT_FIT_SHARE
