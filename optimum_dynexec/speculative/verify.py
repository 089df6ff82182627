"""Verification: which drafted tokens the target keeps, and the one token the target adds after them.

Both functions take the target's scores for `len(draft_tokens) + 1` positions (one call of the target over the
last accepted token and the drafts) and return `(accepted_length, next_token)`; the sequence grows by
`draft_tokens[:accepted_length] + [next_token]`.
"""

from typing import Optional, Tuple

import numpy as np

from .sampling import sample


def greedy_accept(draft_tokens: np.ndarray, target_logits: np.ndarray) -> Tuple[int, int]:
    """Keep the drafts while they equal the target's argmax; the next token is the target's argmax after them."""
    target_choice = target_logits.argmax(axis=-1)
    mismatches = np.flatnonzero(draft_tokens != target_choice[: len(draft_tokens)])
    accepted_length = int(mismatches[0]) if len(mismatches) else len(draft_tokens)
    return accepted_length, int(target_choice[accepted_length])


def speculative_accept(
    draft_tokens: np.ndarray,
    draft_probs: Optional[np.ndarray],
    target_probs: np.ndarray,
    rng: np.random.Generator,
) -> Tuple[int, int]:
    """Speculative sampling (Leviathan et al. 2023, Chen et al. 2023): the output is distributed as the target's.

    Draft token `x` at position `i` is kept with probability `min(1, p_i(x) / q_i(x))`. At the first rejection the
    next token is drawn from `norm(max(0, p_i - q_i))`; if every draft is kept, a bonus token is drawn from `p_k`.
    `draft_probs=None` means the drafts were proposed deterministically (prompt lookup): `q_i` is one-hot.
    """
    for position, token in enumerate(draft_tokens):
        target_p = target_probs[position, token]
        draft_q = 1.0 if draft_probs is None else draft_probs[position, token]
        if rng.random() * draft_q < target_p:
            continue
        if draft_probs is None:
            residual = target_probs[position].copy()
            residual[token] = 0.0
        else:
            residual = np.maximum(target_probs[position] - draft_probs[position], 0.0)
        if residual.sum() <= 0.0:  # p == q up to rounding: any rejection here is a rounding artefact
            residual = target_probs[position]
        return position, sample(residual, rng)
    return len(draft_tokens), sample(target_probs[len(draft_tokens)], rng)
