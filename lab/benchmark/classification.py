"""Early-exit classification benchmark: the early-exit model against plain optimum-intel, side by side.

Everything runs in one process so the plain `OVModelForSequenceClassification` and the early-exit model are timed
side by side (interleaved repeats, medians), on the same exported folder, the same inputs and the same OpenVINO
config.

On your own data (`benchmark_classifier`, what `optimum-cli dynexec benchmark --task text-classification` runs):

    optimum-cli dynexec benchmark --task text-classification --model runs/exits --dataset my_data.csv

On a real labelled text set built from what the machine holds (`text_sets.py`): Debian package short descriptions
labelled by archive section (`--text-set debian-sections`, the default), or Python docstrings labelled by the library
that holds them (`--text-set python-docstrings`), at each OpenVINO precision (`run_benchmark`):

    python -m lab.benchmark.classification data --output runs/debian
    optimum-cli dynexec train-exits --model <encoder> --dataset runs/debian --output runs/exits
    python -m lab.benchmark.classification run --data runs/debian --checkpoint runs/exits --output runs/bench

Module level imports only the standard library: optimum-cli reads the defaults below at every start-up.
"""

import argparse
import json
import os
from pathlib import Path
from typing import Optional, Sequence, Tuple

# The command line's defaults (`optimum-cli dynexec benchmark --task text-classification`), one source for both.
from optimum_dynexec.commands.benchmark import (  # noqa: E402
    CLASSIFICATION as TASK,
    CLASSIFICATION_REPEATS as DEFAULT_REPEATS,
    CLASSIFICATION_SPLIT as DEFAULT_SPLIT,
    DEFAULT_BATCH_SIZES,
    DEFAULT_TIMING_EXAMPLES,
)
from optimum_dynexec.early_exit.config import early_exit_folder_kind as model_folder_kind  # noqa: E402

DEFAULT_TARGET_ACCURACY = 0.99
# The fewest batches of texts beyond the timed ones for a pass over new texts (`compare_models`).
NEW_TEXT_BATCHES = 10


def _batches(encode, texts, batch_size):
    return [encode(texts[start : start + batch_size]) for start in range(0, len(texts), batch_size)]


def _time_pass(call, batches) -> float:
    import time

    start = time.perf_counter()
    for batch in batches:
        call(batch)
    return time.perf_counter() - start


def _time_new_texts(calls: dict, batches) -> dict:
    """One pass of both `calls` over `batches` neither has run: batch by batch, the two models alternating which
    goes first. Returns examples/s of each and the speed-up, of the whole pass."""
    import time

    seconds = {name: 0.0 for name in calls}
    examples = 0
    for index, batch in enumerate(batches):
        for name in (list(calls) if index % 2 == 0 else list(calls)[::-1]):
            start = time.perf_counter()
            calls[name](batch)
            seconds[name] += time.perf_counter() - start
        examples += len(batch["input_ids"])
    return {"examples": examples, "plain_examples_per_s": examples / seconds["plain"],
            "early_exit_examples_per_s": examples / seconds["early_exit"],
            "speedup": seconds["plain"] / seconds["early_exit"]}


def _encoder(tokenizer, max_length: Optional[int] = None):
    """Texts -> numpy inputs; `max_length` None truncates at the tokenizer's own limit (a long user text would
    otherwise overflow the position embeddings)."""

    def encode(texts):
        return dict(tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="np"))

    return encode


