"""EAGLE drafting on OpenVINO: the head drafts a chain or an EAGLE-2 dynamic tree from the target's features.

`EagleDrafter` is a `drafters.Drafter` like the others; the one loop (`decoding.speculative_decode`) runs it against
a `targets.TreeTarget`, which verifies the whole tree in one call and keeps the accepted path (masking the other
nodes out, `TreeDecoderSession.keep`).

With `sequence[:length]` the tokens so far, the head's cache holds one entry per pair `(target feature f_i, token
x_{i+1})` for `i < length - 1`; each proposal first feeds it the pairs it lacks, then drafts, then drops what it
drafted (`rollback`), so the next proposal feeds the target's features along the accepted path, which are exact
where the head's own were predictions.
"""

from dataclasses import dataclass
from typing import Dict, Optional

import numpy as np
import openvino as ov

from ..drafters import Drafter
from ..kv_cache import TreeDecoderSession, sequence_inputs
from ..tree import DraftTree, TreeCandidates, log_softmax


@dataclass(frozen=True)
class TreeSettings:
    """The draft tree's shape (EAGLE-2): `depth` levels at most, `top_k` children per expanded node and `top_k`
    expanded nodes per level, `total_tokens` nodes kept after re-ranking. `top_k=1` drafts a chain of `depth`.

    `min_confidence` (chains): stop drafting once the head's own probability of the whole chain drafted so far (the
    product of its top probabilities, EAGLE-2's estimate of the chance the target accepts it) would fall below this;
    0 drafts every level. A head that is often unsure then spends fewer calls on drafts the target would reject.

    The default is a chain of 8. On this project's 2-core CPU, verification and head calls grow with the rows they
    score, which a GPU scores for free, so trees lost to chains, and chains of 8 beat 6 and 10 with the self-distilled
    head (docs/lab-notebook.md, EAGLE)."""

    depth: int = 8
    top_k: int = 1
    total_tokens: int = 8
    min_confidence: float = 0.0

    def __post_init__(self):
        for name in ("depth", "top_k", "total_tokens"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"EAGLE `{name}` must be a positive integer, got {value!r}.")
        if not isinstance(self.min_confidence, (int, float)) or not 0 <= self.min_confidence < 1:
            raise ValueError(f"EAGLE `min_confidence` must be a number in [0, 1), got {self.min_confidence!r}.")

    @classmethod
    def chain(cls, depth: int, min_confidence: float = 0.0) -> "TreeSettings":
        return cls(depth=depth, top_k=1, total_tokens=depth, min_confidence=min_confidence)


