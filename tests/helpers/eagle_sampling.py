"""The sampling check both EAGLE generations share: the second sampled token, drafted most of the time (in a tree or a
chain), must follow the target's own marginal distribution of the second token."""

from collections import Counter

import numpy as np
import torch
from helpers.chi_square import goodness_of_fit

from optimum_dynexec.speculative.decoding import DecodingStats, speculative_decode
from optimum_dynexec.speculative.eagle import TreeSettings
from optimum_dynexec.speculative.sampling import SamplingSettings


def second_token_check(model, torch_model, prompt: torch.Tensor, vocab_size: int, temperature: float = 1.5,
                       trials: int = 600, tree: TreeSettings = TreeSettings(depth=3, top_k=4, total_tokens=8)):
    """`(chi-square p-value, share of trials whose first drafted token was accepted)` for `trials` sampled
    generations of 3 tokens by `model`'s EAGLE drafter (`tree`, by default a 3 x 4 : 8 tree; a chain is verified on
    the paged target), against the exact marginal of the second token computed with `torch_model` over every first
    token."""
    with torch.no_grad():
        first = torch.softmax(torch_model(prompt).logits[0, -1] / temperature, -1)
        sequences = torch.cat([prompt.repeat(vocab_size, 1), torch.arange(vocab_size)[:, None]], 1)
        second = torch.softmax(torch_model(sequences).logits[:, -1] / temperature, -1)
    expected = (first[:, None] * second).sum(0).double().numpy()

    model.generate(prompt, max_new_tokens=2)  # compiles the EAGLE graphs
    target, drafter = model.eagle.target_and_drafter(tree)
    sampling, rng = SamplingSettings(temperature), np.random.default_rng(0)
    counts, accepted = Counter(), 0
    for _ in range(trials):
        stats = DecodingStats()
        tokens = speculative_decode(target, drafter, prompt[0].numpy(), 3, sampling=sampling, rng=rng, stats=stats)
        counts[int(tokens[1])] += 1
        accepted += stats.accepted_lengths[0] > 0
    return goodness_of_fit(counts, dict(enumerate(expected))), accepted / trials