def load_benchmark_data(dataset, split: Optional[str] = None, text_column: str = "text", label_column: str = "label"):
    """The labelled texts to measure on, and the ones to pick the exit threshold on (None if the data has none).

    `dataset` is a CSV/TSV/JSON/JSONL file (measured whole: `split` must be None), or a folder of split files (the
    layout `write_labelled_splits` writes) or a `datasets` set, measured on `split` (default "test"); its validation
    split, when it has one, is the calibration data. Returns `{"split", "texts", "labels", "calibration_split",
    "calibration_texts", "calibration_labels"}`; ValueError naming the option and the fix.
    """
    from optimum_dynexec.early_exit.data import SPLIT_FILE_SUFFIXES, find_validation_split, has_split, load_labelled_texts

    dataset = str(dataset)
    if Path(dataset).is_file():
        if split is not None:
            raise ValueError(
                f"--split {split}: --dataset {dataset} is one file, measured whole. Drop --split, or pass a folder "
                "holding train/validation/test files."
            )
        texts, labels = load_labelled_texts(dataset, "all", text_column, label_column)
        return {"split": None, "texts": texts, "labels": labels, "calibration_split": None,
                "calibration_texts": None, "calibration_labels": None}
    from optimum_dynexec.utils.model_files import looks_like_local_path

    exists = Path(dataset).is_dir()
    if not exists and (looks_like_local_path(dataset) or Path(dataset).suffix in SPLIT_FILE_SUFFIXES):
        raise ValueError(
            f"--dataset {dataset} does not exist ({Path(dataset).absolute()}): pass a CSV/TSV/JSON/JSONL file or a "
            "folder of split files."
        )
    split = split or DEFAULT_SPLIT
    if not has_split(dataset, split):
        what = "has no" if exists else "is not a file or folder here, nor a cached `datasets` set with a"
        raise ValueError(
            f"--dataset {dataset} {what} {split!r} split ({split}.csv, .tsv, .json or .jsonl): name the split to "
            "measure with --split, or pass a single file."
        )
    texts, labels = load_labelled_texts(dataset, split, text_column, label_column)
    calibration_split = find_validation_split(dataset)
    calibration = (None, None)
    if calibration_split is not None and calibration_split != split:
        calibration = load_labelled_texts(dataset, calibration_split, text_column, label_column)
    else:
        calibration_split = None  # picking the threshold on the measured rows would flatter it
    return {"split": split, "texts": texts, "labels": labels, "calibration_split": calibration_split,
            "calibration_texts": calibration[0], "calibration_labels": calibration[1]}


def label_ids(labels: Sequence[str], label2id: dict, where: str):
    """Class indices of `labels` (class names, or class indices when none is a name): ValueError naming `where`."""
    import numpy as np

    unknown = sorted(set(labels) - set(label2id))
    if not unknown:
        return np.asarray([label2id[label] for label in labels])
    if all(label.strip().isdigit() and int(label) < len(label2id) for label in set(labels)):
        return np.asarray([int(label) for label in labels])  # a dataset labelled by class index
    raise ValueError(
        f"{where}: labels {unknown[:5]} are not classes of the model ({sorted(label2id)[:10]}): name the label "
        "column with --label-column, or pass data labelled with the model's classes."
    )


def calibrate_threshold(early, tokenizer, texts, targets, target_accuracy, confidence=None, max_length=None):
    """The validation sweep and the fastest threshold keeping `target_accuracy` of full accuracy (None if none)."""
    from optimum_dynexec.early_exit.calibration import collect_layer_logits, pick_threshold, sweep_thresholds

    sweep = sweep_thresholds(
        collect_layer_logits(early, tokenizer, texts, max_length=max_length),
        targets,
        early.early_exit_config.exit_temperatures,
        confidence=confidence,
    )
    return sweep, pick_threshold(sweep, target_accuracy)