class EagleDrafter(Drafter):
    """Drafts with an EAGLE head from the target's hidden states (see `head.py`): a chain, or an EAGLE-2 tree.

    It needs a target that outputs its features (`targets.TreeTarget` on `eagle.target_with_features`). The head's
    cache holds one entry per pair `(target feature f_i, token x_{i+1})` for `i < length - 1`: at each proposal it is
    first fed the pairs it lacks, the target's features (exact where the head's own were predictions) along the path
    the target accepted, each with the token that followed; then it drafts, and forgets what it drafted.

    Args:
        head (`openvino.CompiledModel`): `export_eagle_head(...)`, compiled (any precision: it only proposes).
        settings (`TreeSettings`): the tree shape.
        draft_to_target (`np.ndarray`, *optional*): the target token of each logit column, for heads that score a
            draft vocabulary (EAGLE-3); default: the head scores the target's vocabulary.
    """

    def __init__(self, head: ov.CompiledModel, settings: TreeSettings = TreeSettings(),
                 draft_to_target: Optional[np.ndarray] = None):
        self.head = TreeDecoderSession(head.create_infer_request())
        self.settings = settings
        self.draft_to_target = draft_to_target
        self._features = None  # the target's features the head has not been fed yet, one row per pair

    def begin(self, prompt, computed, sampling, rng):
        super().begin(prompt, computed, sampling, rng)
        self.head.reset()
        self._features = computed.features.copy()  # every prompt position's

    def accepted(self, proposal, path, computed):
        # Rows of the verification: the root, then the accepted nodes.
        self._features = computed.features[np.concatenate([[0], path + 1])]

    def propose(self, sequence: np.ndarray, limit: int) -> DraftTree:
        """Feed the head the pairs it lacks, then draft below the root `sequence[-1]`, at most `limit` deep. The
        head's cache is left holding the pairs only."""
        settings, head = self.settings, self.head
        # In a tree, every head call of a cycle runs the same number of rows (at most depth + 1 pairs, top_k per
        # level), so the request is not re-planned for a new shape at each call. A chain's levels are single rows
        # already, and padding them measured slower end to end on the benchmark fixture.
        rows = max(settings.top_k, settings.depth + 1) if settings.top_k > 1 else 0
        start = head.length
        pair_tokens = sequence[start + 1 :]  # each follows the position of its feature
        # Only the last pair's logits draft; a tree keeps every row's so its calls all keep one input shape.
        head.run(sequence_inputs(input_ids=pair_tokens, features=self._features,
                                 position_ids=np.arange(start, start + len(pair_tokens))),
                 pad_to=rows, last_logits_only=settings.top_k == 1)
        committed = head.length
        if settings.top_k == 1:
            tree = self._draft_chain(min(settings.depth, settings.total_tokens, limit), len(sequence))
        else:
            tree = self._draft_tree(len(sequence), committed, rows).truncated(limit)
        head.rollback(committed)
        return tree

    def _draft_tree(self, length: int, committed: int, rows: int) -> DraftTree:
        """EAGLE-2's tree search from the head's last call: expand the `top_k` best nodes of each level, re-rank.

        Every call runs `rows` rows; each new node sees the first `committed` cache entries and its ancestors."""
        settings, head = self.settings, self.head
        root_log_probs = log_softmax(head.outputs("logits")[-1:])
        parent_features = head.outputs("hidden_states")[-1:].copy()

        capacity = settings.top_k + (settings.depth - 1) * settings.top_k * settings.top_k
        candidates = TreeCandidates(capacity)
        children = candidates.add_children(np.array([-1]), np.zeros(1), root_log_probs, settings.top_k, depth=1,
                                           token_ids=self.draft_to_target)
        frontier = candidates.best(children, settings.top_k)
        frontier_parent_rows = np.zeros(len(frontier), dtype=np.int64)  # rows of `parent_features`
        slot_of_node: Dict[int, int] = {}
        for depth in range(2, settings.depth + 1):
            if candidates.cannot_improve(frontier, settings.total_tokens):
                break
            # Each frontier node sees the committed pairs, its ancestors' slots from earlier levels and itself.
            count = len(frontier)
            visible = np.zeros((count, head.length + count), dtype=bool)
            visible[:, :committed] = True
            for row, node in enumerate(frontier):
                ancestor = candidates.parents[node]
                while ancestor >= 0:
                    visible[row, slot_of_node[int(ancestor)]] = True
                    ancestor = candidates.parents[ancestor]
                visible[row, head.length + row] = True
                slot_of_node[int(node)] = head.length + row
            head.run(
                sequence_inputs(input_ids=candidates.tokens[frontier], features=parent_features[frontier_parent_rows],
                                position_ids=np.full(count, length - 3 + depth)),
                visible, pad_to=rows,
            )
            log_probs = log_softmax(head.outputs("logits"))
            parent_features = head.outputs("hidden_states").copy()
            children = candidates.add_children(frontier, candidates.scores[frontier], log_probs, settings.top_k,
                                               depth=depth, token_ids=self.draft_to_target)
            frontier = candidates.best(children, settings.top_k)
            # A child's parent is frontier row (child index // top_k) of this call.
            frontier_parent_rows = (frontier - children[0]) // min(settings.top_k, log_probs.shape[-1])
        return candidates.select(settings.total_tokens)

    def _draft_chain(self, depth: int, length: int) -> DraftTree:
        """The tree with one child per level, drafted from the head's last call: the argmax token at each level.

        The same tokens the tree search picks with `top_k=1`, without its ranking (a chain is the default, and on
        this loop's scale argpartition and log-softmax over the vocabulary at every level cost a noticeable share of
        a head call).
        """
        head, to_target = self.head, self.draft_to_target
        stop_below = self.settings.min_confidence
        confidence = 1.0
        tokens = np.empty(depth, dtype=np.int64)
        for level in range(depth):
            if level:
                feature = head.outputs("hidden_states")[-1:].copy()  # the request overwrites its outputs
                head.run(sequence_inputs(input_ids=tokens[level - 1 : level], features=feature,
                                         position_ids=np.array([length - 2 + level])), last_logits_only=True)
            logits = head.outputs("logits")[-1]
            column = logits.argmax()
            if stop_below:
                confidence /= np.exp(logits - logits[column]).sum()  # times the top probability
                if confidence < stop_below:
                    return DraftTree.chain(tokens[:level])
            tokens[level] = column if to_target is None else to_target[column]
        return DraftTree.chain(tokens)

