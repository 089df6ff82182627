"""EAGLE chains verified on the paged target against the tree-masked target they ran on before, on the real model.

Run `python -m lab.experiments.eagle_chain_targets` (builds the real model and its EAGLE-3 head on first use). The same
model, head and chain (the head's saved default) generate greedily on the test prompts of each kind, once with the
chain verified on the paged-attention target (`SequenceTarget` over `PagedDecoderSession`, what `generate()` uses)
and once on the tree-masked target (`TreeTarget`, what chains ran on before), interleaved, medians over repeats of
each prompt's time. Same drafts and accepted tokens on both (greedy at the same precision), so the difference is the
verification's cost. Writes JSON next to the table.
"""

import argparse
import time
from pathlib import Path
from statistics import median

from lab.experiments.report import write_report


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prompts-per-kind", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, default=Path("docs/results/real-model-eagle3-chain-targets.json"))
    args = parser.parse_args(argv)

    import torch
    from transformers import AutoTokenizer

    from lab.benchmark.prompt_sets import builtin_prompts, encode_prompt
    from lab.fixtures.real_eagle3_head import real_model_with_eagle3
    from optimum_dynexec import OVSpeculativeModelForCausalLM
    from optimum_dynexec.speculative.eagle import TreeSettings

    folder = real_model_with_eagle3()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = OVSpeculativeModelForCausalLM.from_pretrained(folder)
    prompts = builtin_prompts(("chat", "grounded"), args.prompts_per_kind, tokenizer)
    chain = model.eagle.tree
    model.generate(torch.tensor([[1, 2, 3]]), max_new_tokens=2)  # compiles the paged target
    paged, _ = model.eagle.target_and_drafter(chain)
    tree, _ = model.eagle.target_and_drafter(TreeSettings(depth=2, top_k=2, total_tokens=3))  # compiles the other
    targets = {"paged": paged, "tree-masked": tree}

    rows = []
    for kind, items in prompts.items():
        seconds = {name: [0.0] * args.repeats for name in targets}
        tokens = {name: 0 for name in targets}
        outputs = {name: [] for name in targets}
        for prompt in items:
            ids = torch.tensor([encode_prompt(prompt, tokenizer)])
            for repeat in range(args.repeats):
                order = list(targets) if repeat % 2 == 0 else list(reversed(targets))
                for name in order:
                    model.eagle._targets["chain"] = targets[name]  # what `generate()` verifies the chain on
                    start = time.perf_counter()
                    output = model.generate(ids, attention_mask=torch.ones_like(ids),
                                            max_new_tokens=args.max_new_tokens, do_sample=False, eagle_tree=chain)
                    seconds[name][repeat] += time.perf_counter() - start
                    if repeat == 0:
                        tokens[name] += output.shape[1] - ids.shape[1]
                        outputs[name].append(output[0, ids.shape[1]:].tolist())
        model.eagle._targets["chain"] = paged
        speed = {name: tokens[name] / median(seconds[name]) for name in targets}
        rows.append(dict(kind=kind, paged_tokens_per_second=round(speed["paged"], 1),
                         tree_masked_tokens_per_second=round(speed["tree-masked"], 1),
                         paged_over_tree_masked=round(speed["paged"] / speed["tree-masked"], 3),
                         identical_outputs=sum(a == b for a, b in zip(outputs["paged"], outputs["tree-masked"])),
                         prompts=len(items)))
        print(rows[-1])
    write_report(args.output, rows, {"chain": chain.depth, "repeats": args.repeats,
                                     "max_new_tokens": args.max_new_tokens},
                 [("kind", lambda row: row["kind"]),
                  ("paged target, tok/s", lambda row: row["paged_tokens_per_second"]),
                  ("tree-masked target, tok/s", lambda row: row["tree_masked_tokens_per_second"]),
                  ("paged / tree-masked", lambda row: f"{row['paged_over_tree_masked']}x"),
                  ("identical outputs", lambda row: f"{row['identical_outputs']}/{row['prompts']}")])


if __name__ == "__main__":
    main()
