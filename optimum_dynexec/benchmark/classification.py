"""Early-exit classification benchmark on a real labelled text set found on the machine.

Everything runs in one process so the plain optimum-intel model and the early-exit model are timed side by
side (interleaved repeats, medians), on the same exported folder, the same inputs and the same OpenVINO config.

The data: Debian package short descriptions (the first line of `Description:` in the package lists that
`apt-get update` fetches), labelled by the package's archive `Section`, top sections only, deduplicated
(texts seen under two sections are dropped), split 80/10/10 by a hash of the text.

    python -m optimum_dynexec.benchmark.classification data --output runs/debian
    optimum-cli dynexec train-exits --model <encoder> --dataset runs/debian --output runs/exits
    python -m optimum_dynexec.benchmark.classification run --data runs/debian --checkpoint runs/exits --output runs/bench
"""

import argparse
import csv
import glob
import hashlib
import json
import os
import subprocess
from collections import Counter, defaultdict
from pathlib import Path

APT_LISTS_DIR = "/var/lib/apt/lists"


def read_debian_package_lists(lists_dir: str = APT_LISTS_DIR):
    """Yield `(short description, section)` of every binary package in the apt lists (plain, .lz4, .gz, .xz)."""
    paths = sorted(glob.glob(os.path.join(lists_dir, "*_binary-*_Packages*")))
    if not paths:
        raise FileNotFoundError(
            f"No Debian package lists in {lists_dir}. Run `apt-get update` (as root) first, or pass "
            "--fetch-lists to let this script run it."
        )
    for path in paths:
        for stanza in _read_text(path).split("\n\n"):
            description = section = None
            for line in stanza.split("\n"):
                if line.startswith("Description:"):
                    description = line[len("Description:") :].strip()
                elif line.startswith("Section:"):
                    section = line[len("Section:") :].strip().split("/")[-1]  # "contrib/net" -> "net"
            if description and section:
                yield description, section


