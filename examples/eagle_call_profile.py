"""Where EAGLE's time goes inside the generation loop: the cost of every target and head call, by rows scored.

    python examples/eagle_call_profile.py --head <head dir> [--depth 6] [--cprofile]

Generates 96 tokens greedily for 6 held-out prompts of the benchmark fixture with a chain of `--depth`, twice (the
first pass warms up), timing each `TreeDecoderSession.run` of the second pass by model and number of rows; the time
outside those calls is the Python loop. `--cprofile` prints a cProfile of the second pass instead. The per-call
figures quoted in docs/benchmarks.md (EAGLE, session 3) come from this script.
"""

import argparse
import collections
import cProfile
import pstats
import time

import numpy as np
import torch


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--head", required=True, help="EAGLE head folder (published format or saved `eagle/`).")
    parser.add_argument("--size", default="benchmark")
    parser.add_argument("--depth", type=int, default=6)
    parser.add_argument("--cprofile", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(2)

    from transformers import AutoTokenizer

    from optimum_dynexec.fixtures.causal_lm import build_causal_lm_fixture, evaluation_prompts
    from optimum_dynexec.speculative import kv_cache
    from optimum_dynexec.speculative.eagle_decoding import TreeSettings
    from optimum_dynexec.speculative.modeling import OVSpeculativeModelForCausalLM

    fixture = build_causal_lm_fixture(args.size)
    tokenizer = AutoTokenizer.from_pretrained(fixture.tokenizer_dir)
    prompts = [tokenizer(text, return_tensors="pt").input_ids
               for text in evaluation_prompts(fixture, "completion", 6, seed=0)]
    model = OVSpeculativeModelForCausalLM.from_pretrained(
        fixture.target_dir, export=True, eagle_head=args.head, eagle_tree=TreeSettings.chain(args.depth),
        ov_config={"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": "2", "NUM_STREAMS": "1"})

    def generate_all():
        for prompt in prompts:
            model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=96, do_sample=False)

    generate_all()
    if args.cprofile:
        profile = cProfile.Profile()
        profile.runcall(generate_all)
        pstats.Stats(profile).sort_stats("tottime").print_stats(15)
        return

    seconds = collections.defaultdict(list)
    run = kv_cache.TreeDecoderSession.run

    def timed_run(session, inputs, visible=None, pad_to=0):
        started = time.perf_counter()
        request = run(session, inputs, visible, pad_to)
        model_name = "head" if "features" in inputs else "target"
        seconds[(model_name, inputs["input_ids"].shape[-1])].append(time.perf_counter() - started)
        return request

    kv_cache.TreeDecoderSession.run = timed_run
    started = time.perf_counter()
    generate_all()
    total = time.perf_counter() - started
    kv_cache.TreeDecoderSession.run = run
    print("| model | rows | calls | median ms | total s |")
    print("|---|---|---|---|---|")
    for (model_name, rows), values in sorted(seconds.items()):
        label = rows if rows <= 16 else "prompt"
        print(f"| {model_name} | {label} | {len(values)} | {np.median(values) * 1e3:.2f} | {sum(values):.2f} |")
    inside = sum(sum(values) for values in seconds.values())
    print(f"total {total:.2f} s; inside calls {inside:.2f} s; loop and the rest {total - inside:.2f} s")


if __name__ == "__main__":
    main()
