"""Where early exit's batch-1 time goes: OpenVINO kernels, the rest of each segment call, and Python around them.

    python -m lab.experiments.early_exit_call_profile --model <exported early-exit folder> --data <folder with test.csv> \
        --threshold 0.37 [--precision bf16] [--rows 300]

Classifies `--rows` test texts one at a time (as the benchmark's batch-1 pass does), segment by segment with
OpenVINO's per-node counters on (`PERF_COUNT`), and reports per segment call: wall time of `infer()`, the sum of its
kernels' times, and per row the time outside the calls. Then, counters off, per row: the model's own batch-1 path
(the single-row graph, one call), the same rows segment by segment, both at threshold 0 (every layer), and the plain
optimum-intel graph. The figures quoted in docs/benchmarks.md (early exit, sessions 4 and 9) come from this script.
"""

import argparse
import time

import numpy as np


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="Folder written by export_early_exit / save_pretrained.")
    parser.add_argument("--data", required=True, help="Folder with test.csv (text,label).")
    parser.add_argument("--threshold", type=float, required=True)
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--rows", type=int, default=300)
    args = parser.parse_args()

    from optimum.intel import OVModelForSequenceClassification
    from transformers import AutoTokenizer

    import optimum_dynexec.early_exit.modeling as modeling
    from optimum_dynexec.early_exit.data import load_labelled_texts

    ov_config = {"INFERENCE_PRECISION_HINT": args.precision, "INFERENCE_NUM_THREADS": "1"}
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    early = modeling.OVEarlyExitModelForSequenceClassification.from_pretrained(
        args.model, ov_config={**ov_config, "PERF_COUNT": "YES"}
    )
    uncounted = modeling.OVEarlyExitModelForSequenceClassification.from_pretrained(args.model, ov_config=ov_config)
    plain = OVModelForSequenceClassification.from_pretrained(args.model, ov_config=ov_config)
    texts = load_labelled_texts(args.data, "test")[0][: args.rows]
    rows = [dict(tokenizer([text], return_tensors="np")) for text in texts]

    totals = {"wall": 0.0, "kernels": 0.0, "calls": 0}
    infer_shared = modeling._infer_shared

    def counted(request, inputs):
        started = time.perf_counter()
        outputs = infer_shared(request, inputs)
        totals["wall"] += time.perf_counter() - started
        totals["kernels"] += sum(node.real_time.total_seconds() for node in request.profiling_info)
        totals["calls"] += 1
        return outputs

    def per_row_ms(call):
        for row in rows[:30]:  # warm-up: first shapes
            call(row)
        started = time.perf_counter()
        for row in rows:
            call(row)
        return (time.perf_counter() - started) / len(rows) * 1e3

    def segment_by_segment(model, row, threshold):
        return model._run_segments(row["input_ids"], row["attention_mask"], row.get("token_type_ids"), threshold,
                                   modeling.EarlyExitCallStats())

    early.compile()
    modeling._infer_shared = counted
    early_ms = per_row_ms(lambda row: segment_by_segment(early, row, args.threshold))
    modeling._infer_shared = infer_shared
    calls = totals["calls"]
    wall, kernels = totals["wall"] / calls * 1e3, totals["kernels"] / calls * 1e3
    calls_per_row = calls / (len(rows) + 30)
    print(f"segment by segment, threshold {args.threshold}, counters on: {early_ms:.3f} ms per row, "
          f"{calls_per_row:.2f} segment calls per row")
    print(f"  per segment call: infer() wall {wall:.3f} ms, of which kernels {kernels:.3f} ms")
    print(f"  outside the calls: {early_ms - calls_per_row * wall:.3f} ms per row")
    uncounted.compile()
    for threshold in (args.threshold, 0.0):
        single_row = per_row_ms(lambda row: uncounted(**row, entropy_threshold=threshold))
        segments = per_row_ms(lambda row: segment_by_segment(uncounted, row, threshold))
        print(f"counters off, threshold {threshold}: the model's batch-1 path (single-row graph) {single_row:.3f}, "
              f"segment by segment {segments:.3f} ms per row")
    print(f"plain optimum-intel, whole graph: {per_row_ms(lambda row: plain(**row)):.3f} ms per row")
    print(f"median tokens per row: {np.median([row['input_ids'].shape[1] for row in rows]):.0f}")


if __name__ == "__main__":
    main()
