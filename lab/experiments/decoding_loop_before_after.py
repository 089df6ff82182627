"""The decoding loop timed against the code it replaced, every drafter, on the real model (lab script, not installed).

    python -m lab.experiments.decoding_loop_before_after prepare --output runs/loop-lab
    python -m lab.experiments.decoding_loop_before_after compare --before <checkout of the old commit> --lab runs/loop-lab \
        [--rounds 3] [--output docs/results/decoding-loop-before-after.json]

`prepare` builds two drafters for SmolLM2-135M-Instruct (the real model) that need no training: a draft model cut from
the target (its first `--draft-layers` layers, final norm and lm_head; real weights, never healed) and an EAGLE head
with freshly initialised weights (seeded). They propose poorly: this compares the cost of the loops around the same
calls, not what drafting gains (see docs/benchmarks.md for that). `compare` runs one process per implementation in
turn, `--rounds` times, alternating which goes first (the old one from `--before` through PYTHONPATH), each timing greedy `generate()` with prompt
lookup, the draft model and the EAGLE head (chain and tree) on the same held-out chat and grounded prompts, and checks
that both give the same tokens. Medians per drafter.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

MODES = ("prompt_lookup", "draft", "eagle_chain", "eagle_tree")


def prepare(args):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lab.fixtures.real_model import real_model
    from optimum_dynexec.speculative import OVSpeculativeModelForCausalLM
    from optimum_dynexec.speculative.eagle import EagleHead, eagle_config_from_target, save_eagle_head
    from optimum.intel import OVModelForCausalLM

    paths = real_model()
    output = Path(args.output)
    target = AutoModelForCausalLM.from_pretrained(paths["checkpoint"], dtype=torch.float32)
    draft = AutoModelForCausalLM.from_pretrained(paths["checkpoint"], dtype=torch.float32)
    draft.model.layers = draft.model.layers[: args.draft_layers]
    draft.config.num_hidden_layers = args.draft_layers
    draft.save_pretrained(output / "draft-checkpoint")
    OVModelForCausalLM.from_pretrained(output / "draft-checkpoint", export=True).save_pretrained(output / "draft")
    torch.manual_seed(0)
    head = EagleHead(eagle_config_from_target(target.config))
    save_eagle_head(head, output / "eagle-head")
    model = OVSpeculativeModelForCausalLM.from_pretrained(paths["checkpoint"], export=True,
                                                          eagle_head=output / "eagle-head")
    model.save_pretrained(output / "target-with-eagle")
    AutoTokenizer.from_pretrained(paths["checkpoint"]).save_pretrained(output / "target-with-eagle")
    print(f"wrote {output}")


def measure(args):
    import torch
    from optimum.intel import OVModelForCausalLM
    from transformers import AutoTokenizer

    try:
        from lab.benchmark.prompt_sets import chat_prompts, encode_prompt, grounded_prompts
    except ImportError:  # a checkout from before the lab left the package
        from optimum_dynexec.benchmark.prompt_sets import chat_prompts, encode_prompt, grounded_prompts
    from optimum_dynexec.speculative import OVSpeculativeModelForCausalLM, TreeSettings

    lab = Path(args.lab)
    target_dir = lab / "target-with-eagle"
    tokenizer = AutoTokenizer.from_pretrained(target_dir)
    prompts = chat_prompts(args.prompts) + grounded_prompts(args.prompts, tokenizer)
    inputs = [torch.tensor([encode_prompt(prompt, tokenizer)]) for prompt in prompts]
    model = OVSpeculativeModelForCausalLM.from_pretrained(target_dir)
    draft = OVModelForCausalLM.from_pretrained(lab / "draft")
    calls = {
        "prompt_lookup": dict(prompt_lookup_num_tokens=5),
        "draft": dict(assistant_model=draft),
        "eagle_chain": dict(eagle_tree=TreeSettings.chain(8)),
        "eagle_tree": dict(eagle_tree=TreeSettings(depth=4, top_k=4, total_tokens=12)),
    }
    results = {}
    for mode, extra in calls.items():
        if mode not in args.modes:
            continue
        def run():
            return [model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=args.max_new_tokens,
                                   do_sample=False, **extra)[0, ids.shape[1]:].tolist() for ids in inputs]
        run()  # warm-up: compiles, first-call allocations
        started = time.perf_counter()
        tokens = run()
        seconds = time.perf_counter() - started
        results[mode] = {"seconds": seconds, "new_tokens": sum(map(len, tokens)), "tokens": tokens}
    print(json.dumps(results))


def compare(args):
    here = Path(__file__).resolve()
    runs = {"before": [], "after": []}
    for round_index in range(args.rounds):
        checkout = here.parents[2]
        order = (("before", Path(args.before).resolve()), ("after", checkout))
        for name, root in (order if round_index % 2 == 0 else order[::-1]):  # alternate who goes first
            # The implementation measured comes first on the path; `lab` comes from this checkout.
            env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{checkout}"}
            command = [sys.executable, str(here), "measure", "--lab", args.lab, "--prompts", str(args.prompts),
                       "--max-new-tokens", str(args.max_new_tokens), "--modes", *args.modes]
            completed = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
            runs[name].append(json.loads(completed.stdout.strip().splitlines()[-1]))
            print(f"round {round_index + 1} {name}: " + ", ".join(
                f"{mode} {runs[name][-1][mode]['seconds']:.2f} s" for mode in args.modes), flush=True)
    summary = {}
    print("\n| drafter | before, s | after, s | after / before | same tokens |\n|---|---|---|---|---|")
    for mode in args.modes:
        before = statistics.median(run[mode]["seconds"] for run in runs["before"])
        after = statistics.median(run[mode]["seconds"] for run in runs["after"])
        same = all(run[mode]["tokens"] == runs["before"][0][mode]["tokens"] for run in runs["before"] + runs["after"])
        summary[mode] = {"before_seconds": before, "after_seconds": after, "ratio": after / before,
                         "same_tokens": same, "new_tokens": runs["after"][0][mode]["new_tokens"],
                         "before_runs": [run[mode]["seconds"] for run in runs["before"]],
                         "after_runs": [run[mode]["seconds"] for run in runs["after"]]}
        print(f"| {mode} | {before:.2f} | {after:.2f} | {after / before:.3f} | {same} |")
    if args.output:
        Path(args.output).write_text(json.dumps({"rounds": args.rounds, "prompts_per_kind": args.prompts,
                                                 "max_new_tokens": args.max_new_tokens, "drafters": summary},
                                                indent=2) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    prepare_parser = commands.add_parser("prepare")
    prepare_parser.add_argument("--output", required=True)
    prepare_parser.add_argument("--draft-layers", type=int, default=6)
    for name in ("measure", "compare"):
        sub = commands.add_parser(name)
        sub.add_argument("--lab", required=True)
        sub.add_argument("--prompts", type=int, default=4, help="Prompts per kind (chat, grounded).")
        sub.add_argument("--max-new-tokens", type=int, default=64)
        sub.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
        if name == "compare":
            sub.add_argument("--before", required=True)
            sub.add_argument("--rounds", type=int, default=3)
            sub.add_argument("--output", default=None)
    args = parser.parse_args()
    {"prepare": prepare, "measure": measure, "compare": compare}[args.command](args)


if __name__ == "__main__":
    main()