def compare_models(plain, early, encode, texts, targets, threshold, batch_sizes=DEFAULT_BATCH_SIZES,
                   repeats=DEFAULT_REPEATS, timing_examples=DEFAULT_TIMING_EXAMPLES, description="") -> dict:
    """Accuracy of both models on `texts` (batch 32), the early-exit rows against the same rows run alone, and the
    throughput of both at each batch size (median over `repeats` interleaved repeats on the first `timing_examples`
    texts). Before any of that, at each batch size with at least `NEW_TEXT_BATCHES` batches of texts beyond the
    timed ones, one pass over those new texts (`new_texts` in each batch size's result, else None).
    `description` labels the progress bars."""
    import numpy as np
    from tqdm.auto import tqdm

    calls = {
        "plain": lambda batch: plain(**batch),
        "early_exit": lambda batch: early(**batch, entropy_threshold=threshold),
    }
    timing_texts = texts[:timing_examples]
    timing_batches = {batch_size: _batches(encode, timing_texts, batch_size) for batch_size in batch_sizes}
    # 0. Texts neither model has run yet, before anything else runs them: every input shape the CPU plugin has not
    # planned costs a re-plan at its first call, and the passes below repeat the same batches.
    new_texts = texts[timing_examples:]
    new_text_throughput = {}
    for batch_size in batch_sizes:
        if len(new_texts) < NEW_TEXT_BATCHES * batch_size:
            continue
        for call in calls.values():
            _time_pass(call, timing_batches[batch_size][:20])  # compilation, as for the warm passes
        new_text_throughput[batch_size] = _time_new_texts(calls, _batches(encode, new_texts, batch_size))

    # 1. Accuracy, batch 32, both models; and the early-exit rows against single-row runs.
    batches = _batches(encode, texts, 32)
    plain_predictions = np.concatenate([plain(**batch).logits.argmax(-1) for batch in batches])
    early_outputs = [early(**batch, entropy_threshold=threshold, output_exit_layers=True) for batch in batches]
    early_logits = np.concatenate([output.logits for output in early_outputs])
    early_exits = np.concatenate([output.exit_layers for output in early_outputs])
    single_outputs = [
        early(**encode([text]), entropy_threshold=threshold, output_exit_layers=True)
        for text in tqdm(texts, desc=f"single-row runs{description}", unit="row")
    ]
    single_logits = np.concatenate([output.logits for output in single_outputs])
    single_exits = np.concatenate([output.exit_layers for output in single_outputs])
    # Consistency: the early prediction equals the full model's (what `calibrate-exits` certifies by default).
    consistency = float((early_logits.argmax(-1) == plain_predictions).mean())
    single_row_consistency = float((single_logits.argmax(-1) == plain_predictions).mean())
    layer_speedup = early.num_layers / float(early_exits.mean())
    plain_accuracy = float((plain_predictions == targets).mean())
    early_accuracy = float((early_logits.argmax(-1) == targets).mean())
    # Rows alone run the single-row graph: in bf16 its rounding differs from the segments' (rare threshold flips).
    single_row_accuracy = float((single_logits.argmax(-1) == targets).mean())

    # 2. Throughput, interleaving the two models repeat by repeat so background load hits both alike.
    throughput = {}
    for batch_size in batch_sizes:
        for call in calls.values():
            _time_pass(call, timing_batches[batch_size][:20])  # warm-up: compilation of shapes, caches
        seconds = {name: [] for name in calls}
        for _ in tqdm(range(repeats), desc=f"timing batch {batch_size}{description}", unit="repeat"):
            for name, call in calls.items():
                seconds[name].append(_time_pass(call, timing_batches[batch_size]))
        ratios = [plain_s / early_s for plain_s, early_s in zip(seconds["plain"], seconds["early_exit"])]
        throughput[str(batch_size)] = {
            "plain_examples_per_s": len(timing_texts) / float(np.median(seconds["plain"])),
            "early_exit_examples_per_s": len(timing_texts) / float(np.median(seconds["early_exit"])),
            "speedup_median_of_ratios": float(np.median(ratios)),
            # How much of the layer speed-up (what the exits save) the runtime turns into time.
            "share_of_layer_speedup": float(np.median(ratios)) / layer_speedup,
            "seconds": seconds,
            "new_texts": new_text_throughput.get(batch_size),
        }
    return {
        "threshold": threshold,
        "plain_accuracy": plain_accuracy,
        "early_exit_accuracy": early_accuracy,
        "relative_accuracy": early_accuracy / plain_accuracy if plain_accuracy > 0 else float("nan"),
        "single_row_relative_accuracy": single_row_accuracy / plain_accuracy if plain_accuracy > 0 else float("nan"),
        "consistency": consistency,
        "single_row_consistency": single_row_consistency,
        "mean_exit_layer": float(early_exits.mean()),
        "layer_speedup": layer_speedup,
        "exit_histogram": np.bincount(early_exits, minlength=early.num_layers + 1)[1:].tolist(),
        "batch_vs_single_same_exit_layer": float((early_exits == single_exits).mean()),
        "batch_vs_single_max_abs_logit_diff": float(np.abs(early_logits - single_logits).max()),
        "batch_vs_single_same_prediction": float((early_logits.argmax(-1) == single_logits.argmax(-1)).mean()),
        "throughput": throughput,
    }


