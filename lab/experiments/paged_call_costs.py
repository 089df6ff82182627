"""What one target call costs on optimum-intel's stateful graph and on its paged-attention rewrite (real model).

Lab script (not installed). The exported SmolLM2 graph at OpenVINO's defaults, a prompt of `--prompt-tokens` random
ids, then verification-like calls after it; each call's tokens are rolled back as a rejected draft would be (the
stateful graph masks them, as `kv_cache.DecoderSession` did; the paged session sets its length). Call sizes either
mixed as prompt lookup mixes them (6, 1, 6, 6, 1, 1, 6) or all 6 (`PagedDecoderSession` pads short calls to the
verification size). Blocks of calls alternate between the setups; medians over repeats.

    python -m lab.experiments.paged_call_costs [--prompt-tokens 400] [--calls 42] [--repeats 3]
"""

import argparse
import statistics
import time

MIXED = (6, 1, 6, 6, 1, 1, 6)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompt-tokens", type=int, default=400)
    parser.add_argument("--calls", type=int, default=42)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import numpy as np
    import openvino as ov

    from lab.fixtures.real_model import real_model
    from optimum_dynexec.speculative.kv_cache import DecoderSession
    from optimum_dynexec.speculative.paged_session import PagedDecoderSession, paged_graph

    core = ov.Core()
    graph = core.read_model(real_model()["openvino"] / "openvino_model.xml")
    properties = {"PERFORMANCE_HINT": "LATENCY"}  # what optimum-intel compiles with
    stateful = DecoderSession(core.compile_model(graph, "CPU", properties).create_infer_request(), stateful=True)
    paged_compiled = core.compile_model(paged_graph(graph), "CPU", properties)
    padded, unpadded = PagedDecoderSession(paged_compiled), PagedDecoderSession(paged_compiled, pad=False)
    rng = np.random.default_rng(0)

    def run(session, sizes):
        prompt = rng.integers(100, 40000, args.prompt_tokens)
        session.reset()
        start = time.perf_counter()
        session.append(prompt, last_logits_only=True)
        prefill = time.perf_counter() - start
        calls = []
        for index in range(args.calls):
            size = sizes[index % len(sizes)]
            tokens = rng.integers(100, 40000, size)
            start = time.perf_counter()
            session.append(tokens)
            calls.append(time.perf_counter() - start)
            session.rollback(session.length - size + 1)  # keep one token, as a rejected draft leaves it
        return prefill, statistics.median(calls)

    setups = {
        "optimum-intel's stateful graph, call sizes mixed": (stateful, MIXED),
        "paged graph, call sizes mixed": (unpadded, MIXED),
        "paged graph, every call 6 tokens (padded)": (padded, MIXED),
    }
    measured = {name: ([], []) for name in setups}
    for _ in range(args.repeats):
        for name, (session, sizes) in setups.items():
            prefill, call = run(session, sizes)
            measured[name][0].append(prefill)
            measured[name][1].append(call)
    print(f"| setup | prefill of {args.prompt_tokens} tokens, ms | one call after it, ms |\n|---|---|---|")
    for name, (prefills, calls) in measured.items():
        print(f"| {name} | {1000 * statistics.median(prefills):.1f} | {1000 * statistics.median(calls):.1f} |")


if __name__ == "__main__":
    main()
