"""Early-exit classification benchmark on a real labelled text set found on the machine.

Everything runs in one process so the plain optimum-intel model and the early-exit model are timed side by
side (interleaved repeats, medians), on the same exported folder, the same inputs and the same OpenVINO config.

The data: a real labelled text set built from what the machine holds (`text_sets.py`): Debian package short
descriptions labelled by archive section (`--text-set debian-sections`, the default), or Python docstrings labelled
by the library that holds them (`--text-set python-docstrings`).

    python -m optimum_dynexec.benchmark.classification data --output runs/debian
    optimum-cli dynexec train-exits --model <encoder> --dataset runs/debian --output runs/exits
    python -m optimum_dynexec.benchmark.classification run --data runs/debian --checkpoint runs/exits --output runs/bench
"""

import argparse
import json
import os
from pathlib import Path

from .text_sets import TEXT_SETS, ensure_text_set

def _batches(encode, texts, batch_size):
    return [encode(texts[start : start + batch_size]) for start in range(0, len(texts), batch_size)]


def _time_pass(call, batches) -> float:
    import time

    start = time.perf_counter()
    for batch in batches:
        call(batch)
    return time.perf_counter() - start


def run_benchmark(
    data_dir,
    checkpoint,
    output_dir,
    target_accuracy: float = 0.99,
    confidence=None,
    batch_sizes=(1, 32),
    precisions=("bf16", "f32"),
    repeats: int = 5,
    timing_examples: int = 1024,
    export_dir=None,
    threshold=None,
    ov_threads=None,
):
    """Export `checkpoint`, calibrate on validation, then compare accuracy and throughput on test. Returns the report."""
    import platform
    import tempfile

    import numpy as np
    import openvino
    from optimum.intel import OVModelForSequenceClassification
    from tqdm.auto import tqdm
    from transformers import AutoTokenizer

    from ..early_exit import OVEarlyExitModelForSequenceClassification, export_early_exit
    from ..early_exit.calibration import collect_layer_logits, pick_threshold, save_curve, sweep_thresholds
    from ..early_exit.data import load_labelled_texts

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    export_dir = Path(export_dir) if export_dir else Path(tempfile.mkdtemp(prefix="early-exit-export-"))
    if not (export_dir / "early_exit_config.json").is_file():
        export_early_exit(checkpoint, export_dir)
    tokenizer = AutoTokenizer.from_pretrained(export_dir)
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
        validation_targets = np.asarray([label2id[label] for label in validation_labels])
        test_targets = np.asarray([label2id[label] for label in test_labels])

        # 1. Calibrate on validation: the fastest threshold keeping the target fraction of full accuracy.
        sweep = sweep_thresholds(
            collect_layer_logits(early, tokenizer, validation_texts),
            validation_targets,
            early.early_exit_config.exit_temperatures,
            confidence=confidence,
        )
        chosen = pick_threshold(sweep, target_accuracy)
        picked = threshold if threshold is not None else (chosen["threshold"] if chosen else 0.0)
        save_curve(sweep, output_dir / f"calibration_{precision}", chosen, title=f"{data_summary.get('name', Path(data_dir).name)}, validation, {precision}")

        # 2. Accuracy on test, batch 32, both models; and the early-exit rows against single-row runs.
        def encode(texts):
            return dict(tokenizer(texts, padding=True, return_tensors="np"))

        test_batches = _batches(encode, test_texts, 32)
        plain_predictions = np.concatenate([plain(**batch).logits.argmax(-1) for batch in test_batches])
        early_outputs = [early(**batch, entropy_threshold=picked, output_exit_layers=True) for batch in test_batches]
        early_logits = np.concatenate([output.logits for output in early_outputs])
        early_exits = np.concatenate([output.exit_layers for output in early_outputs])
        single_outputs = [
            early(**encode([text]), entropy_threshold=picked, output_exit_layers=True)
            for text in tqdm(test_texts, desc=f"single-row runs ({precision})", unit="row")
        ]
        single_logits = np.concatenate([output.logits for output in single_outputs])
        single_exits = np.concatenate([output.exit_layers for output in single_outputs])
        plain_accuracy = float((plain_predictions == test_targets).mean())
        early_accuracy = float((early_logits.argmax(-1) == test_targets).mean())
        # Rows alone run the single-row graph: in bf16 its rounding differs from the segments' (rare threshold flips).
        single_row_accuracy = float((single_logits.argmax(-1) == test_targets).mean())

        # 3. Throughput, interleaving the two models repeat by repeat so background load hits both alike.
        timing_texts = test_texts[:timing_examples]
        throughput = {}
        for batch_size in batch_sizes:
            batches = _batches(encode, timing_texts, batch_size)
            calls = {
                # Bound now: the models are deleted after each precision to free their compiled graphs.
                "plain": lambda batch, model=plain: model(**batch),
                "early_exit": lambda batch, model=early: model(**batch, entropy_threshold=picked),
            }
            for call in calls.values():
                _time_pass(call, batches[:20])  # warm-up: compilation of shapes, caches
            seconds = {name: [] for name in calls}
            for _ in tqdm(range(repeats), desc=f"timing batch {batch_size} ({precision})", unit="repeat"):
                for name, call in calls.items():
                    seconds[name].append(_time_pass(call, batches))
            ratios = [plain_s / early_s for plain_s, early_s in zip(seconds["plain"], seconds["early_exit"])]
            throughput[str(batch_size)] = {
                "plain_examples_per_s": len(timing_texts) / float(np.median(seconds["plain"])),
                "early_exit_examples_per_s": len(timing_texts) / float(np.median(seconds["early_exit"])),
                "speedup_median_of_ratios": float(np.median(ratios)),
                "seconds": seconds,
            }
        result = {
            "precision": precision,
            "threshold": picked,
            "validation_choice": chosen,
            "validation_layer_accuracy": sweep["layer_accuracy"],
            "test_plain_accuracy": plain_accuracy,
            "test_early_exit_accuracy": early_accuracy,
            "test_relative_accuracy": early_accuracy / plain_accuracy,
            "test_single_row_relative_accuracy": single_row_accuracy / plain_accuracy,
            "test_mean_exit_layer": float(early_exits.mean()),
            "test_exit_histogram": np.bincount(early_exits, minlength=early.num_layers + 1)[1:].tolist(),
            "batch_vs_single_same_exit_layer": float((early_exits == single_exits).mean()),
            "batch_vs_single_max_abs_logit_diff": float(np.abs(early_logits - single_logits).max()),
            "batch_vs_single_same_prediction": float((early_logits.argmax(-1) == single_logits.argmax(-1)).mean()),
            "throughput": throughput,
        }
        report["results"].append(result)
        _print_result(result)
        del plain, early

    staging = output_dir / ".benchmark.json.partial"
    staging.write_text(json.dumps(report, indent=2) + "\n")
    staging.replace(output_dir / "benchmark.json")
    return report


