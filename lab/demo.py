"""The main job on the embedded default: `make demo` / `python -m lab.demo`.

On a real pretrained model, SmolLM2-135M-Instruct (installed from PyPI as a GGUF file, converted and exported to
OpenVINO on first use, then cached) and the EAGLE-3 head the project trains for it (on first use, then cached):
streams answers generated with speculation (the head for a chat question, prompt lookup for a grounded task), then
measures both drafters side by side with what a user runs today, plain `OVModelForCausalLM` at its default settings,
in the same run (interleaved, medians over repeats), and says whether each output equals plain's.
"""

import argparse
import statistics
import time

PROMPTS = {
    "chat": "What are the main differences between a list and a tuple in Python?",
    "grounded": (
        "Fix the spelling in this text and return it:\n\n"
        "Teh quick brwon fox jumpd over teh lazy dog. It was a sunny dya and evryone in the vilage was hapy. The "
        "childern playd in the feilds untill the sun went down, and their parnets watchd them from the porch."
    ),
}


def speculative_demo(max_new_tokens: int = 96, repeats: int = 3, prompt_lookup_num_tokens: int = 5) -> dict:
    """Stream one answer per prompt kind, then time plain vs prompt lookup vs the EAGLE-3 head on them; returns the
    measurements."""
    import torch
    from optimum.intel import OVModelForCausalLM
    from transformers import AutoTokenizer, TextStreamer

    from optimum_dynexec import OVSpeculativeModelForCausalLM
    from optimum_dynexec.openvino_cpu import compiled_precision
    from lab.fixtures.real_eagle3_head import real_model_with_eagle3

    print("== Speculative generation on a real model: SmolLM2-135M-Instruct (OpenVINO, default precision)")
    # The model, exported at optimum-intel's defaults, with the EAGLE-3 head trained for it (trained on first use, then
    # cached; docs/benchmarks.md says how long).
    folder = real_model_with_eagle3()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    plain = OVModelForCausalLM.from_pretrained(folder)  # the user's baseline: optimum-intel at its defaults
    ours = OVSpeculativeModelForCausalLM.from_pretrained(folder)  # the head in eagle/ drafts by default
    sides = {"plain": (plain, {}), "prompt lookup": (ours, dict(prompt_lookup_num_tokens=prompt_lookup_num_tokens)),
             "EAGLE-3": (ours, {})}
    streamed_with = {"chat": "EAGLE-3", "grounded": "prompt lookup"}
    settings = dict(max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens, do_sample=False)

    inputs = {}
    for kind, question in PROMPTS.items():
        text = tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                             add_generation_prompt=True)
        inputs[kind] = tokenizer(text, return_tensors="pt")
        side = streamed_with[kind]
        print(f"\n-- {kind} prompt ------------------------------------------------------------\n{question}\n"
              f"-- answer (streamed, {side}) ---------------------------------------")
        model, extra = sides[side]
        model.generate(**inputs[kind], streamer=TextStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True),
                       max_new_tokens=max_new_tokens, do_sample=False, **extra)

    print(f"\n-- timing: {repeats} repeats, interleaved, {max_new_tokens} new tokens each --")
    runs = {(kind, side): (lambda model=model, encoded=encoded, extra=extra: model.generate(**encoded, **settings,
                                                                                            **extra))
            for kind, encoded in inputs.items() for side, (model, extra) in sides.items()}
    outputs = {key: run() for key, run in runs.items()}  # warm-up, and the outputs compared
    seconds = {key: [] for key in runs}
    # Prompts alternate from call to call: a speculative call keeps what its cache holds of the previous prompt
    # (paged_session.PagedDecoderSession.start), and the same prompt twice in a row would time a cached prefill.
    for _ in range(repeats):
        for key, run in runs.items():
            start = time.perf_counter()
            run()
            seconds[key].append(time.perf_counter() - start)
    results = {}
    for kind, encoded in inputs.items():
        plain_rate = max_new_tokens / statistics.median(seconds[(kind, "plain")])
        prompt_length = encoded["input_ids"].shape[1]
        print(f"{kind} (prompt {prompt_length} tokens): plain {plain_rate:6.1f} tok/s")
        for side, (model, extra) in sides.items():
            if side == "plain":
                continue
            model.generate(**encoded, **settings, **extra)
            stats = model.last_decoding_stats
            rate = max_new_tokens / statistics.median(seconds[(kind, side)])
            same = bool(torch.equal(outputs[(kind, "plain")], outputs[(kind, side)]))
            results[(kind, side)] = dict(plain_tokens_per_second=plain_rate, tokens_per_second=rate,
                                         speedup=rate / plain_rate, target_calls=stats.target_calls,
                                         new_tokens_per_target_call=stats.new_tokens / stats.target_calls,
                                         identical_to_plain=same)
            print(f"  {side:>13}: {rate:6.1f} tok/s -> {rate / plain_rate:.2f}x; "
                  f"{stats.new_tokens / stats.target_calls:.2f} new tokens per target call; "
                  f"output {'identical to' if same else 'differs from'} plain")
            if not same:
                divergence = first_divergence(plain, outputs[(kind, "plain")], outputs[(kind, side)], prompt_length)
                results[(kind, side)].update(divergence)
                print(f"  {'':>13}  from new token {divergence['first_different_new_token']} on: there plain's own "
                      f"logits put its token {divergence['logit_margin']:.3f} above ours "
                      f"({divergence['logit_margin_share']:.2%} of the largest logit), a near-tie that the two graphs "
                      f"round differently at {compiled_precision(plain)} (at f32 greedy output is plain's token for token: "
                      "tests/speculative)")
    return results


def first_divergence(plain, plain_ids, other_ids, prompt_length: int) -> dict:
    """Where `other_ids` first leaves `plain_ids` (1-based, counted in new tokens), and by how much plain's own
    logits there preferred its token: `logit_margin`, and that margin as a share of the largest logit's size."""
    index = int((plain_ids[0] != other_ids[0]).nonzero()[0])
    prefix = plain_ids[:, :index]
    logits = plain(input_ids=prefix, attention_mask=prefix.new_ones(prefix.shape)).logits[0, -1]
    margin = float(logits[plain_ids[0, index]] - logits[other_ids[0, index]])
    return dict(first_different_new_token=index - prompt_length + 1, logit_margin=margin,
                logit_margin_share=margin / float(logits.abs().max()))


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max-new-tokens", type=int, default=96, help="New tokens per answer (default %(default)s).")
    parser.add_argument("--repeats", type=int, default=3, help="Timed repeats, medians reported (default %(default)s).")
    parser.add_argument("--prompt-lookup-num-tokens", type=int, default=5,
                        help="Tokens drafted per verification (default %(default)s).")
    args = parser.parse_args()
    for name in ("max_new_tokens", "repeats", "prompt_lookup_num_tokens"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    speculative_demo(args.max_new_tokens, args.repeats, args.prompt_lookup_num_tokens)


if __name__ == "__main__":
    main()
