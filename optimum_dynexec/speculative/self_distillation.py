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
