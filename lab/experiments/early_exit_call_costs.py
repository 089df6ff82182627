"""Where early exit's batch-1 time goes, against the ideal layer speed-up (lab script, not installed).

    python -m lab.experiments.early_exit_call_costs --model <exported early-exit folder> --data <folder with test.csv> \
        [--threshold T] [--rows 400] [--repeats 3] [--ov-config '{"INFERENCE_NUM_THREADS": "1"}']

Per row, the same test rows one at a time, blocks interleaved over repeats, medians:
plain optimum-intel (the whole graph), the early-exit model's `forward` at T, its batch-1 path without `forward`'s
checks and output object, and the early-exit model at threshold 1 (every row leaves at layer 1) and 0 (every layer).
The ideal time at T is plain x mean exit layer / num_layers; the efficiency is ideal time / measured time.
"""


def main():
    from .early_exit_side_by_side import interleaved_ms, load_side_by_side, side_by_side_arguments

    parser = side_by_side_arguments(__doc__, rows=400, repeats=3, batch=False)
    parser.add_argument("--threshold", type=float, default=None, help="Default: the model's saved threshold.")
    args = parser.parse_args()

    import numpy as np

    from optimum_dynexec.early_exit.modeling import EarlyExitCallStats

    tokenizer, plain, early, texts, ov_config = load_side_by_side(args)
    early.compile()
    threshold = early.entropy_threshold if args.threshold is None else args.threshold
    rows = [dict(tokenizer([text], return_tensors="np")) for text in texts]
    exits = np.array([int(early(**row, entropy_threshold=threshold, output_exit_layers=True).exit_layers[0])
                      for row in rows])
    checked = [early._checked_inputs(row["input_ids"], row["attention_mask"], row.get("token_type_ids")) for row in rows]
    position = {id(row): index for index, row in enumerate(rows)}

    def graph_call(row):  # the model's batch-1 path without `forward`'s checks and output object
        early._run_single_row(*checked[position[id(row)]], threshold, EarlyExitCallStats())

    calls = {
        "plain": lambda row: plain(**row),
        f"its batch-1 path without forward's Python": graph_call,
        f"early exit at {threshold}": lambda row: early(**row, entropy_threshold=threshold),
        "early exit at 1 (all leave at layer 1)": lambda row: early(**row, entropy_threshold=1.0),
        "early exit at 0 (every layer)": lambda row: early(**row, entropy_threshold=0.0),
    }
    ms = interleaved_ms(calls, rows, args.repeats, warm_up=50)
    layers = early.num_layers
    mean_exit = float(exits.mean())
    ideal = ms["plain"] * mean_exit / layers
    print(f"{len(rows)} rows, median {np.median([r['input_ids'].shape[1] for r in rows]):.0f} tokens, "
          f"ov_config {ov_config}, threshold {threshold}, mean exit layer {mean_exit:.2f} "
          f"{np.bincount(exits, minlength=layers + 1)[1:].tolist()}")
    for name, value in ms.items():
        print(f"  {name:<42} {value:7.3f} ms per row")
    print(f"  ideal at {threshold} (plain x {mean_exit:.2f}/{layers})       {ideal:7.3f} ms per row")
    print(f"  speed-up {ms['plain'] / ms[f'early exit at {threshold}']:.2f}x of ideal {layers / mean_exit:.2f}x: "
          f"efficiency {ideal / ms[f'early exit at {threshold}']:.0%}")


if __name__ == "__main__":
    main()