def format_comparison(comparison: dict, heading: str) -> str:
    """The accuracy line and the throughput table (one row per batch size) of a `compare_models` result."""
    lines = [
        f"{heading} threshold {comparison['threshold']:.3f} | accuracy plain {comparison['plain_accuracy']:.4f}, "
        f"early exit {comparison['early_exit_accuracy']:.4f} ({comparison['relative_accuracy']:.2%}; rows one by one "
        f"{comparison['single_row_relative_accuracy']:.2%}) | consistency with the full model "
        f"{comparison['consistency']:.2%} (rows one by one {comparison['single_row_consistency']:.2%})",
        f"mean exit layer {comparison['mean_exit_layer']:.2f} {comparison['exit_histogram']}, layer speed-up "
        f"{comparison['layer_speedup']:.2f}x | batch vs single: same exit {comparison['batch_vs_single_same_exit_layer']:.2%}, "
        f"max |dlogit| {comparison['batch_vs_single_max_abs_logit_diff']:.2e}",
        f"{'batch':>6} {'plain ex/s':>12} {'early-exit ex/s':>16} {'speed-up':>9} {'of layer speed-up':>18} "
        f"{'new texts: speed-up':>20}",
    ]
    for batch_size, numbers in comparison["throughput"].items():
        new = numbers.get("new_texts")
        lines.append(
            f"{batch_size:>6} {numbers['plain_examples_per_s']:>12.1f} {numbers['early_exit_examples_per_s']:>16.1f} "
            f"{numbers['speedup_median_of_ratios']:>8.2f}x {numbers['share_of_layer_speedup']:>17.0%} "
            + (f"{new['speedup']:>19.2f}x" if new else f"{'-':>20}")
        )
    if any(numbers.get("new_texts") for numbers in comparison["throughput"].values()):
        lines.append("new texts: one pass, before any other, over the texts beyond the timed ones (input shapes the "
                     "CPU plugin has not planned yet); the other columns repeat the same batches")
    return "\n".join(lines)


