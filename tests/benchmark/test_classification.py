"""The early-exit benchmark's bookkeeping on a tiny trained model: what it picks, compares and writes."""

import csv
import json
import shutil

import pytest
from helpers.tiny_classifiers import exported_folder, synthetic_task

from lab.benchmark.classification import run_benchmark


def _write_split(folder, name, count, seed):
    texts, labels = synthetic_task(count, seed=seed)
    with open(folder / f"{name}.csv", "w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(["text", "label"])
        writer.writerows(zip(texts, labels))


def test_benchmark_report_is_consistent_with_its_own_measurements(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    _write_split(data, "validation", 60, seed=21)
    _write_split(data, "test", 40, seed=22)
    (data / "summary.json").write_text(json.dumps({"name": "synthetic"}))
    export_dir = tmp_path / "exported"
    shutil.copytree(exported_folder("bert"), export_dir)

    report = run_benchmark(
        data,
        checkpoint="not-used-the-export-exists",
        output_dir=tmp_path / "bench",
        target_accuracy=0.9,
        confidence=0.8,
        batch_sizes=(1, 4),
        precisions=("f32",),
        repeats=2,
        timing_examples=12,
        export_dir=export_dir,
    )

    assert json.loads((tmp_path / "bench" / "benchmark.json").read_text()) == report
    assert not list((tmp_path / "bench").glob(".*partial*"))
    assert report["data"] == {"name": "synthetic"} and report["confidence"] == 0.8
    (result,) = report["results"]
    chosen = result["validation_choice"]
    assert chosen is not None and result["threshold"] == chosen["threshold"] > 0.0
    assert chosen["relative_accuracy_lower_bound"] >= 0.9  # the pick honoured the bound, not just the estimate
    assert result["test_relative_accuracy"] == pytest.approx(
        result["test_early_exit_accuracy"] / result["test_plain_accuracy"]
    )
    assert sum(result["test_exit_histogram"]) == 40
    assert result["test_mean_exit_layer"] == pytest.approx(
        sum(layer * count for layer, count in enumerate(result["test_exit_histogram"], start=1)) / 40
    )
    # f32: a padded batch and the rows run alone agree exactly on exits and predictions.
    assert result["batch_vs_single_same_exit_layer"] == 1.0 and result["batch_vs_single_same_prediction"] == 1.0
    assert result["test_single_row_relative_accuracy"] == result["test_relative_accuracy"]
    for batch_size in ("1", "4"):
        timing = result["throughput"][batch_size]
        assert len(timing["seconds"]["plain"]) == len(timing["seconds"]["early_exit"]) == 2
        ratios = [plain / early for plain, early in zip(timing["seconds"]["plain"], timing["seconds"]["early_exit"])]
        assert min(ratios) <= timing["speedup_median_of_ratios"] <= max(ratios)
    assert (tmp_path / "bench" / "calibration_f32" / "calibration.png").is_file()
