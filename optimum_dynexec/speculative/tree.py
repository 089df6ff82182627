"""Draft trees, the proposals every drafter makes (a chain is a tree with one branch), and EAGLE-2's tree search
(Li et al. 2024, arXiv 2406.16858): expansion, re-ranking, attention masks. Acceptance is in `acceptance.py`.

A draft tree hangs below a *root*: the last token the target chose, which is fed to the target together with the
tree. Each node is one drafted token; its *score* is the drafter's cumulative log-probability of the path from the
root to it, an estimate of the log-probability that the target accepts that whole path. EAGLE-2 grows the tree
breadth-first, `top_k` children per expanded node, expanding only the `top_k` best-scoring nodes of each depth,
and finally keeps the `total_tokens` best-scoring nodes of everything drafted. Because a child's score never
exceeds its parent's, the kept nodes always form a tree (every kept node's parent is kept).

Layout: a `DraftTree` lists its nodes parents-first (`parents[i] < i`, `-1` for a child of the root). In the
verification call row 0 is the root and row `i + 1` node `i`.
"""

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np



@dataclass
class DraftTree:
    """A proposal: drafted tokens in tree form. Node `i` is `tokens[i]`, a child of node `parents[i]` (`-1`: of the
    root), at `depths[i]` (1 for the root's children), drafted with cumulative log-probability `scores[i]` (if known).

    A chain is the tree whose `parents` are `-1, 0, 1, ...` (`DraftTree.chain`); only a chain may carry `probs`, the
    distribution each token was sampled from (`[len(tokens), vocab]`; `None`: chosen deterministically, i.e. one-hot
    proposals, as greedy drafts, copied text and EAGLE's top-k expansions are).
    """

    tokens: np.ndarray
    parents: np.ndarray
    depths: np.ndarray
    scores: Optional[np.ndarray] = None
    probs: Optional[np.ndarray] = None
    is_chain: bool = False

    def __len__(self) -> int:
        return len(self.tokens)

    @classmethod
    def chain(cls, tokens: np.ndarray, probs: Optional[np.ndarray] = None) -> "DraftTree":
        count = len(tokens)
        return cls(np.asarray(tokens, dtype=np.int64), np.arange(-1, count - 1), np.arange(1, count + 1),
                   probs=probs, is_chain=True)

    def truncated(self, max_depth: int) -> "DraftTree":
        """The nodes at depth <= `max_depth` (parents-first order keeps parent indices valid)."""
        if self.is_chain:
            return self if max_depth >= len(self) else DraftTree.chain(
                self.tokens[:max_depth], None if self.probs is None else self.probs[:max_depth])
        keep = self.depths <= max_depth
        if keep.all():
            return self
        new_index = np.cumsum(keep) - 1
        parents = np.where(self.parents[keep] >= 0, new_index[np.maximum(self.parents[keep], 0)], -1)
        return DraftTree(self.tokens[keep], parents, self.depths[keep],
                         None if self.scores is None else self.scores[keep])

    def visibility(self) -> np.ndarray:
        """`[n + 1, n + 1]` booleans, root first: row `r` sees column `c` iff `c` is `r` or one of its ancestors."""
        count = len(self.tokens)
        if self.is_chain:
            return np.tri(count + 1, dtype=bool)
        visible = np.zeros((count + 1, count + 1), dtype=bool)
        visible[:, 0] = True
        for node, parent in enumerate(self.parents):
            visible[node + 1] = visible[parent + 1]
            visible[node + 1, node + 1] = True
        visible[0, 0] = True
        return visible

    def children(self, node: int) -> np.ndarray:
        """Indices of the children of `node` (`-1`: of the root), in drafting order (best score first)."""
        return np.flatnonzero(self.parents == node)


NO_PROPOSAL = DraftTree.chain(np.zeros(0, dtype=np.int64))
"""The empty proposal: the target then scores its last token alone, a plain decoding step."""


