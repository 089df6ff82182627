"""What the early-exit lab scripts share: their command line, plain optimum-intel and the early-exit model loaded
side by side from one exported folder, and interleaved timing."""

import argparse
import json
import statistics
import time


def side_by_side_arguments(description: str, rows: int, repeats: int, batch: bool = True) -> argparse.ArgumentParser:
    """--model, --data, --rows, [--batch,] --repeats and --ov-config, with these defaults."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="Exported early-exit folder.")
    parser.add_argument("--data", required=True, help="Folder with test.csv.")
    parser.add_argument("--rows", type=int, default=rows)
    if batch:
        parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("--ov-config", default="{}", help="JSON dict of OpenVINO properties for both models.")
    return parser


def load_side_by_side(args):
    """`(tokenizer, plain, early, test texts, ov_config)` for parsed `side_by_side_arguments`."""
    from optimum.intel import OVModelForSequenceClassification
    from transformers import AutoTokenizer

    from optimum_dynexec.early_exit import OVEarlyExitModelForSequenceClassification
    from optimum_dynexec.early_exit.data import load_labelled_texts

    ov_config = json.loads(args.ov_config)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    plain = OVModelForSequenceClassification.from_pretrained(args.model, ov_config=ov_config)
    early = OVEarlyExitModelForSequenceClassification.from_pretrained(args.model, ov_config=ov_config)
    texts = load_labelled_texts(args.data, "test")[0][: args.rows]
    return tokenizer, plain, early, texts, ov_config


def interleaved_ms(calls: dict, items, repeats: int, warm_up: int) -> dict:
    """Median milliseconds per item of each of `calls` (name -> function of one item): each call first runs on
    `warm_up` items, then `repeats` passes over `items`, the calls interleaved pass by pass."""
    for call in calls.values():
        for item in items[:warm_up]:
            call(item)
    seconds = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            started = time.perf_counter()
            for item in items:
                call(item)
            seconds[name].append((time.perf_counter() - started) / len(items) * 1e3)
    return {name: statistics.median(values) for name, values in seconds.items()}