def build_debian_sections_dataset(
    output_dir, top_sections: int = 10, max_per_section: int = 3000, lists_dir: str = APT_LISTS_DIR
) -> dict:
    """Write train.csv / validation.csv / test.csv (columns text,label) and summary.json into `output_dir`."""
    from ..fixtures.cache import atomic_directory

    sections_of_text = defaultdict(set)
    for description, section in read_debian_package_lists(lists_dir):
        sections_of_text[description].add(section)
    unambiguous = {text: sections.pop() for text, sections in sections_of_text.items() if len(sections) == 1}
    counts = Counter(unambiguous.values())
    kept_sections = sorted(section for section, _ in counts.most_common(top_sections))

    by_section = defaultdict(list)
    for text, section in unambiguous.items():
        if section in kept_sections:
            by_section[section].append(text)
    rows = []
    for section in kept_sections:
        texts = sorted(by_section[section], key=_text_hash)[:max_per_section]  # a deterministic sample
        rows += [(text, section) for text in texts]

    splits = {"train": [], "validation": [], "test": []}
    for text, section in rows:
        bucket = int(_text_hash(text)[:8], 16) % 10
        splits["test" if bucket == 0 else "validation" if bucket == 1 else "train"].append((text, section))
    summary = {
        "source": "Debian package lists (" + lists_dir + "): Description short line labelled by Section",
        "sections": kept_sections,
        "max_per_section": max_per_section,
        "sizes": {name: len(split) for name, split in splits.items()},
    }
    with atomic_directory(Path(output_dir)) as staging:
        for name, split in splits.items():
            with open(staging / f"{name}.csv", "w", newline="", encoding="utf-8") as stream:
                writer = csv.writer(stream)
                writer.writerow(["text", "label"])
                writer.writerows(sorted(split, key=lambda row: _text_hash(row[0])))
        (staging / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _text_hash(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def _read_text(path: str) -> str:
    if path.endswith(".lz4"):
        return subprocess.run(["lz4", "-dc", path], check=True, capture_output=True).stdout.decode("utf-8", "replace")
    if path.endswith(".gz"):
        import gzip

        return gzip.open(path, "rt", encoding="utf-8", errors="replace").read()
    if path.endswith(".xz"):
        import lzma

        return lzma.open(path, "rt", encoding="utf-8", errors="replace").read()
    return open(path, encoding="utf-8", errors="replace").read()


def ensure_debian_dataset(data_dir, fetch_lists: bool = False, **options) -> dict:
    """Build the Debian sections dataset into `data_dir` unless it is there (optionally `apt-get update` first)."""
    data_dir = Path(data_dir)
    if (data_dir / "summary.json").is_file():
        return json.loads((data_dir / "summary.json").read_text())
    if fetch_lists and not glob.glob(os.path.join(APT_LISTS_DIR, "*_binary-*_Packages*")):
        subprocess.run(["apt-get", "update"], check=True)
    return build_debian_sections_dataset(data_dir, **options)


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

    report = {
        "data": json.loads((Path(data_dir) / "summary.json").read_text()),
        "checkpoint": str(checkpoint),
        "machine": {"processor": platform.processor() or platform.machine(), "cpus": os.cpu_count()},
        "openvino": openvino.__version__,
        "target_accuracy": target_accuracy,
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
        )
        chosen = pick_threshold(sweep, target_accuracy)
        picked = threshold if threshold is not None else (chosen["threshold"] if chosen else 0.0)
        save_curve(sweep, output_dir / f"calibration_{precision}", chosen, title=f"Debian sections, validation, {precision}")

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

        # 3. Throughput, interleaving the two models repeat by repeat so background load hits both alike.
        timing_texts = test_texts[:timing_examples]
        throughput = {}
        for batch_size in batch_sizes:
            batches = _batches(encode, timing_texts, batch_size)
            calls = {
                "plain": lambda batch: plain(**batch),
                "early_exit": lambda batch: early(**batch, entropy_threshold=picked),
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
        f"({result['test_relative_accuracy']:.2%}) | mean exit layer {result['test_mean_exit_layer']:.2f} "
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
    data = commands.add_parser("data", help="Build the Debian sections dataset (train/validation/test CSV).")
    data.add_argument("--output", required=True)
    data.add_argument("--top-sections", type=int, default=10)
    data.add_argument("--max-per-section", type=int, default=3000)
    data.add_argument("--fetch-lists", action="store_true", help="Run `apt-get update` if no package lists exist.")
    run = commands.add_parser("run", help="Export, calibrate on validation, measure on test against plain optimum-intel.")
    run.add_argument("--data", required=True, help="Folder written by the `data` command (built if absent).")
    run.add_argument("--checkpoint", required=True, help="Folder written by `optimum-cli dynexec train-exits`.")
    run.add_argument("--output", required=True)
    run.add_argument("--export-dir", default=None, help="Reuse / keep the exported OpenVINO folder here.")
    run.add_argument("--target-accuracy", type=float, default=0.99)
    run.add_argument("--threshold", type=float, default=None, help="Skip the pick and use this threshold.")
    run.add_argument("--batch-sizes", default="1,32")
    run.add_argument("--precisions", default="bf16,f32", help="OpenVINO INFERENCE_PRECISION_HINT values to measure.")
    run.add_argument("--repeats", type=int, default=5)
    run.add_argument("--timing-examples", type=int, default=1024)
    run.add_argument("--fetch-lists", action="store_true")
    run.add_argument(
        "--ov-threads", type=int, default=None, help="INFERENCE_NUM_THREADS for both models (default: OpenVINO's)."
    )
    args = parser.parse_args(argv)
    if args.command == "data":
        print(json.dumps(ensure_debian_dataset(args.output, args.fetch_lists, top_sections=args.top_sections,
                                               max_per_section=args.max_per_section), indent=2))
        return
    ensure_debian_dataset(args.data, args.fetch_lists)
    run_benchmark(
        args.data,
        args.checkpoint,
        args.output,
        target_accuracy=args.target_accuracy,
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
