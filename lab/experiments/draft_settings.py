"""Draft-model speculation on the benchmark fixture under several drafting settings, against plain `generate()`.

    python -m lab.experiments.draft_settings --modes 4:heuristic:0.4:1,5:heuristic:0,5:constant:0,5:heuristic:0:2:f32

Each mode is `num_assistant_tokens:schedule:assistant_confidence_threshold[:draft threads[:draft precision]]` (threads
default to the target's, precision to the device's fastest). Every mode gets its own model, so a "heuristic" draft length carries over from prompt to prompt as it does
for a user; modes are interleaved prompt by prompt so machine noise hits them alike. Greedy; every output
is checked against plain decoding. Prints a markdown table (median over repeats, and each repeat's seconds) and
writes JSON. The figures behind the package's drafting defaults (docs/benchmarks.md, session 6) come from here.
"""

import argparse
import json
import time
from pathlib import Path
from statistics import median

import torch


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modes", default="4:heuristic:0.4:1,5:heuristic:0")
    parser.add_argument("--size", default="benchmark")
    parser.add_argument("--draft", default=None, help="Draft folder (default: the fixture's draft).")
    parser.add_argument("--prompts", type=int, default=6)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", default="draft_settings.json")
    args = parser.parse_args()
    torch.set_num_threads(2)

    from optimum.intel import OVModelForCausalLM
    from transformers import AutoTokenizer

    from lab.fixtures.causal_lm import build_causal_lm_fixture, evaluation_prompts
    from optimum_dynexec.speculative.modeling import EXACT_PRECISION_CONFIG, OVSpeculativeModelForCausalLM

    fixture = build_causal_lm_fixture(args.size)
    draft_dir = args.draft or fixture.draft_dir
    tokenizer = AutoTokenizer.from_pretrained(fixture.tokenizer_dir)
    prompts = [tokenizer(text, return_tensors="pt").input_ids
               for text in evaluation_prompts(fixture, "completion", args.prompts, seed=0)]
    plain = OVModelForCausalLM.from_pretrained(fixture.target_dir, export=True, ov_config=EXACT_PRECISION_CONFIG)
    modes = {}
    for spec in args.modes.split(","):
        tokens, schedule, confidence, *draft_settings = spec.split(":")
        draft_ov_config = {}
        if draft_settings and draft_settings[0]:
            draft_ov_config["INFERENCE_NUM_THREADS"] = int(draft_settings[0])
        if len(draft_settings) > 1:
            draft_ov_config["INFERENCE_PRECISION_HINT"] = draft_settings[1]
        model = OVSpeculativeModelForCausalLM.from_pretrained(fixture.target_dir, export=True, draft_model=draft_dir,
                                                              draft_ov_config=draft_ov_config or None)
        settings = dict(num_assistant_tokens=int(tokens), num_assistant_tokens_schedule=schedule,
                        assistant_confidence_threshold=float(confidence))
        modes[spec] = (model, settings)

    def generate(model, prompt, **settings):
        output = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=args.max_new_tokens,
                                do_sample=False, **settings)
        return output[0, prompt.shape[1]:].tolist()

    reference = [generate(plain, prompt) for prompt in prompts]
    for model, settings in modes.values():  # warm-up
        generate(model, prompts[0], **settings)
    names = ["plain"] + list(modes)
    seconds = {name: [] for name in names}
    accepted = {name: [] for name in modes}
    identical = {name: True for name in modes}
    for repeat in range(args.repeats):
        spent = {name: 0.0 for name in names}
        for index, prompt in enumerate(prompts):
            for name in names:
                model, settings = (plain, {}) if name == "plain" else modes[name]
                started = time.perf_counter()
                output = generate(model, prompt, **settings)
                spent[name] += time.perf_counter() - started
                if name != "plain":
                    identical[name] &= output == reference[index]
                    if repeat == 0:
                        accepted[name].append(model.last_decoding_stats.mean_accepted_length)
        for name in names:
            seconds[name].append(spent[name])
        print(f"repeat {repeat + 1}/{args.repeats} done", flush=True)

    tokens = sum(len(output) for output in reference)  # the same in every mode: outputs are identical
    baseline = median(seconds["plain"])
    rows = []
    print("| mode (tokens:schedule:confidence[:threads[:precision]]) | tokens/s | vs plain `generate()` | tokens per verification "
          "| identical | seconds per repeat |")
    print("|---|---|---|---|---|---|")
    for name in names:
        row = {"mode": name, "tokens_per_second": round(tokens / median(seconds[name]), 1),
               "speedup": round(baseline / median(seconds[name]), 2),
               "mean_accepted_length": round(sum(accepted[name]) / len(accepted[name]), 2) if name in accepted else None,
               "identical_to_plain": identical.get(name), "seconds_per_repeat": [round(s, 2) for s in seconds[name]]}
        rows.append(row)
        print(f"| {name} | {row['tokens_per_second']} | {row['speedup']}x | {row['mean_accepted_length'] or '-'} | "
              f"{'-' if row['identical_to_plain'] is None else row['identical_to_plain']} | "
              f"{' '.join(str(s) for s in row['seconds_per_repeat'])} |")
    Path(args.output).write_text(json.dumps({
        "fixture": str(fixture.path), "draft": str(draft_dir), "prompts": args.prompts,
        "max_new_tokens": args.max_new_tokens, "repeats": args.repeats,
        "load_average": list(__import__("os").getloadavg()), "results": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