def benchmark_classifier(
    model,
    dataset,
    *,
    split: Optional[str] = None,
    text_column: str = "text",
    label_column: str = "label",
    output=None,
    ov_config: Optional[dict] = None,
    threshold: Optional[float] = None,
    target_accuracy: Optional[float] = None,
    confidence: Optional[float] = None,
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    repeats: int = DEFAULT_REPEATS,
    timing_examples: int = DEFAULT_TIMING_EXAMPLES,
    max_length: Optional[int] = None,
) -> Tuple[dict, Path, Path]:
    """Measure the early-exit model in `model` against plain optimum-intel `OVModelForSequenceClassification` loaded
    from the same folder, on your labelled `dataset`; write the JSON report and the accuracy/speed plot next to it.

    `model` is an exported early-exit folder, or a `train-exits` checkpoint (exported once to a temporary folder).
    Both models get `ov_config` (None: OpenVINO's defaults, the baseline a plain optimum-intel user gets). The
    threshold is `threshold`, else (given `target_accuracy`) the fastest one keeping that fraction of full accuracy
    on the data's validation split, else the one saved in the model (certified by `calibrate-exits --save-threshold`,
    whose record goes into the report). `output` is the JSON file (default
    `results/benchmark-<model folder name>-text-classification.json`); the plot is the same path ending in `.png`.
    Returns `(report, json_path, png_path)`. Wrong arguments raise ValueError before any model loads.
    """
    import tempfile

    from optimum_dynexec.utils.io import STAGING_PREFIX, write_text_atomically

    kind = model_folder_kind(model)
    name = Path(model).expanduser().resolve().name
    json_path = Path(output) if output is not None else Path("results") / f"benchmark-{name}-{TASK}.json"
    if json_path.is_dir():
        raise ValueError(f"--output {json_path} is a folder: pass the path of the JSON file to write.")
    png_path = json_path.with_suffix(".png")
    data = load_benchmark_data(dataset, split, text_column, label_column)
    if threshold is None and target_accuracy is not None and data["calibration_split"] is None:
        raise ValueError(f"--target-accuracy picks a threshold on a validation split, and --dataset {dataset} has "
                         "none: add one, or leave --target-accuracy out to use the model's saved threshold.")

    import openvino
    from optimum.intel import OVModelForSequenceClassification
    from transformers import AutoTokenizer

    from optimum_dynexec.early_exit import OVEarlyExitModelForSequenceClassification, export_early_exit
    from optimum_dynexec.early_exit.calibration import DEFAULT_THRESHOLDS, collect_layer_logits, save_curve, sweep_thresholds
    from .generation import _compiled_precision, _machine

    with tempfile.TemporaryDirectory(prefix="early-exit-export-") as scratch:
        folder = Path(model)
        if kind == "checkpoint":
            print(f"Exporting {model} to OpenVINO (a temporary folder, removed at the end)")
            folder = export_early_exit(model, Path(scratch) / "model")
        plain = OVModelForSequenceClassification.from_pretrained(str(folder), ov_config=ov_config)
        early = OVEarlyExitModelForSequenceClassification.from_pretrained(str(folder), ov_config=ov_config)
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        label2id = plain.config.label2id
        targets = label_ids(data["labels"], label2id, f"--dataset {dataset}")

        validation_sweep, chosen = None, None
        if threshold is not None:
            source = "--threshold"
        elif target_accuracy is not None:
            validation_targets = label_ids(data["calibration_labels"], label2id, f"--dataset {dataset}")
            validation_sweep, chosen = calibrate_threshold(early, tokenizer, data["calibration_texts"],
                                                           validation_targets, target_accuracy, confidence, max_length)
            threshold = chosen["threshold"] if chosen else 0.0  # 0.0: no early exit, when nothing keeps the target
            source = f"picked on the {data['calibration_split']!r} split for {target_accuracy:.1%} of full accuracy"
            if chosen is None:
                source = (f"no threshold keeps {target_accuracy:.1%} of full accuracy on the "
                          f"{data['calibration_split']!r} split: 0, every row runs every layer")
        else:
            threshold = early.entropy_threshold
            record = early.early_exit_config.calibration
            if record and record.get("threshold") == threshold:
                source = f"saved in the model: {record.get('guarantee') or record.get('criterion', 'calibrated')}"
            else:
                source = ("saved in the model, not certified (`optimum-cli dynexec calibrate-exits --save-threshold` "
                          "certifies one)")

        comparison = compare_models(plain, early, _encoder(tokenizer, max_length), data["texts"], targets, threshold,
                                    batch_sizes, repeats, timing_examples)
        # The accuracy/speed curve of the measured rows, the threshold used marked on it.
        thresholds = sorted(set(float(value) for value in DEFAULT_THRESHOLDS) | {float(threshold)})
        curve = sweep_thresholds(collect_layer_logits(early, tokenizer, data["texts"], max_length=max_length),
                                 targets, early.early_exit_config.exit_temperatures, thresholds=thresholds)
        used = next(point for point in curve["points"] if point["threshold"] == float(threshold))
        report = {
            "task": TASK,
            "model": str(model),
            "dataset": str(dataset),
            "split": data["split"],
            "num_examples": len(data["texts"]),
            "labels": sorted(label2id, key=label2id.get),
            "ov_config": ov_config,
            "plain_inference_precision": _compiled_precision(plain),
            "threshold": threshold,
            "threshold_source": source,
            "calibration": early.early_exit_config.calibration,
            "target_accuracy": target_accuracy,
            "confidence": confidence,
            "validation_choice": chosen,
            "validation_sweep": validation_sweep,
            "repeats": repeats,
            "timing_examples": min(timing_examples, len(data["texts"])),
            "openvino": openvino.__version__,
            "machine": _machine(),
            "result": comparison,
            "curve": curve,
        }
        del plain, early  # their compiled graphs, before the temporary export goes

    json_path.parent.mkdir(parents=True, exist_ok=True)
    # save_curve writes fixed names into a folder: a scratch folder beside the JSON, then the PNG moves next to it.
    with tempfile.TemporaryDirectory(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=json_path.parent) as plot_dir:
        title = f"{name} on {Path(str(dataset)).name}" + (f" ({data['split']})" if data["split"] else "")
        written = save_curve(curve, plot_dir, used, title=title)
        os.replace(written[1], png_path)
    write_text_atomically(json_path, json.dumps(report, indent=2) + "\n")
    return report, json_path, png_path