def _print_result(result) -> None:
    print(
        f"\n[{result['precision']}] threshold {result['threshold']:.3f} | test accuracy plain "
        f"{result['test_plain_accuracy']:.4f}, early exit {result['test_early_exit_accuracy']:.4f} "
        f"({result['test_relative_accuracy']:.2%}; rows one by one {result['test_single_row_relative_accuracy']:.2%}) | mean exit layer {result['test_mean_exit_layer']:.2f} "
        f"{result['test_exit_histogram']} | batch vs single: same exit {result['batch_vs_single_same_exit_layer']:.2%}, "
        f"max |dlogit| {result['batch_vs_single_max_abs_logit_diff']:.2e}"
    )
    print(f"{'batch':>6} {'plain ex/s':>12} {'early-exit ex/s':>16} {'speed-up':>9}")
    for batch_size, numbers in result["throughput"].items():
        print(
            f"{batch_size:>6} {numbers['plain_examples_per_s']:>12.1f} {numbers['early_exit_examples_per_s']:>16.1f} "
            f"{numbers['speedup_median_of_ratios']:>8.2f}x"
        )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    data = commands.add_parser("data", help="Build a labelled text set (train/validation/test CSV).")
    data.add_argument("--output", required=True)
    data.add_argument("--text-set", choices=TEXT_SETS, default="debian-sections")
    data.add_argument("--top-labels", type=int, default=10)
    data.add_argument("--max-per-label", type=int, default=3000)
    data.add_argument("--site-packages", default=None, help="python-docstrings: where to read (default: this venv's).")
    data.add_argument("--fetch-lists", action="store_true", help="Run `apt-get update` if no package lists exist.")
    run = commands.add_parser("run", help="Export, calibrate on validation, measure on test against plain optimum-intel.")
    run.add_argument("--data", required=True, help="Folder written by the `data` command (built if absent).")
    run.add_argument("--checkpoint", required=True, help="Folder written by `optimum-cli dynexec train-exits`.")
    run.add_argument("--output", required=True)
    run.add_argument("--export-dir", default=None, help="Reuse / keep the exported OpenVINO folder here.")
    run.add_argument("--target-accuracy", type=float, default=0.99)
    run.add_argument("--confidence", type=float, default=None, help="Pick on the bootstrap lower bound (e.g. 0.9).")
    run.add_argument("--threshold", type=float, default=None, help="Skip the pick and use this threshold.")
    run.add_argument("--batch-sizes", default="1,32")
    run.add_argument("--precisions", default="bf16,f32", help="OpenVINO INFERENCE_PRECISION_HINT values to measure.")
    run.add_argument("--repeats", type=int, default=5)
    run.add_argument("--timing-examples", type=int, default=1024)
    run.add_argument(
        "--text-set", choices=TEXT_SETS, default=None, help="Built into --data if absent (default debian-sections)."
    )
    run.add_argument("--fetch-lists", action="store_true")
    run.add_argument(
        "--ov-threads", type=int, default=None, help="INFERENCE_NUM_THREADS for both models (default: OpenVINO's)."
    )
    args = parser.parse_args(argv)
    if args.command == "data":
        summary = ensure_text_set(
            args.output,
            args.text_set,
            args.fetch_lists,
            top_labels=args.top_labels,
            max_per_label=args.max_per_label,
            site_packages=args.site_packages,
        )
        print(json.dumps(summary, indent=2))
        return
    ensure_text_set(args.data, args.text_set, args.fetch_lists)
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
