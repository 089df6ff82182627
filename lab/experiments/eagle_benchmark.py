"""EAGLE on the benchmark fixture: plain greedy vs draft-model speculation vs EAGLE chain vs EAGLE-2 trees.

    python -m lab.experiments.eagle_benchmark --head <trained head dir> [--prompts 8] [--max-new-tokens 128]

Every mode decodes the same held-out prompts (stdlib files the fixture never trained on) greedily; modes are
interleaved within each repeat so machine noise hits them alike; tokens/s is total new tokens / total time, the
median over repeats. Every speculative output is checked token by token against plain decoding.
Each repeat also times the prompts' prefill alone (plain `generate()` of one token); "decode phase" divides the new
tokens after the first by each mode's time beyond that prefill, the part speculation can speed up.
Writes a JSON next to `--output` and prints a markdown table.
"""

import argparse
import json
import time
from pathlib import Path
from statistics import median

import numpy as np
import torch


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--head", required=True, help="EAGLE head folder trained for the fixture's target; several "
                        "comma-separated (e.g. the same head exported at two precisions) are timed side by side.")
    parser.add_argument("--size", default="benchmark", help="Causal-LM fixture size (default: benchmark).")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--trees", default="chain:5,6x4:12,6x6:16,7x8:24",
                        help="EAGLE modes: `chain:D` or `DxK:N` (depth x top_k : total_tokens), comma-separated.")
    parser.add_argument("--no-draft", action="store_true", help="Skip draft-model speculation.")
    parser.add_argument("--draft", default=None,
                        help="Draft model folder(s), comma-separated, instead of the fixture's draft (the "
                        "self-distilled one for the benchmark size; e.g. its `corpus_draft_dir`); each is timed as "
                        "its own mode.")
    parser.add_argument("--weight-format", choices=("fp32", "int8"), default="fp32",
                        help="int8: NNCF 8-bit weights for the target (plain and speculative alike: the same IR), the "
                        "head and the draft.")
    parser.add_argument("--output", default="eagle_benchmark.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from optimum.intel import OVModelForCausalLM
    from transformers import AutoTokenizer

    from lab.fixtures.causal_lm import build_causal_lm_fixture, evaluation_prompts
    from optimum_dynexec.speculative.decoding import DecodingStats, speculative_decode
    from optimum_dynexec.speculative.eagle import TreeSettings
    from optimum_dynexec.speculative.kv_cache import DecoderSession
    from optimum_dynexec.speculative.targets import SequenceTarget
    from optimum_dynexec.speculative.modeling import OVSpeculativeModelForCausalLM, target_ov_config

    fixture = build_causal_lm_fixture(args.size)
    tokenizer = AutoTokenizer.from_pretrained(fixture.tokenizer_dir)
    prompts = [tokenizer(text, return_tensors="pt").input_ids
               for text in evaluation_prompts(fixture, "completion", args.prompts, seed=0)]
    ov_config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": str(args.threads), "NUM_STREAMS": "1"}
    # The same 8-bit compression of the same weights gives the same IR for plain and speculative models.
    quantization = {"quantization_config": {"bits": 8}} if args.weight_format == "int8" else {}

    plain = OVModelForCausalLM.from_pretrained(fixture.target_dir, export=True,
                                               ov_config=target_ov_config(ov_config), **quantization)
    heads = args.head.split(",")
    eagles = {Path(head).name: OVSpeculativeModelForCausalLM.from_pretrained(
        fixture.target_dir, export=True, ov_config=ov_config, eagle_head=head, **quantization) for head in heads}
    modes = {}
    plain_session = SequenceTarget(DecoderSession.for_model(plain))

    def plain_lean(prompt):
        stats = DecodingStats()
        tokens = speculative_decode(plain_session, None, prompt[0].numpy(), args.max_new_tokens,
                                    [tokenizer.eos_token_id], stats=stats)
        return tokens.tolist(), stats

    def plain_generate(prompt):
        output = plain.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=args.max_new_tokens,
                                do_sample=False)
        return output[0, prompt.shape[1]:].tolist(), None

    modes["plain (optimum generate)"] = plain_generate
    modes["plain (lean loop)"] = plain_lean
    drafts = [] if args.no_draft else (args.draft.split(",") if args.draft else [str(fixture.draft_dir)])
    for draft_dir in drafts:
        drafted = OVSpeculativeModelForCausalLM.from_pretrained(fixture.target_dir, export=True, ov_config=ov_config,
                                                                draft_model=draft_dir, **quantization)

        def draft_mode(prompt, drafted=drafted):
            output = drafted.generate(prompt, attention_mask=torch.ones_like(prompt),
                                      max_new_tokens=args.max_new_tokens, do_sample=False)
            return output[0, prompt.shape[1]:].tolist(), drafted.last_decoding_stats

        # The fixture's drafts are all called `draft`: name them by their folder's parent too.
        label = "" if not args.draft else f" ({Path(draft_dir).parent.name}/{Path(draft_dir).name})"
        modes[f"draft model (heuristic){label}"] = draft_mode
    for head_name, eagle in eagles.items():
        for spec in args.trees.split(","):
            if spec.startswith("chain:"):
                tree = TreeSettings.chain(int(spec.split(":")[1]))
                name = f"EAGLE chain depth {tree.depth}"
            else:
                shape, total = spec.split(":")
                depth, top_k = shape.split("x")
                tree = TreeSettings(int(depth), int(top_k), int(total))
                name = f"EAGLE-2 tree d{tree.depth} k{tree.top_k} n{tree.total_tokens}"
            if len(eagles) > 1:
                name += f" ({head_name})"

            def eagle_mode(prompt, tree=tree, eagle=eagle):
                output = eagle.generate(prompt, attention_mask=torch.ones_like(prompt),
                                        max_new_tokens=args.max_new_tokens, do_sample=False, eagle_tree=tree)
                return output[0, prompt.shape[1]:].tolist(), eagle.last_decoding_stats

            modes[name] = eagle_mode

    def prefill(prompt):  # the first token alone: the prompt's prefill, the same work in every mode
        plain.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=1, do_sample=False)

    prefill(prompts[0])
    for run in modes.values():  # warm-up: compile, first-shape costs
        run(prompts[0])
    reference = {i: plain_lean(prompt)[0] for i, prompt in enumerate(prompts)}
    seconds = {name: [] for name in modes}
    tokens = {name: 0 for name in modes}
    accepted = {name: [] for name in modes}
    identical = {name: True for name in modes}
    prefill_seconds = []
    for repeat in range(args.repeats):
        per_mode = {name: 0.0 for name in modes}
        started = time.perf_counter()
        for prompt in prompts:
            prefill(prompt)
        prefill_seconds.append(time.perf_counter() - started)
        for index, prompt in enumerate(prompts):
            for name, run in modes.items():
                started = time.perf_counter()
                output, stats = run(prompt)
                per_mode[name] += time.perf_counter() - started
                identical[name] &= output == reference[index]
                if repeat == 0:
                    tokens[name] += len(output)
                    if stats is not None and stats.accepted_lengths:
                        accepted[name].append(stats.mean_accepted_length)
        for name in modes:
            seconds[name].append(per_mode[name])
        print(f"repeat {repeat + 1}/{args.repeats} done", flush=True)

    rates = {name: tokens[name] / median(seconds[name]) for name in modes}
    # After the first token: new tokens but the first over the time beyond plain's prefill. Every mode pays that
    # prefill (EAGLE's head also encodes the prompt, which stays in its decode time), so this isolates decoding.
    prefill_time = median(prefill_seconds)
    decode_rates = {name: (tokens[name] - len(prompts)) / (median(seconds[name]) - prefill_time) for name in modes}
    baseline = max(rates["plain (optimum generate)"], rates["plain (lean loop)"])
    rows = []
    for name in modes:
        rows.append({
            "mode": name,
            "tokens_per_second": round(rates[name], 1),
            "speedup_vs_best_plain": round(rates[name] / baseline, 2),
            "speedup_vs_optimum_generate": round(rates[name] / rates["plain (optimum generate)"], 2),
            "decode_speedup_vs_optimum_generate": round(decode_rates[name] / decode_rates["plain (optimum generate)"],
                                                        2),
            "mean_accepted_length": round(float(np.mean(accepted[name])), 2) if accepted[name] else None,
            "identical_to_plain": identical[name],
            "seconds_per_repeat": [round(s, 2) for s in seconds[name]],
        })
    print(f"prefill of the {len(prompts)} prompts: {prefill_time:.3f} s "
          f"({prefill_time / median(seconds['plain (optimum generate)']):.0%} of plain generate()'s time)")
    print("| mode | tokens/s | vs best plain | vs optimum generate | decode phase vs optimum generate "
          "| tokens per verification | identical |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['mode']} | {row['tokens_per_second']} | {row['speedup_vs_best_plain']}x | "
              f"{row['speedup_vs_optimum_generate']}x | {row['decode_speedup_vs_optimum_generate']}x | "
              f"{row['mean_accepted_length'] or '-'} | {row['identical_to_plain']} |")
    Path(args.output).write_text(json.dumps({
        "fixture": str(fixture.path), "head": args.head, "prompts": args.prompts,
        "max_new_tokens": args.max_new_tokens, "repeats": args.repeats, "threads": args.threads,
        "weight_format": args.weight_format,
        "load_average": list(__import__("os").getloadavg()), "prefill_seconds": [round(t, 3) for t in prefill_seconds],
        "results": rows,
    }, indent=2) + "\n")


if __name__ == "__main__":
    main()