def format_report(report: dict) -> str:
    """What `optimum-cli dynexec benchmark --task text-classification` prints: the table and the threshold's source."""
    where = f"{report['dataset']}" + (f", split {report['split']}" if report["split"] else "")
    precision = "every side at its defaults" if not report["ov_config"] else f"ov_config {report['ov_config']} on both"
    return "\n".join([
        format_comparison(report["result"], f"[{where}, {report['num_examples']} examples]"),
        f"threshold {report['threshold']:.3f}: {report['threshold_source']}",
        f"baseline: plain optimum-intel OVModelForSequenceClassification ({precision}, ran at "
        f"{report['plain_inference_precision']}); median of {report['repeats']} interleaved repeat(s) over "
        f"{report['timing_examples']} examples",
    ])


def run_benchmark(
    data_dir,
    checkpoint,
    output_dir,
    target_accuracy: float = DEFAULT_TARGET_ACCURACY,
    confidence=None,
    batch_sizes=DEFAULT_BATCH_SIZES,
    precisions=("bf16", "f32"),
    repeats: int = DEFAULT_REPEATS,
    timing_examples: int = DEFAULT_TIMING_EXAMPLES,
    export_dir=None,
    threshold=None,
    ov_threads=None,
):
    """Export `checkpoint`, calibrate on validation, then compare accuracy and throughput on test at each of
    `precisions` (a text set folder `data_dir`, see `text_sets.py`). Returns the report, also written to
    `output_dir/benchmark.json` with each precision's validation curve in `output_dir/calibration_<precision>/`."""
    import platform
    import tempfile

    import openvino
    from optimum.intel import OVModelForSequenceClassification
    from transformers import AutoTokenizer

    from optimum_dynexec.early_exit import OVEarlyExitModelForSequenceClassification, export_early_exit
    from optimum_dynexec.early_exit.calibration import save_curve
    from optimum_dynexec.early_exit.data import load_labelled_texts
    from optimum_dynexec.utils.io import write_text_atomically

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    export_dir = Path(export_dir) if export_dir else Path(tempfile.mkdtemp(prefix="early-exit-export-"))
    if not (export_dir / "early_exit_config.json").is_file():
        export_early_exit(checkpoint, export_dir)
    tokenizer = AutoTokenizer.from_pretrained(export_dir)
    encode = _encoder(tokenizer)
    validation_texts, validation_labels = load_labelled_texts(str(data_dir), "validation")
    test_texts, test_labels = load_labelled_texts(str(data_dir), "test")

    data_summary = json.loads((Path(data_dir) / "summary.json").read_text())
    report = {
        "data": data_summary,
        "checkpoint": str(checkpoint),
        "machine": {"processor": platform.processor() or platform.machine(), "cpus": os.cpu_count()},
        "openvino": openvino.__version__,
        "target_accuracy": target_accuracy,
        "confidence": confidence,
        "repeats": repeats,
        "timing_examples": timing_examples,
        "ov_threads": ov_threads,
        "results": [],
    }
    for precision in precisions:
        ov_config = {"INFERENCE_PRECISION_HINT": precision}
        if ov_threads:
            ov_config["INFERENCE_NUM_THREADS"] = str(ov_threads)
        plain = OVModelForSequenceClassification.from_pretrained(str(export_dir), ov_config=ov_config)
        early = OVEarlyExitModelForSequenceClassification.from_pretrained(str(export_dir), ov_config=ov_config)
        label2id = plain.config.label2id
        validation_targets = label_ids(validation_labels, label2id, f"{data_dir} (validation)")
        test_targets = label_ids(test_labels, label2id, f"{data_dir} (test)")

        # 1. Calibrate on validation: the fastest threshold keeping the target fraction of full accuracy.
        sweep, chosen = calibrate_threshold(early, tokenizer, validation_texts, validation_targets, target_accuracy,
                                            confidence)
        picked = threshold if threshold is not None else (chosen["threshold"] if chosen else 0.0)
        save_curve(sweep, output_dir / f"calibration_{precision}", chosen, title=f"{data_summary.get('name', Path(data_dir).name)}, validation, {precision}")

        # 2. and 3. Accuracy and throughput on test.
        comparison = compare_models(plain, early, encode, test_texts, test_targets, picked, batch_sizes, repeats,
                                    timing_examples, description=f" ({precision})")
        print("\n" + format_comparison(comparison, f"[{precision}]"))
        test_keys = ("plain_accuracy", "early_exit_accuracy", "relative_accuracy", "single_row_relative_accuracy",
                     "mean_exit_layer", "exit_histogram")
        result = {
            "precision": precision,
            "threshold": picked,
            "validation_choice": chosen,
            "validation_layer_accuracy": sweep["layer_accuracy"],
            **{(f"test_{key}" if key in test_keys else key): value for key, value in comparison.items()
               if key != "threshold"},
        }
        report["results"].append(result)
        del plain, early  # frees their compiled graphs before the next precision

    write_text_atomically(output_dir / "benchmark.json", json.dumps(report, indent=2) + "\n")
    return report


