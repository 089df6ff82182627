"""Generate with speculation where you used `OVModelForCausalLM`: prompt lookup, a draft model, an EAGLE head.

    python examples/speculative_generate.py <target folder> "Rewrite this sentence without typos: Teh cat sat." \
        [--draft <draft folder>] [--eagle-head <head folder, e.g. from examples/train_eagle_head.py>]

`<target folder>` is an OpenVINO export or a transformers checkpoint (exported on load); see docs/speculative.md.
"""

import argparse

from transformers import AutoTokenizer

from optimum_dynexec import OVSpeculativeModelForCausalLM


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target")
    parser.add_argument("prompt")
    parser.add_argument("--draft", default=None, help="A small model with the target's tokenizer.")
    parser.add_argument("--eagle-head", default=None, help="An EAGLE head trained for the target (needs a checkpoint).")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    args = parser.parse_args()

    tokenizer = AutoTokenizer.from_pretrained(args.target)
    model = OVSpeculativeModelForCausalLM.from_pretrained(
        args.target, export=args.eagle_head is not None, draft_model=args.draft, eagle_head=args.eagle_head)
    inputs = tokenizer.apply_chat_template([{"role": "user", "content": args.prompt}], add_generation_prompt=True,
                                           return_tensors="pt", return_dict=True)
    runs = {"prompt lookup": dict(prompt_lookup_num_tokens=5)}
    if args.draft or args.eagle_head:
        runs["EAGLE head" if args.eagle_head else "draft model"] = {}  # what was attached at load drafts by default
    for name, extra in runs.items():
        output = model.generate(**inputs, max_new_tokens=args.max_new_tokens, do_sample=False, **extra)
        stats = model.last_decoding_stats
        print(f"--- {name}: {stats.new_tokens} tokens in {stats.target_calls} target calls")
        print(tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))


if __name__ == "__main__":
    main()
