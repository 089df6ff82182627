"""Where speculation's time goes inside the generation loop: the cost of every target and drafter call.

    python -m lab.experiments.speculation_call_profile --head <head dir> [--depth 6] [--cprofile]   # EAGLE, a chain
    python -m lab.experiments.speculation_call_profile --draft [<draft dir>] [--schedule constant]  # a draft model

Generates 96 tokens greedily for 6 held-out prompts of the benchmark fixture (with the package defaults for a draft
model; the fixture's own draft unless a folder is given), twice (the first pass warms up), timing each model call of
the second pass by model, number of rows, and whether the row count differs from that session's previous call
(OpenVINO re-plans a request whose input shape changed); the time outside those calls is the Python loop.
`--cprofile` prints a cProfile of the second pass instead. The per-call figures quoted in docs/benchmarks.md (EAGLE,
sessions 3 and 5; draft model, session 6) come from this script (called eagle_call_profile.py before session 6).
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
    drafter = parser.add_mutually_exclusive_group(required=True)
    drafter.add_argument("--head", help="EAGLE head folder (published format or saved `eagle/`).")
    drafter.add_argument("--draft", nargs="?", const="", help="Draft model folder (default: the fixture's draft).")
    parser.add_argument("--size", default="benchmark")
    parser.add_argument("--depth", type=int, default=6)
    parser.add_argument("--schedule", choices=("heuristic", "constant"),
                        help="Draft model: `num_assistant_tokens_schedule` (default: the package's).")
    parser.add_argument("--cprofile", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(2)

    from transformers import AutoTokenizer

    from lab.fixtures.causal_lm import build_causal_lm_fixture, evaluation_prompts
    from optimum_dynexec.speculative import kv_cache
    from optimum_dynexec.speculative.eagle import TreeSettings
    from optimum_dynexec.speculative.modeling import OVSpeculativeModelForCausalLM

    fixture = build_causal_lm_fixture(args.size)
    tokenizer = AutoTokenizer.from_pretrained(fixture.tokenizer_dir)
    prompts = [tokenizer(text, return_tensors="pt").input_ids
               for text in evaluation_prompts(fixture, "completion", 6, seed=0)]
    drafting = (dict(eagle_head=args.head, eagle_tree=TreeSettings.chain(args.depth)) if args.head
                else dict(draft_model=args.draft or fixture.draft_dir))
    model = OVSpeculativeModelForCausalLM.from_pretrained(
        fixture.target_dir, export=True,
        ov_config={"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": "2", "NUM_STREAMS": "1"}, **drafting)

    schedule = {"num_assistant_tokens_schedule": args.schedule} if args.schedule else {}

    def generate_all():
        for prompt in prompts:
            model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=96, do_sample=False,
                           **schedule)

    generate_all()
    if args.cprofile:
        profile = cProfile.Profile()
        profile.runcall(generate_all)
        pstats.Stats(profile).sort_stats("tottime").print_stats(15)
        return

    seconds = collections.defaultdict(list)
    previous_rows = {}
    run, append = kv_cache.TreeDecoderSession.run, kv_cache.DecoderSession.append

    def record(model_name, session, rows, started):
        changed = previous_rows.get(id(session)) != rows
        previous_rows[id(session)] = rows
        seconds[(model_name, rows, changed)].append(time.perf_counter() - started)

    def timed_run(session, inputs, visible=None, pad_to=0, last_logits_only=False):  # EAGLE: target and head
        started = time.perf_counter()
        request = run(session, inputs, visible, pad_to, last_logits_only)
        record("head" if "features" in inputs else "target", session, inputs["input_ids"].shape[-1], started)
        return request

    def timed_append(session, tokens):  # a draft model's loop: target and draft
        started = time.perf_counter()
        logits = append(session, tokens)
        record("target" if session.request is model.request else "draft", session, len(tokens), started)
        return logits

    kv_cache.TreeDecoderSession.run, kv_cache.DecoderSession.append = timed_run, timed_append
    started = time.perf_counter()
    generate_all()
    total = time.perf_counter() - started
    kv_cache.TreeDecoderSession.run, kv_cache.DecoderSession.append = run, append
    print("| model | rows | row count changed | calls | median ms | total s |")
    print("|---|---|---|---|---|---|")
    for (model_name, rows, changed), values in sorted(seconds.items()):
        label = rows if rows <= 64 else "prompt"  # verifications stay under 64 rows, prompts are longer
        print(f"| {model_name} | {label} | {'yes' if changed else 'no'} | {len(values)} | "
              f"{np.median(values) * 1e3:.2f} | {sum(values):.2f} |")
    inside = sum(sum(values) for values in seconds.values())
    print(f"total {total:.2f} s; inside calls {inside:.2f} s; loop and the rest {total - inside:.2f} s")


if __name__ == "__main__":
    main()
