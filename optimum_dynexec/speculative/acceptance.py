"""Acceptance: which drafted tokens the target keeps, and the one token the target adds after them.

Every function takes a proposal (`tree.DraftTree`; a chain is a tree with one branch) and the target's scores for
its root and nodes, root first (one verification call), and returns `(path, next_token)`: the accepted nodes from
the root down, and the target's own token after the last of them. The sequence grows by `tokens[path]` then
`next_token`. `accept` picks the rule; the others are its cases.

Greedy: follow the target's argmax. Sampling (Leviathan et al. 2023, Chen et al. 2023): every emitted token is
distributed as the target's, whatever was drafted, so the output is the target's own distribution.
"""

from typing import Optional, Tuple

import numpy as np

from .sampling import SamplingSettings, sample
from .tree import DraftTree


def accept(proposal: DraftTree, target_logits: np.ndarray, sampling: Optional[SamplingSettings],
           rng: Optional[np.random.Generator]) -> Tuple[np.ndarray, int]:
    """The accepted path and the next token for `proposal`, given the target's logits `[1 + len(proposal), vocab]`
    (`sampling=None`: greedy)."""
    if sampling is None:
        if proposal.is_chain:
            return greedy_chain_accept(proposal.tokens, target_logits)
        return greedy_tree_accept(proposal, target_logits)
    target_probs = sampling.probabilities(target_logits)
    if proposal.probs is not None:
        if not proposal.is_chain:
            raise ValueError("Sampled draft distributions (`probs`) are only accepted on a chain.")
        return speculative_chain_accept(proposal.tokens, proposal.probs, target_probs, rng)
    return sampling_tree_accept(proposal, target_probs, rng)


def greedy_chain_accept(draft_tokens: np.ndarray, target_logits: np.ndarray) -> Tuple[np.ndarray, int]:
    """Keep the drafts while they equal the target's argmax; the next token is the target's argmax after them."""
    target_choice = target_logits.argmax(axis=-1)
    mismatches = np.flatnonzero(draft_tokens != target_choice[: len(draft_tokens)])
    accepted_length = int(mismatches[0]) if len(mismatches) else len(draft_tokens)
    return np.arange(accepted_length), int(target_choice[accepted_length])


def greedy_tree_accept(tree: DraftTree, target_logits: np.ndarray) -> Tuple[np.ndarray, int]:
    """Follow the target's argmax down the tree."""
    choices = target_logits.argmax(axis=-1)
    path = []
    node = -1
    while True:
        choice = int(choices[node + 1])
        children = tree.children(node)
        match = children[tree.tokens[children] == choice]
        if len(match) == 0:
            return np.asarray(path, dtype=np.int64), choice
        node = int(match[0])
        path.append(node)


def speculative_chain_accept(draft_tokens: np.ndarray, draft_probs: np.ndarray, target_probs: np.ndarray,
                             rng: np.random.Generator) -> Tuple[np.ndarray, int]:
    """Speculative sampling of a chain drafted by sampling from `draft_probs` (`q`, one row per token).

    Draft token `x` at position `i` is kept with probability `min(1, p_i(x) / q_i(x))`. At the first rejection the
    next token is drawn from `norm(max(0, p_i - q_i))`; if every draft is kept, a bonus token is drawn from `p_k`.
    """
    for position, token in enumerate(draft_tokens):
        target_p = target_probs[position, token]
        if rng.random() * draft_probs[position, token] < target_p:
            continue
        residual = np.maximum(target_probs[position] - draft_probs[position], 0.0)
        if residual.sum() <= 0.0:  # p == q up to rounding: any rejection here is a rounding artefact
            residual = target_probs[position]
        return np.arange(position), sample(residual, rng)
    return np.arange(len(draft_tokens)), sample(target_probs[len(draft_tokens)], rng)


def sampling_tree_accept(tree: DraftTree, target_probs: np.ndarray, rng: np.random.Generator
                         ) -> Tuple[np.ndarray, int]:
    """Exact speculative sampling on a tree of deterministic proposals (one-hot draft distributions).

    At each node, the children are tried in order: child token `c` is accepted with probability `p(c)` under the
    target's distribution `p` at that node, restricted to the tokens not yet rejected; a rejected token is removed
    from `p`. When every child is rejected the next token is drawn from what remains of `p`. Each step therefore
    emits a token distributed exactly as `p` (drawing without replacement, one candidate at a time), so the output
    is distributed as the target's, whatever the tree. On a chain this is the rule above with one-hot `q`.
    """
    path = []
    node = -1
    while True:
        probs = target_probs[node + 1].astype(np.float64, copy=True)
        accepted = None
        for child in tree.children(node):
            token = tree.tokens[child]
            if rng.random() * probs.sum() < probs[token]:
                accepted = int(child)
                break
            probs[token] = 0.0
        if accepted is None:
            return np.asarray(path, dtype=np.int64), sample(probs, rng)
        node = accepted
        path.append(node)

