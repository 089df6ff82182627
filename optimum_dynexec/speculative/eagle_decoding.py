"""EAGLE decoding on OpenVINO: the head drafts a (chain or EAGLE-2 dynamic) tree, the target verifies it in one call.

Invariants of the loop (`EagleSpeculator.decode`), with `sequence[:length]` the tokens so far:

* the target's cache holds `sequence[:length - 1]`; the last token (the target's own choice, the tree's root) is
  fed with the tree;
* the head's cache holds one entry per pair `(target feature f_i, token x_{i+1})` for `i < length - 1`: it is fed
  the features the target computed for the tokens the target has cached, each with the token that followed.

After a verification the target's cache keeps the root and the accepted path and masks the other tree nodes out
(`TreeDecoderSession.keep`); the head's cache drops everything drafted in the cycle (`rollback`) and is then fed the
target's features along the accepted path, which are exact where the head's own were predictions.
"""

from dataclasses import dataclass
from typing import Callable, Dict, Optional, Sequence

import numpy as np
import openvino as ov

from .decoding import BannedTokens, DecodingStats, GeneratedSequence, choose_token
from .kv_cache import TreeDecoderSession
from .sampling import SamplingSettings
from .tree import DraftTree, TreeCandidates, greedy_tree_accept, log_softmax, sampling_tree_accept


@dataclass(frozen=True)
class TreeSettings:
    """The draft tree's shape (EAGLE-2): `depth` levels at most, `top_k` children per expanded node and `top_k`
    expanded nodes per level, `total_tokens` nodes kept after re-ranking. `top_k=1` drafts a chain of `depth`.

    The default is a chain of 8. On this project's 2-core CPU, verification and head calls grow with the rows they
    score, which a GPU scores for free, so trees lost to chains (docs/benchmarks.md: trees 1.47-1.77x over plain
    optimum-intel decoding, chains 1.9-2.4x). Chains of 4-8 were within noise of each other with the first heads; with
    the self-distilled head the chain of 8 beat the chain of 6 in every side-by-side run on the f32 target (sessions
    5-7: +0.03 to +0.18x; it trailed by 0.05x on an 8-bit target) and the chain of 10 did not beat 8."""

    depth: int = 8
    top_k: int = 1
    total_tokens: int = 8

    def __post_init__(self):
        for name in ("depth", "top_k", "total_tokens"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"EAGLE `{name}` must be a positive integer, got {value!r}.")

    @classmethod
    def chain(cls, depth: int) -> "TreeSettings":
        return cls(depth=depth, top_k=1, total_tokens=depth)