class TreeCandidates:
    """The growing pool of drafted nodes while EAGLE-2 expands a tree (what `select` re-ranks).

    Node ids are positions in the pool; `parent` `-1` is the root.
    """

    def __init__(self, capacity: int):
        self.tokens = np.zeros(capacity, dtype=np.int64)
        self.parents = np.zeros(capacity, dtype=np.int64)
        self.scores = np.zeros(capacity, dtype=np.float64)
        self.depths = np.zeros(capacity, dtype=np.int64)
        self.count = 0

    def add_children(self, parent_ids: np.ndarray, parent_scores: np.ndarray, log_probs: np.ndarray, top_k: int,
                     depth: int, token_ids: Optional[np.ndarray] = None) -> np.ndarray:
        """Add the `top_k` most likely children of each parent (`log_probs` `[len(parents), vocab]`); return their ids.

        `token_ids` maps a column of `log_probs` to its token (an EAGLE-3 head's draft vocabulary); default: the
        column is the token. Children of one parent come best first, so `DraftTree.children` lists them in that order.
        """
        columns, child_log_probs = top_k_rows(log_probs, top_k)
        tokens = columns if token_ids is None else token_ids[columns]
        count = tokens.size
        ids = np.arange(self.count, self.count + count)
        self._grow(self.count + count)
        self.tokens[ids] = tokens.reshape(-1)
        self.parents[ids] = np.repeat(parent_ids, top_k)
        self.scores[ids] = (parent_scores[:, None] + child_log_probs).reshape(-1)
        self.depths[ids] = depth
        self.count += count
        return ids

    def best(self, ids: np.ndarray, count: int) -> np.ndarray:
        """The `count` best-scoring of `ids` (the next nodes to expand), best first."""
        if len(ids) <= count:
            return ids[np.argsort(-self.scores[ids], kind="stable")]
        chosen = ids[np.argpartition(-self.scores[ids], count - 1)[:count]]
        return chosen[np.argsort(-self.scores[chosen], kind="stable")]

    def cannot_improve(self, frontier: np.ndarray, total_tokens: int) -> bool:
        """True when no descendant of `frontier` can enter the best `total_tokens` (scores only decrease downward),
        so expanding further would only cost time."""
        if self.count < total_tokens:
            return False
        kth_best = np.partition(self.scores[: self.count], self.count - total_tokens)[self.count - total_tokens]
        return kth_best >= self.scores[frontier].max()

    def select(self, total_tokens: int) -> DraftTree:
        """Re-rank: the `total_tokens` best nodes, as a `DraftTree` (parents first: by depth, then by score)."""
        count = self.count
        scores, depths = self.scores[:count], self.depths[:count]
        # Ties go to the shallower node, so a parent always ranks before a child with the same score.
        order = np.lexsort((depths, -scores))[:total_tokens]
        order = order[np.lexsort((-scores[order], depths[order]))]
        new_index = np.full(count, -1, dtype=np.int64)
        new_index[order] = np.arange(len(order))
        parents = self.parents[order]
        tree_parents = np.where(parents >= 0, new_index[np.maximum(parents, 0)], -1)
        if (tree_parents[parents >= 0] < 0).any():  # cannot happen with finite scores; keep the tree valid anyway
            raise RuntimeError("Draft tree re-ranking dropped a parent of a kept node.")
        return DraftTree(self.tokens[order].copy(), tree_parents, depths[order].copy(), scores[order].copy())

    def _grow(self, needed: int) -> None:
        if needed <= len(self.tokens):
            return
        extra = max(needed, 2 * len(self.tokens)) - len(self.tokens)
        for name in ("tokens", "parents", "scores", "depths"):
            array = getattr(self, name)
            setattr(self, name, np.concatenate([array, np.zeros(extra, dtype=array.dtype)]))


def top_k_rows(log_probs: np.ndarray, top_k: int) -> Tuple[np.ndarray, np.ndarray]:
    """Per row, the `top_k` largest entries (best first): `(indices, values)`, each `[rows, top_k]`."""
    top_k = min(top_k, log_probs.shape[-1])
    indices = np.argpartition(-log_probs, top_k - 1, axis=-1)[:, :top_k]
    values = np.take_along_axis(log_probs, indices, axis=-1)
    order = np.argsort(-values, axis=-1, kind="stable")
    return np.take_along_axis(indices, order, axis=-1), np.take_along_axis(values, order, axis=-1)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits.astype(np.float32) - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