def main(argv=None):
    """`python -m lab.benchmark.classification data|run`: build a text set, or run the per-precision
    benchmark on one (for your own data use `optimum-cli dynexec benchmark --task text-classification`)."""
    from .text_sets import TEXT_SETS, ensure_text_set

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    data = commands.add_parser("data", help="Build a labelled text set (train/validation/test CSV).",
                               formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    data.add_argument("--output", required=True, help="A new or empty folder (or a text set built here before).")
    data.add_argument("--text-set", choices=TEXT_SETS, default="debian-sections", help="Which set to build.")
    data.add_argument("--top-labels", type=int, default=10, help="Keep the biggest labels.")
    data.add_argument("--max-per-label", type=int, default=3000, help="Texts kept per label.")
    data.add_argument("--site-packages", default=None, help="python-docstrings: where to read (None: this venv's).")
    data.add_argument("--fetch-lists", action="store_true", help="Run `apt-get update` if no package lists exist.")
    run = commands.add_parser("run", help="Export, calibrate on validation, measure on test against plain optimum-intel.",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    run.add_argument("--data", required=True,
                     help="Folder written by the `data` command (built there if it is new or empty).")
    run.add_argument("--checkpoint", required=True, help="Folder written by `optimum-cli dynexec train-exits`.")
    run.add_argument("--output", required=True, help="Folder for benchmark.json and the calibration curves.")
    run.add_argument("--export-dir", default=None, help="Reuse / keep the exported OpenVINO folder here.")
    run.add_argument("--target-accuracy", type=float, default=DEFAULT_TARGET_ACCURACY,
                     help="Fraction of full accuracy the picked threshold keeps on validation.")
    run.add_argument("--confidence", type=float, default=None, help="Pick on the bootstrap lower bound (e.g. 0.9).")
    run.add_argument("--threshold", type=float, default=None, help="Skip the pick and use this threshold.")
    run.add_argument("--batch-sizes", default=",".join(map(str, DEFAULT_BATCH_SIZES)), help="Comma-separated.")
    run.add_argument("--precisions", default="bf16,f32", help="OpenVINO INFERENCE_PRECISION_HINT values to measure.")
    run.add_argument("--repeats", type=int, default=DEFAULT_REPEATS, help="Interleaved timed repeats (median).")
    run.add_argument("--timing-examples", type=int, default=DEFAULT_TIMING_EXAMPLES, help="Test texts timed.")
    run.add_argument(
        "--text-set", choices=TEXT_SETS, default=None, help="Built into --data if absent (None: debian-sections)."
    )
    run.add_argument("--fetch-lists", action="store_true", help="Run `apt-get update` if no package lists exist.")
    run.add_argument(
        "--ov-threads", type=int, default=None, help="INFERENCE_NUM_THREADS for both models (None: OpenVINO's)."
    )
    args = parser.parse_args(argv)
    try:
        if args.command == "data":
            summary = ensure_text_set(
                args.output,
                args.text_set,
                args.fetch_lists,
                argument="--output",
                top_labels=args.top_labels,
                max_per_label=args.max_per_label,
                site_packages=args.site_packages,
            )
            print(json.dumps(summary, indent=2))
            return
        ensure_text_set(args.data, args.text_set, args.fetch_lists, argument="--data")
    except ValueError as error:  # a folder that is not ours, another set: one line, nothing touched
        parser.error(str(error))
    run_benchmark(
        args.data,
        args.checkpoint,
        args.output,
        target_accuracy=args.target_accuracy,
        confidence=args.confidence,
        batch_sizes=tuple(int(size) for size in args.batch_sizes.split(",")),
        precisions=tuple(args.precisions.split(",")),
        repeats=args.repeats,
        timing_examples=args.timing_examples,
        export_dir=args.export_dir,
        threshold=args.threshold,
        ov_threads=args.ov_threads,
    )


if __name__ == "__main__":
    main()
