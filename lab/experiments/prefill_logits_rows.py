"""What scoring only the last prompt row through `lm_head` would save at prefill (real model, OpenVINO defaults).

Lab script (not installed): the exported SmolLM2 graph with EAGLE's `logits_rows` rewrite, prefill of random prompts
with logits for every row (what plain optimum-intel and our chain loop compute today) against the last row only,
interleaved, medians; and one decode step for scale.

    python -m lab.experiments.prefill_logits_rows [--lengths 100 470] [--repeats 6]
"""

import argparse
import statistics
import time


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[100, 470])
    parser.add_argument("--repeats", type=int, default=6)
    args = parser.parse_args()

    import numpy as np
    import openvino as ov

    from lab.fixtures.real_model import real_model
    from optimum_dynexec.speculative.logits_rows import with_logits_rows

    core = ov.Core()
    model = with_logits_rows(core.read_model(real_model()["openvino"] / "openvino_model.xml"))
    request = core.compile_model(model, "CPU", {}).create_infer_request()
    print("| prompt tokens | prefill, logits of every row | prefill, last row only | one decode step |\n|---|---|---|---|")
    for length in args.lengths:
        ids = np.random.default_rng(0).integers(100, 40000, size=(1, length)).astype(np.int64)
        feeds = {"input_ids": ids, "attention_mask": np.ones((1, length), np.int64),
                 "position_ids": np.arange(length)[None], "beam_idx": np.zeros(1, np.int32)}
        seconds = {"all": [], "last": []}
        for _ in range(args.repeats):
            for mode, rows in (("all", np.arange(length)), ("last", np.array([length - 1]))):
                request.reset_state()
                start = time.perf_counter()
                request.infer({**feeds, "logits_rows": rows})
                seconds[mode].append(time.perf_counter() - start)
        steps = []
        for step in range(20):
            start = time.perf_counter()
            request.infer({"input_ids": np.array([[5]]), "attention_mask": np.ones((1, length + step + 1), np.int64),
                           "position_ids": np.array([[length + step]]), "beam_idx": np.zeros(1, np.int32),
                           "logits_rows": np.array([0])})
            steps.append(time.perf_counter() - start)
        print(f"| {length} | {1000 * statistics.median(seconds['all']):.1f} ms | "
              f"{1000 * statistics.median(seconds['last']):.1f} ms | {1000 * statistics.median(steps):.1f} ms |")


if __name__ == "__main__":
    main()
