"""`optimum-cli dynexec benchmark --task text-classification` on a user's data: an early-exit folder against plain
optimum-intel, what it measures, what it refuses (before any model loads), and `--help` showing every default."""

import argparse
import csv
import json
import shutil

import numpy as np
import pytest
from helpers.optimum_cli import HEAVY_MODULES, loaded_modules, optimum_cli
from helpers.tiny_classifiers import exported_folder, synthetic_task

from lab.benchmark.classification import benchmark_classifier, format_report, load_benchmark_data
from optimum_dynexec.commands.benchmark import BenchmarkCommand, check_arguments
from optimum_dynexec.commands.calibrate_exits import CalibrateExitsCommand
from optimum_dynexec.commands.train_exits import TrainExitsCommand
from optimum_dynexec.early_exit import OVEarlyExitModelForSequenceClassification

F32 = {"INFERENCE_PRECISION_HINT": "f32"}  # exact agreement between batched and simulated exits


def _write_csv(path, texts, labels, columns=("text", "label")):
    with open(path, "w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(columns)
        writer.writerows(zip(texts, labels))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("exits") / "model"
    shutil.copytree(exported_folder("bert"), folder)
    return folder


def _splits_folder(root):
    data = root / "data"
    data.mkdir()
    _write_csv(data / "train.csv", *synthetic_task(30, seed=20))
    _write_csv(data / "validation.csv", *synthetic_task(60, seed=21))
    _write_csv(data / "test.csv", *synthetic_task(40, seed=22))
    return data


def _parse(*argv):
    parser = argparse.ArgumentParser()
    BenchmarkCommand.parse_args(parser)
    return parser.parse_args(list(argv))


# ----- refusals before anything loads ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--task", "text-classification", "--model", "M", "--dataset", "D", "--max-new-tokens", "8", "--seed", "1"],
         "--seed --max-new-tokens only apply to --task text-generation; drop them or pass --task text-generation."),
        (["--dataset", "D"], "--dataset only applies to --task text-classification; drop it or pass --task "
                             "text-classification."),
        (["--model", "M", "--threshold", "0.2", "--batch-sizes", "8"],
         "--threshold --batch-sizes only apply to --task text-classification"),
        (["--task", "text-classification", "--dataset", "D"], "--task text-classification needs --model"),
        (["--task", "text-classification", "--model", "M"], "--task text-classification needs --dataset"),
        (["--task", "text-classification", "--model", "NOT-A-FOLDER", "--dataset", "D"], "--model 'NOT-A-FOLDER' is not a folder"),
        (["--task", "text-classification", "--model", "EMPTY", "--dataset", "D"],
         "holds neither an exported early-exit model (openvino_model.xml + early_exit_config.json"),
        (["--split", "validation"], "--split validation: the built-in prompt sets have the halves dev and test."),
    ],
    ids=["generation-options", "classification-option", "two-classification-options", "no-model", "no-dataset",
         "missing-model", "not-an-exits-folder", "generation-split"],
)
def test_wrong_combinations_are_refused_in_one_line(argv, message, model_dir, tmp_path):
    (tmp_path / "EMPTY").mkdir()
    argv = [str(tmp_path / "EMPTY") if value == "EMPTY" else str(model_dir) if value == "M" else value
            for value in argv]
    with pytest.raises(ValueError) as caught:
        check_arguments(_parse(*argv))
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_each_task_gets_its_own_defaults(model_dir):
    generation = _parse()
    check_arguments(generation)
    assert (generation.task, generation.model, generation.repeats, generation.split, generation.max_new_tokens) == (
        "text-generation", "real", 3, "test", 128)
    classification = _parse("--task", "text-classification", "--model", str(model_dir), "--dataset", "d.csv")
    check_arguments(classification)
    assert (classification.repeats, classification.batch_sizes, classification.split, classification.text_column,
            classification.target_accuracy) == (5, [1, 32], None, "text", None)
    # An option of the other task is refused even at its default value: giving it is the mistake.
    with pytest.raises(ValueError, match="^--seed only applies to --task text-generation"):
        check_arguments(_parse("--task", "text-classification", "--model", str(model_dir), "--dataset", "d",
                               "--seed", "0"))
    with pytest.raises(ValueError, match="^--text-column only applies to --task text-classification"):
        check_arguments(_parse("--text-column", "text"))


def test_the_cli_refuses_before_importing_anything_heavy(model_dir, tmp_path):
    result = optimum_cli("dynexec", "benchmark", "--task", "text-classification", "--model", str(model_dir),
                         "--dataset", str(tmp_path / "d.csv"), "--prompts-per-kind", "2", blocked=(),
                         report_modules=True, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].endswith(
        "error: --prompts-per-kind only applies to --task text-generation; drop it or pass --task text-generation.")
    assert "Traceback" not in result.stderr
    assert [name for name in HEAVY_MODULES if name in loaded_modules(result)] == []
    assert list(tmp_path.iterdir()) == []