class EagleSpeculator:
    """Generates with an EAGLE head drafting for a target exported with features (see `eagle.py`).

    Args:
        target (`openvino.CompiledModel`): `target_with_features(...)`, compiled (f32 for exact greedy).
        head (`openvino.CompiledModel`): `export_eagle_head(...)`, compiled (any precision: it only proposes).
        settings (`TreeSettings`): the tree shape.
        target_window (`int`, *optional*): the target's sliding attention window (`kv_cache.attention_window`).
    """

    def __init__(self, target: ov.CompiledModel, head: ov.CompiledModel, settings: TreeSettings = TreeSettings(),
                 target_window: Optional[int] = None):
        self.target = TreeDecoderSession(target.create_infer_request(), window=target_window)
        self.head = TreeDecoderSession(head.create_infer_request())
        self.settings = settings

    def decode(
        self,
        prompt: np.ndarray,
        max_new_tokens: int,
        eos_token_ids: Sequence[int] = (),
        sampling: Optional[SamplingSettings] = None,
        rng: Optional[np.random.Generator] = None,
        should_stop: Optional[Callable[[np.ndarray], bool]] = None,
        on_tokens: Optional[Callable[[np.ndarray], None]] = None,
        stats: Optional[DecodingStats] = None,
        banned: Optional[BannedTokens] = None,
    ) -> np.ndarray:
        """Generate up to `max_new_tokens` after `prompt` (1D int64); same contract as `speculative_decode`."""
        rng = rng if rng is not None else np.random.default_rng()
        stats = stats if stats is not None else DecodingStats()
        prompt = np.asarray(prompt, dtype=np.int64)
        output = GeneratedSequence(prompt, max_new_tokens, eos_token_ids, should_stop, on_tokens, stats, banned)
        self.target.reset()
        self.head.reset()

        self.target.run(_rows(input_ids=prompt, position_ids=np.arange(len(prompt))), last_logits_only=True)
        stats.target_calls += 1
        pending = choose_token(output.restrict(self.target.outputs("logits")[-1:])[-1], sampling, rng)
        # Pairs for the head: the target's feature at each cached position, with the token that followed it.
        pair_features = self.target.outputs("hidden_states").copy()
        pair_tokens = np.concatenate([prompt[1:], [pending]])

        while not output.append(pending):
            tree = self._draft(pair_tokens, pair_features, output.length, output.room).truncated(output.room)
            root = output.length - 1
            tokens = np.concatenate([[pending], tree.tokens])
            visible = np.ones((len(tokens), self.target.length + len(tokens)), dtype=bool)
            visible[:, self.target.length :] = tree.visibility()
            self.target.run(
                _rows(input_ids=tokens, position_ids=root + np.concatenate([[0], tree.depths])), visible
            )
            stats.target_calls += 1
            target_logits = output.restrict(self.target.outputs("logits"), np.concatenate([[0], tree.depths]))
            if sampling is None:
                path, pending = greedy_tree_accept(tree, target_logits)
            else:
                path, pending = sampling_tree_accept(tree, sampling.probabilities(target_logits), rng)
            kept_rows = np.concatenate([[0], np.asarray(path, dtype=np.int64) + 1])
            pair_features = self.target.outputs("hidden_states")[kept_rows]
            self.target.keep(root, kept_rows)
            accepted = tree.tokens[path] if path else np.zeros(0, dtype=np.int64)
            pair_tokens = np.concatenate([accepted, [pending]])
            stats.drafted_tokens += len(tree)
            stats.accepted_tokens += len(path)
            stats.accepted_lengths.append(len(path))
            if output.extend(accepted):
                break
        return output.new_tokens()

    def _draft(self, pair_tokens: np.ndarray, pair_features: np.ndarray, length: int,
               max_depth: Optional[int] = None) -> DraftTree:
        """Feed the head the new (feature, token) pairs, then grow an EAGLE-2 tree below the root (the token at
        `length - 1`), at most `max_depth` deep (what the generation can still keep). The head's cache is left
        holding the pairs only."""
        settings, head = self.settings, self.head
        # In a tree, every head call of a cycle runs the same number of rows (at most depth + 1 pairs, top_k per
        # level), so the request is not re-planned for a new shape at each call. A chain's levels are single rows
        # already; padding them measured slower (2.6 s vs 2.4 s for 6 prompts x 96 tokens on the benchmark fixture).
        rows = max(settings.top_k, settings.depth + 1) if settings.top_k > 1 else 0
        start = head.length  # == length - 1 - len(pair_tokens)
        # Only the last pair's logits draft; a tree keeps every row's so its calls all keep one input shape.
        head.run(_rows(input_ids=pair_tokens, features=pair_features,
                       position_ids=np.arange(start, start + len(pair_tokens))), pad_to=rows,
                 last_logits_only=settings.top_k == 1)
        committed = head.length
        max_depth = settings.depth if max_depth is None else max_depth
        if max_depth < 1:
            tree = DraftTree.chain(np.zeros(0, dtype=np.int64))
        elif settings.top_k == 1:
            tree = self._draft_chain(min(settings.depth, settings.total_tokens, max_depth), length)
        else:
            tree = self._draft_tree(length, committed, rows).truncated(max_depth)
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
        children = candidates.add_children(np.array([-1]), np.zeros(1), root_log_probs, settings.top_k, depth=1)
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
                _rows(input_ids=candidates.tokens[frontier], features=parent_features[frontier_parent_rows],
                      position_ids=np.full(count, length - 3 + depth)),
                visible, pad_to=rows,
            )
            log_probs = log_softmax(head.outputs("logits"))
            parent_features = head.outputs("hidden_states").copy()
            children = candidates.add_children(frontier, candidates.scores[frontier], log_probs, settings.top_k,
                                               depth=depth)
            frontier = candidates.best(children, settings.top_k)
            # A child's parent is frontier row (child index // top_k) of this call.
            frontier_parent_rows = (frontier - children[0]) // min(settings.top_k, log_probs.shape[-1])
        return candidates.select(settings.total_tokens)

    def _draft_chain(self, depth: int, length: int) -> DraftTree:
        """The tree with one child per level, drafted from the head's last call: the argmax token at each level.

        The same tokens the tree search picks with `top_k=1`, without its ranking (a chain is the default, and on
        this loop's scale argpartition and log-softmax over the vocabulary at every level cost ~10% of a head call).
        """
        head = self.head
        tokens = np.empty(depth, dtype=np.int64)
        tokens[0] = head.outputs("logits")[-1].argmax()
        for level in range(1, depth):
            feature = head.outputs("hidden_states")[-1:].copy()  # the request overwrites its outputs
            head.run(_rows(input_ids=tokens[level - 1 : level], features=feature,
                           position_ids=np.array([length - 2 + level])), last_logits_only=True)
            tokens[level] = head.outputs("logits")[-1].argmax()
        return DraftTree.chain(tokens)


def _rows(**arrays) -> Dict[str, np.ndarray]:
    """Model inputs for one sequence: each array gets a leading batch axis (ids as int64, features as f32)."""
    rows = {}
    for name, value in arrays.items():
        value = np.asarray(value)
        rows[name] = (value.astype(np.float32, copy=False) if name == "features" else value.astype(np.int64))[None]
    return rows


