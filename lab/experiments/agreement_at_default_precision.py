"""How often speculation at the device's default precision gives plain decoding's exact output, and how close the
target's two candidate tokens were wherever it did not (real model, >= 100 prompts).

Lab script (not installed). For each prompt: greedy output of plain optimum-intel at its defaults, of ours (prompt
lookup, the package's defaults) and, as a control, of openvino-genai's plain pipeline on the same IR. At each first
divergence from plain, the target's f32 logits (torch, the same checkpoint) for the two chosen tokens give the
margin: a divergence is a near-tie when the margin is within the 16-bit precision's rounding of the logits.

    python -m lab.experiments.agreement_at_default_precision [--max-new-tokens 64] [--output results.json]
"""

import argparse
import json
import statistics


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--prompt-lookup-num-tokens", type=int, default=5)
    parser.add_argument("--output", default=None)
    args = parser.parse_args()

    import numpy as np
    import openvino as ov
    import openvino_genai
    import torch
    from optimum.intel import OVModelForCausalLM
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from optimum_dynexec import OVSpeculativeModelForCausalLM
    from lab.benchmark.prompt_sets import chat_prompts, encode_prompt, grounded_prompts
    from lab.fixtures.real_model import real_model

    paths = real_model()
    folder = paths["openvino"]
    tokenizer = AutoTokenizer.from_pretrained(folder)
    plain = OVModelForCausalLM.from_pretrained(folder)
    ours = OVSpeculativeModelForCausalLM.from_pretrained(folder)
    genai = openvino_genai.LLMPipeline(str(folder), "CPU")
    reference = AutoModelForCausalLM.from_pretrained(paths["checkpoint"], torch_dtype=torch.float32).eval()
    prompts = (chat_prompts(22, "dev") + chat_prompts(30, "test")
               + grounded_prompts(24, tokenizer, "dev") + grounded_prompts(24, tokenizer, "test"))
    n = args.max_new_tokens
    genai_config = openvino_genai.GenerationConfig()
    genai_config.max_new_tokens = genai_config.min_new_tokens = n
    genai_config.do_sample = False

    def margin(ids, first, second):
        with torch.no_grad():
            logits = reference(torch.tensor([ids])).logits[0, -1].double()
        top = torch.topk(logits, 2).values
        return float(abs(logits[first] - logits[second])), float(top[0] - top[1]), float(logits.abs().max())

    rows = []
    for prompt in tqdm(prompts, desc="prompts"):
        ids = encode_prompt(prompt, tokenizer)
        inputs = torch.tensor([ids])
        settings = dict(attention_mask=torch.ones_like(inputs), max_new_tokens=n, min_new_tokens=n, do_sample=False)
        outputs = {"plain": plain.generate(inputs, **settings)[0, len(ids):].tolist(),
                   "ours": ours.generate(inputs, **settings,
                                         prompt_lookup_num_tokens=args.prompt_lookup_num_tokens)[0, len(ids):].tolist()}
        tensor = ov.Tensor(np.array([ids], dtype=np.int64))
        mask = ov.Tensor(np.ones((1, len(ids)), dtype=np.int64))
        outputs["genai_plain"] = list(genai.generate(openvino_genai.TokenizedInputs(tensor, mask), genai_config).tokens[0])
        row = {"kind": prompt.kind, "prompt_tokens": len(ids)}
        for mode in ("ours", "genai_plain"):
            diverged = next((i for i, (a, b) in enumerate(zip(outputs[mode], outputs["plain"])) if a != b), None)
            entry = {"identical": diverged is None}
            if diverged is not None:
                chosen, theirs = outputs["plain"][diverged], outputs[mode][diverged]
                gap, top_gap, scale = margin(ids + outputs["plain"][:diverged], chosen, theirs)
                entry.update(position=diverged, margin=gap, top2_margin=top_gap, logit_scale=scale)
            row[mode] = entry
        rows.append(row)

    summary = {}
    print(f"{len(rows)} prompts, {n} new tokens each; divergences measured against plain optimum-intel at its defaults")
    for mode in ("ours", "genai_plain"):
        for kind in sorted({row["kind"] for row in rows}) + ["all"]:
            chosen = [row[mode] for row in rows if kind in ("all", row["kind"])]
            margins = [entry["margin"] for entry in chosen if not entry["identical"]]
            relative = [entry["margin"] / entry["logit_scale"] for entry in chosen if not entry["identical"]]
            summary[f"{mode}/{kind}"] = stats = {
                "prompts": len(chosen), "identical": sum(entry["identical"] for entry in chosen),
                "median_margin": statistics.median(margins) if margins else None,
                "max_margin": max(margins) if margins else None,
                "max_relative_margin": max(relative) if relative else None,
                "median_first_divergence": statistics.median(e["position"] for e in chosen if not e["identical"])
                if margins else None,
            }
            print(f"{mode:12s} {kind:9s} identical {stats['identical']}/{stats['prompts']}; at divergences: margin "
                  f"median {stats['median_margin'] if margins else float('nan'):.3f}, max "
                  f"{stats['max_margin'] if margins else float('nan'):.3f} (max {100 * (stats['max_relative_margin'] or 0):.2f}% "
                  f"of the largest |logit|), first divergence at token {stats['median_first_divergence']}")
    if args.output:
        with open(args.output, "w", encoding="utf-8") as stream:
            json.dump({"max_new_tokens": n, "summary": summary, "rows": rows}, stream, indent=2)


if __name__ == "__main__":
    main()