def test_data_errors_name_the_option_and_the_fix(tmp_path):
    data = _splits_folder(tmp_path)
    with pytest.raises(ValueError, match=r"^--split test: --dataset .*test.csv is one file, measured whole"):
        load_benchmark_data(data / "test.csv", "test")
    with pytest.raises(ValueError, match=r"^--dataset .* has no 'dev' split \(dev.csv, .tsv, .json or .jsonl\): "
                                         "name the split to measure with --split"):
        load_benchmark_data(data, "dev")
    with pytest.raises(ValueError, match=r"^--dataset .*missing.csv does not exist"):
        load_benchmark_data(tmp_path / "missing.csv")
    with pytest.raises(ValueError, match=r"has no column\(s\) \['sentence'\].*--text-column"):
        load_benchmark_data(data, text_column="sentence")
    folder = load_benchmark_data(data)  # the test split; the validation split picks the threshold
    assert folder["split"] == "test" and len(folder["texts"]) == 40 and folder["calibration_split"] == "validation"
    assert len(folder["calibration_texts"]) == 60
    measured_on_validation = load_benchmark_data(data, "validation")  # never calibrated on the rows it measures
    assert measured_on_validation["calibration_split"] is None and measured_on_validation["calibration_texts"] is None


# ----- the measurement -----------------------------------------------------------------------------------------


def test_folder_of_splits_is_measured_on_test_with_a_threshold_picked_on_validation(model_dir, tmp_path, capsys):
    from optimum.intel import OVModelForSequenceClassification
    from transformers import AutoTokenizer

    data = _splits_folder(tmp_path)
    report, json_path, png_path = benchmark_classifier(
        model_dir, data, output=tmp_path / "out" / "bench.json", ov_config=F32, target_accuracy=0.9,
        batch_sizes=(1, 4), repeats=2, timing_examples=12,
    )
    assert json.loads(json_path.read_text()) == json.loads(json.dumps(report))
    assert png_path == tmp_path / "out" / "bench.png" and png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["bench.json", "bench.png"]
    assert report["split"] == "test" and report["num_examples"] == 40 and report["ov_config"] == F32
    assert report["plain_inference_precision"] == "f32"  # read back from plain's compiled model
    chosen = report["validation_choice"]
    assert chosen is not None and report["threshold"] == chosen["threshold"] > 0.0
    assert report["threshold_source"] == "picked on the 'validation' split for 90.0% of full accuracy"
    assert report["validation_sweep"]["num_examples"] == 60  # picked on validation, not on the measured rows

    # Plain optimum-intel's accuracy, recomputed here from the same folder and rows.
    texts, labels = synthetic_task(40, seed=22)
    plain = OVModelForSequenceClassification.from_pretrained(str(model_dir), ov_config=F32)
    encoded = AutoTokenizer.from_pretrained(str(model_dir))(texts, padding=True, return_tensors="np")
    predictions = plain(**dict(encoded)).logits.argmax(-1)
    expected = np.mean([plain.config.id2label[int(index)] == label for index, label in zip(predictions, labels)])
    result = report["result"]
    assert result["plain_accuracy"] == pytest.approx(expected)
    assert sum(result["exit_histogram"]) == 40
    # Consistency is agreement with the full model's predictions, and the layer speed-up follows the exit layers.
    early = OVEarlyExitModelForSequenceClassification.from_pretrained(str(model_dir), ov_config=F32)
    early_predictions = early(**dict(encoded), entropy_threshold=report["threshold"]).logits.argmax(-1)
    assert result["consistency"] == pytest.approx(np.mean(early_predictions == predictions))
    assert result["layer_speedup"] == pytest.approx(early.num_layers / result["mean_exit_layer"])
    for numbers in result["throughput"].values():
        assert numbers["share_of_layer_speedup"] == pytest.approx(
            numbers["speedup_median_of_ratios"] / result["layer_speedup"])
    # The plot's curve is of the measured rows; at the threshold used it simulates exactly what was run (f32).
    used = next(point for point in report["curve"]["points"] if point["threshold"] == report["threshold"])
    assert report["curve"]["num_examples"] == 40
    assert used["mean_exit_layer"] == pytest.approx(result["mean_exit_layer"])
    assert used["accuracy"] == pytest.approx(result["early_exit_accuracy"])
    # The 28 texts beyond the 12 timed ones make one pass at batch 1 (10 batches or more), none at batch 4.
    new_texts = result["throughput"]["1"]["new_texts"]
    assert new_texts["examples"] == 28 and result["throughput"]["4"]["new_texts"] is None
    assert new_texts["speedup"] == pytest.approx(new_texts["early_exit_examples_per_s"] / new_texts["plain_examples_per_s"])
    for batch_size in ("1", "4"):
        seconds = result["throughput"][batch_size]["seconds"]
        assert len(seconds["plain"]) == len(seconds["early_exit"]) == 2
        assert result["throughput"][batch_size]["plain_examples_per_s"] == pytest.approx(12 / np.median(seconds["plain"]))

    table = format_report(report)
    assert "batch" in table and "\n     1 " in table and "\n     4 " in table and "new texts: one pass" in table
    assert "plain optimum-intel OVModelForSequenceClassification (ov_config" in table


