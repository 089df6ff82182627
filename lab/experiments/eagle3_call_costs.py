"""Where EAGLE-3 generation spends its time on the real model: target calls, head calls, the loop; chain vs tree.

Run `python -m lab.experiments.eagle3_call_costs` (builds the real model and its EAGLE-3 head on first use). For each
tree shape (chains, with and without `min_confidence`, and EAGLE-2 trees), generates greedily on chat and grounded
prompts (the dev split by default, where shapes are chosen; the benchmark measures on test) and reports tokens per
verification, the median wall time of a target verification call and of one head call (one drafting level or the
call feeding it the accepted pairs), and the head's cost per call against the target's. Timers wrap the target's
call (`append` on the paged target chains run on, `run` on the tree-masked one) and the head's `run`, so the numbers
include each call's Python around OpenVINO's infer. Writes JSON next to the table.
"""

import argparse
import time
from pathlib import Path
from statistics import mean

from lab.experiments.report import write_report

SHAPES = {"chain-2": dict(depth=2), "chain-3": dict(depth=3), "chain-4": dict(depth=4), "chain-8": dict(depth=8),
          "chain-8, stop below 0.2": dict(depth=8, min_confidence=0.2),
          "chain-8, stop below 0.4": dict(depth=8, min_confidence=0.4),
          "tree 6x2:10": dict(depth=6, top_k=2, total_tokens=10), "tree 5x4:12": dict(depth=5, top_k=4, total_tokens=12)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prompts-per-kind", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--split", default="dev", choices=("dev", "test"),
                        help="Prompt split (default dev: shapes are chosen here, the benchmark measures on test).")
    parser.add_argument("--output", type=Path, default=Path("docs/results/real-model-eagle3-call-costs.json"))
    args = parser.parse_args(argv)

    import numpy as np
    import torch
    from transformers import AutoTokenizer

    from lab.benchmark.prompt_sets import builtin_prompts, encode_prompt
    from lab.fixtures.real_eagle3_head import real_model_with_eagle3
    from optimum_dynexec import OVSpeculativeModelForCausalLM
    from optimum_dynexec.speculative.eagle import TreeSettings
    from optimum_dynexec.speculative.paged_session import PagedDecoderSession

    folder = real_model_with_eagle3()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = OVSpeculativeModelForCausalLM.from_pretrained(folder)
    prompts = builtin_prompts(("chat", "grounded"), args.prompts_per_kind, tokenizer, split=args.split)
    model.generate(torch.tensor([[1, 2, 3]]), max_new_tokens=2)  # compiles the EAGLE graphs
    timings = {"target": [], "head": []}
    wrapped = set()

    def timed(session, method, name):
        if id(session) in wrapped:
            return
        wrapped.add(id(session))
        call = getattr(session, method)

        def wrapper(*a, **k):
            start = time.perf_counter()
            result = call(*a, **k)
            timings[name].append(time.perf_counter() - start)
            return result
        setattr(session, method, wrapper)

    rows = []
    for shape, settings in SHAPES.items():
        tree = TreeSettings(**{"total_tokens": settings["depth"], **settings})
        # Chains are verified on the paged target (`append`), trees on the tree-masked one (`run`).
        target, drafter = model.eagle.target_and_drafter(tree)
        timed(target.session, "append" if isinstance(target.session, PagedDecoderSession) else "run", "target")
        timed(drafter.head, "run", "head")
        for kind, items in prompts.items():
            for name in timings:
                timings[name].clear()
            per_verification, new_tokens, seconds = [], 0, 0.0
            for prompt in items:
                ids = torch.tensor([encode_prompt(prompt, tokenizer)])
                start = time.perf_counter()
                output = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=args.max_new_tokens,
                                        do_sample=False, eagle_tree=tree)
                seconds += time.perf_counter() - start
                new_tokens += output.shape[1] - ids.shape[1]
                per_verification.append(model.last_decoding_stats.mean_accepted_length)
            # The first target call of each prompt is its prefill: left out of the per-call mean.
            target_ms = 1000 * float(np.median(timings["target"]))
            head_ms = 1000 * float(np.median(timings["head"]))
            rows.append(dict(shape=shape, kind=kind, tokens_per_verification=round(mean(per_verification), 3),
                             tokens_per_second=round(new_tokens / seconds, 1),
                             target_call_ms_median=round(target_ms, 2), head_call_ms_median=round(head_ms, 2),
                             head_over_target=round(head_ms / target_ms, 3),
                             head_calls_per_verification=round(len(timings["head"]) / max(1, len(timings["target"])), 2)))
            print(rows[-1])
    write_report(args.output, rows, {"folder": str(folder), "split": args.split},
                 [(header, lambda row, key=key: row[key]) for header, key in (
                     ("shape", "shape"), ("kind", "kind"), ("tokens/verification", "tokens_per_verification"),
                     ("tok/s", "tokens_per_second"), ("target call ms", "target_call_ms_median"),
                     ("head call ms", "head_call_ms_median"), ("head/target", "head_over_target"))])

if __name__ == "__main__":
    main()
