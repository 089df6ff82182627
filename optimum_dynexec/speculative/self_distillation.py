"""The target's own text, which both drafters (a draft model, an EAGLE head) are trained to predict.

At generation time a drafter guesses what the target is about to write, not what a human wrote; a small target's
continuation of a prompt is much more predictable than the corpus it learned from (it repeats itself and follows its
own habits). Training a drafter on the target's greedy continuations (sequence-level self-distillation; Medusa-2,
arXiv 2401.10774, trains its heads on the model's own generations for the same reason) raises acceptance where it
counts. `train-eagle --generated-tokens` and the benchmark fixture's self-distilled draft both build their windows here.
"""

import torch


@torch.no_grad()
def greedy_continuation(target, prefixes: torch.Tensor, new_tokens: int) -> torch.Tensor:
    """`prefixes` (`[b, n]`, equal lengths) followed by the target's `new_tokens` greedy tokens each, `[b, n + new]`.

    End-of-sequence tokens are kept and decoding goes on past them, as in a benchmark that ignores EOS; a hand-rolled
    loop over the KV cache, because `generate()` would stop or pad there."""
    output = torch.empty(prefixes.shape[0], prefixes.shape[1] + new_tokens, dtype=torch.long)
    output[:, : prefixes.shape[1]] = prefixes
    result = target(input_ids=prefixes, use_cache=True)
    for step in range(new_tokens):
        token = result.logits[:, -1].argmax(-1)
        output[:, prefixes.shape[1] + step] = token
        if step + 1 < new_tokens:
            result = target(input_ids=token[:, None], past_key_values=result.past_key_values, use_cache=True)
    return output


@torch.no_grad()
def chat_answers(target, tokenizer, prompts, max_new_tokens: int, batch_size: int = 16, progress: bool = True):
    """Each prompt put through the tokenizer's chat template as a user turn and answered greedily by the target:
    the whole conversation as text (special tokens kept), one document per prompt.

    Prompts go in batches of similar length (left-padded), the longest first, so padding costs little."""
    from tqdm.auto import tqdm

    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError("`chat_prompts` needs a tokenizer with a chat template (the target answers each prompt as a "
                         "chat turn); this target's tokenizer has none. Pass the text with `dataset` instead.")
    texts = [tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                           add_generation_prompt=True) for prompt in prompts]
    lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    order = sorted(range(len(texts)), key=lambda index: -lengths[index])
    padding_side, tokenizer.padding_side = tokenizer.padding_side, "left"
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    documents = [None] * len(texts)
    try:
        for start in tqdm(range(0, len(order), batch_size), desc="target answers to chat prompts", unit="batch",
                          disable=not progress):
            batch = order[start : start + batch_size]
            encoded = tokenizer([texts[index] for index in batch], return_tensors="pt", padding=True,
                                add_special_tokens=False)
            output = target.generate(**encoded, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad)
            for row, index in enumerate(batch):
                # Rows that finished early are padded after their end-of-sequence token.
                answer = _through_first_eos(output[row, encoded["input_ids"].shape[1] :], tokenizer.eos_token_id)
                documents[index] = texts[index] + tokenizer.decode(answer, skip_special_tokens=False)
    finally:
        tokenizer.padding_side = padding_side
    return documents


def _through_first_eos(tokens: torch.Tensor, eos: int) -> torch.Tensor:
    ends = (tokens == eos).nonzero()
    return tokens if len(ends) == 0 else tokens[: int(ends[0]) + 1]