def test_a_json_file_with_other_columns_and_class_indices_is_measured_whole(model_dir, tmp_path, monkeypatch):
    texts, labels = synthetic_task(24, seed=30)
    indices = {"alpha": 0, "beta": 1, "gamma": 2}
    (tmp_path / "mine.json").write_text(json.dumps(
        [{"sentence": text, "class": indices[label]} for text, label in zip(texts, labels)]))
    monkeypatch.chdir(tmp_path)
    report, json_path, png_path = benchmark_classifier(
        model_dir, tmp_path / "mine.json", text_column="sentence", label_column="class", threshold=0.3,
        batch_sizes=(2,), repeats=1, timing_examples=6,
    )
    # Defaults: the JSON under results/, the plot beside it; OpenVINO's defaults on both sides (ov_config None).
    assert json_path.resolve() == tmp_path / "results" / "benchmark-model-text-classification.json"
    assert png_path == json_path.with_suffix(".png") and json_path.is_file() and png_path.is_file()
    assert report["split"] is None and report["num_examples"] == 24 and report["ov_config"] is None
    assert report["threshold"] == 0.3 and report["threshold_source"] == "--threshold"
    assert report["validation_choice"] is None and list(report["result"]["throughput"]) == ["2"]

    (tmp_path / "other.csv").write_text("text,label\nred rose,crimson\nblue sky,gamma\n")
    with pytest.raises(ValueError, match=r"labels \['crimson'\] are not classes of the model"):
        benchmark_classifier(model_dir, tmp_path / "other.csv", repeats=1)


def test_the_cli_runs_end_to_end_at_the_saved_certified_threshold(model_dir, tmp_path):
    """Without --threshold or --target-accuracy the benchmark measures the threshold `calibrate-exits
    --save-threshold` stored, and says which guarantee it carries."""
    data = _splits_folder(tmp_path)
    certified = tmp_path / "certified"
    shutil.copytree(model_dir, certified)
    config = json.loads((certified / "early_exit_config.json").read_text())
    guarantee = "consistency >= 0.9 with probability >= 0.95 (a test's record)"
    config.update(entropy_threshold=0.35, calibration={"threshold": 0.35, "criterion": "consistency",
                                                      "guarantee": guarantee})
    (certified / "early_exit_config.json").write_text(json.dumps(config))
    result = optimum_cli("dynexec", "benchmark", "--task", "text-classification", "--model", str(certified),
                         "--dataset", str(data), "--repeats", "1", "--timing-examples", "8", "--batch-sizes", "1", "8",
                         "--output", str(tmp_path / "bench.json"), blocked=())
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "bench.json").read_text())
    assert (tmp_path / "bench.png").is_file() and report["task"] == "text-classification"
    assert report["split"] == "test" and report["repeats"] == 1 and list(report["result"]["throughput"]) == ["1", "8"]
    assert f"results written to {tmp_path / 'bench.json'} and {tmp_path / 'bench.png'}" in result.stdout
    assert "early-exit ex/s" in result.stdout and "of layer speed-up" in result.stdout
    assert report["threshold"] == 0.35 and report["validation_choice"] is None
    assert report["threshold_source"] == f"saved in the model: {guarantee}"
    assert report["calibration"]["guarantee"] == guarantee


# ----- --help shows every default ------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [BenchmarkCommand, TrainExitsCommand, CalibrateExitsCommand],
                         ids=["benchmark", "train-exits", "calibrate-exits"])
def test_every_option_with_a_default_says_it_in_help(command):
    parser = argparse.ArgumentParser()
    command.parse_args(parser)
    silent = [
        action.option_strings[0] for action in parser._actions
        if action.option_strings and not action.required and action.nargs != 0  # flags: off unless given
        and "%(default)" not in (action.help or "") and "Default" not in (action.help or "")
        and "Required" not in (action.help or "")
    ]
    assert silent == []


def test_train_exits_help_prints_its_defaults():
    result = optimum_cli("dynexec", "train-exits", "--help")
    assert result.returncode == 0, result.stderr
    flat = " ".join(result.stdout.split())
    for shown in ("Default: joint", "Default: 0.0001", "Default: 0.0005", "Default: 3.0", "Default: 128",
                  "Default: text", "Default: None (validation/dev if present, else 10% of train held out)"):
        assert shown in flat
