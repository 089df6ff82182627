"""Per-call costs of the benchmark fixture's target and draft, as the speculative loop calls them.

    python -m lab.experiments.call_costs [--size benchmark] [--calls 40] [--repeats 3]

Prints, for the exported fixture (the IR `optimum-cli dynexec benchmark` uses, f32 like the benchmark):

* the target's cost to score 1, 5 and 9 new tokens after a 200-token context (a verification of k drafts scores
  k + 1), and the draft's cost for 1 token;
* the draft's cost per call in a repeating pattern of input lengths: single tokens only, against a cycle of four
  single tokens and one 2-token call (how the draft caught up after a fully accepted draft before it fed one token
  per call), showing what a changed input shape costs on OpenVINO's CPU plugin.

Medians over `--calls` calls, median again over `--repeats` repeats. The numbers behind the per-call costs quoted
in docs/benchmarks.md.
"""

import argparse
from statistics import median
import time

import numpy as np


def _session(path, threads=None):
    from optimum.intel import OVModelForCausalLM

    from optimum_dynexec.speculative.kv_cache import DecoderSession
    from optimum_dynexec.speculative.modeling import EXACT_PRECISION_CONFIG

    config = dict(EXACT_PRECISION_CONFIG)
    if threads is not None:
        config["INFERENCE_NUM_THREADS"] = threads
    return DecoderSession.for_model(OVModelForCausalLM.from_pretrained(path, ov_config=config))


def _pattern_costs(session, context, pattern, calls):
    """Median cost of each position of `pattern` (lengths of successive calls), repeated `calls` times."""
    costs = [[] for _ in pattern]
    session.reset()
    session.append(context)
    for _ in range(calls):
        for position, length in enumerate(pattern):
            started = time.perf_counter()
            session.append(context[:length])
            costs[position].append(time.perf_counter() - started)
    return [median(position_costs) * 1e3 for position_costs in costs]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="benchmark", help="Causal-LM fixture size (default: benchmark).")
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from lab.benchmark.generation import exported_fixture
    from lab.fixtures.causal_lm import build_causal_lm_fixture

    model_dir = exported_fixture(build_causal_lm_fixture(args.size))
    context = np.random.default_rng(0).integers(10, 4000, 200)
    target, draft = _session(model_dir), _session(model_dir / "draft", threads=1)  # the draft's default: 1 thread

    def repeated(session, pattern):
        runs = [_pattern_costs(session, context, pattern, args.calls) for _ in range(args.repeats)]
        return [median(run[position] for run in runs) for position in range(len(pattern))]

    print("| model | new tokens per call | ms per call |")
    print("|---|---|---|")
    for tokens in (1, 5, 9):
        print(f"| target | {tokens} | {repeated(target, [tokens])[0]:.2f} |")
    print(f"| draft | 1 | {repeated(draft, [1])[0]:.2f} |")
    print()
    print("| draft call pattern (tokens per call) | ms per call, in order | ms per cycle |")
    print("|---|---|---|")
    for pattern in ([1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 2]):
        costs = repeated(draft, pattern)
        print(f"| {pattern} | {' '.join(f'{cost:.2f}' for cost in costs)} | {sum(costs):.2f} |")


if __name__ == "__main__":
    main()
