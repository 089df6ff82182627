"""Prompt lookup's draft length and schedule on the real model, against plain optimum-intel at its defaults.

Lab script (not installed): what chose the package's prompt-lookup defaults (a constant length, n-grams up to 3).
Modes interleaved within each repeat, medians; every mode decodes exactly `--max-new-tokens` greedy tokens.

    python -m lab.experiments.prompt_lookup_lengths [--repeats 5] [--max-new-tokens 96] [--output results.json]
"""

import argparse
import json
import statistics
import time

PROMPTS = {
    "chat: list vs tuple": "What are the main differences between a list and a tuple in Python?",
    "chat: hash table": "Explain what a hash table is.",
    "chat: coffee": "How do I make a good cup of coffee?",
    "chat: poem": "Write a short poem about the sea.",
    "grounded: fix spelling": (
        "Fix the spelling in this text and return it:\n\nTeh quick brwon fox jumpd over teh lazy dog. It was a sunny "
        "dya and evryone in the vilage was hapy. The childern playd in the feilds untill the sun went down, and their "
        "parnets watchd them from the porch."
    ),
}
# name -> (prompt_lookup_num_tokens, num_assistant_tokens_schedule)
SETTINGS = {"constant 3": (3, "constant"), "constant 5": (5, "constant"), "constant 8": (8, "constant"),
            "heuristic 5": (5, "heuristic")}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--output", default=None)
    args = parser.parse_args()

    import torch
    from optimum.intel import OVModelForCausalLM
    from transformers import AutoTokenizer

    from optimum_dynexec import OVSpeculativeModelForCausalLM
    from lab.fixtures.real_model import real_model

    folder = real_model()["openvino"]
    tokenizer = AutoTokenizer.from_pretrained(folder)
    plain, ours = OVModelForCausalLM.from_pretrained(folder), OVSpeculativeModelForCausalLM.from_pretrained(folder)
    fixed = dict(max_new_tokens=args.max_new_tokens, min_new_tokens=args.max_new_tokens, do_sample=False)
    rows = []
    print(f"| prompt | plain tok/s | {' | '.join(SETTINGS)} |\n|---|---|" + "---|" * len(SETTINGS))
    for name, question in PROMPTS.items():
        text = tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                             add_generation_prompt=True)
        inputs = tokenizer(text, return_tensors="pt")
        runs = {"plain": lambda: plain.generate(**inputs, **fixed)}
        for setting, (length, schedule) in SETTINGS.items():
            runs[setting] = (lambda length=length, schedule=schedule: ours.generate(
                **inputs, **fixed, prompt_lookup_num_tokens=length, num_assistant_tokens_schedule=schedule,
                max_matching_ngram_size=3))
        calls, reference = {}, runs["plain"]()
        for setting in SETTINGS:
            identical = bool(torch.equal(runs[setting](), reference))
            calls[setting] = (ours.last_decoding_stats.target_calls, identical)
        seconds = {mode: [] for mode in runs}
        for _ in range(args.repeats):
            for mode, run in runs.items():
                start = time.perf_counter()
                run()
                seconds[mode].append(time.perf_counter() - start)
        base = statistics.median(seconds["plain"])
        row = {"prompt": name, "plain_tokens_per_second": args.max_new_tokens / base}
        cells = []
        for setting in SETTINGS:
            ratio = base / statistics.median(seconds[setting])
            row[setting] = {"speedup": ratio, "target_calls": calls[setting][0], "identical": calls[setting][1]}
            cells.append(f"{ratio:.2f}x ({calls[setting][0]} calls{'' if calls[setting][1] else ', differs'})")
        rows.append(row)
        print(f"| {name} | {row['plain_tokens_per_second']:.1f} | {' | '.join(cells)} |")
    if args.output:
        with open(args.output, "w", encoding="utf-8") as stream:
            json.dump({"max_new_tokens": args.max_new_tokens, "repeats": args.repeats, "rows": rows}, stream, indent=2)


if __name__ == "__main__":
    main()
