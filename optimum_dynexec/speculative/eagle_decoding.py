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

from .decoding import DecodingStats, GeneratedSequence, choose_token
from .eagle import additive_mask
from .kv_cache import TreeDecoderSession
from .sampling import SamplingSettings
from .tree import DraftTree, TreeCandidates, greedy_tree_accept, log_softmax, sampling_tree_accept


class TreeSession:
    """One sequence on the stateless EAGLE head graph exported by `eagle.py`.

    `run` appends `n` rows and lets the caller say which cached and new rows each new row sees (a tree); `keep`
    and `rollback` cut the cache back. The cache is the model's own `present` outputs: `run` leaves them in the
    request's output buffers and only copies them out when the next call needs its buffers back, so a run followed
    by `keep`/`rollback` copies the cache once.
    """

    def __init__(self, compiled_model: ov.CompiledModel):
        self.request = compiled_model.create_infer_request()
        self._past_names = [port.get_any_name() for port in compiled_model.inputs
                            if port.get_any_name().startswith("past_key_values")]
        self._present_names = [name.replace("past_key_values", "present") for name in self._past_names]
        self._empty = {
            port.get_any_name(): np.zeros(
                [1 if axis == 0 else 0 if dim.is_dynamic else dim.get_length()
                 for axis, dim in enumerate(port.get_partial_shape())], dtype=np.float32)
            for port in compiled_model.inputs if port.get_any_name().startswith("past_key_values")
        }
        self.reset()

    def reset(self) -> None:
        self.length = 0
        self._past: Dict[str, np.ndarray] = dict(self._empty)
        self._borrowed = False  # whether `_past` are views of the request's output buffers

    def run(self, inputs: Dict[str, np.ndarray], visible: Optional[np.ndarray] = None):
        """Run `inputs` (`input_ids`, `position_ids`, ... each `[1, n, ...]`) after the cache; return the request.

        `visible`: `[n, length + n]` booleans, which cached and new rows each new row attends to; `None` means
        causal (everything cached, and the new rows before it). The `n` new rows are appended to the cache.
        """
        count = inputs["input_ids"].shape[1]
        if visible is None:
            visible = np.ones((count, self.length + count), dtype=bool)
            visible[:, self.length:] = np.tri(count, dtype=bool)
        if self._borrowed:
            self._past = {name: value.copy() for name, value in self._past.items()}
        feed = dict(inputs)
        feed["attention_mask"] = additive_mask(visible)
        feed.update(self._past)
        self.request.infer(feed, share_inputs=True, share_outputs=True)
        self._past = {past: self.request.get_tensor(present).data
                      for past, present in zip(self._past_names, self._present_names)}
        self._borrowed = True
        self.length += count
        return self.request

    def keep(self, start: int, rows: np.ndarray) -> None:
        """Keep the first `start` cached rows, then only `rows` (indices relative to `start`), in that order."""
        index = np.concatenate([np.arange(start), start + np.asarray(rows, dtype=np.int64)])
        self._past = {name: np.take(value, index, axis=2) for name, value in self._past.items()}
        self._borrowed = False
        self.length = len(index)

    def rollback(self, length: int) -> None:
        """Keep only the first `length` cached rows."""
        if not 0 <= length <= self.length:
            raise ValueError(f"Cannot roll back to length {length}: the cache holds {self.length} rows.")
        if length < self.length:
            self._past = {name: np.array(value[:, :, :length]) for name, value in self._past.items()}
            self._borrowed = False
            self.length = length


@dataclass(frozen=True)
class TreeSettings:
    """The draft tree's shape (EAGLE-2): `depth` levels at most, `top_k` children per expanded node and `top_k`
    expanded nodes per level, `total_tokens` nodes kept after re-ranking. `top_k=1` drafts a chain of `depth`."""

    depth: int = 6
    top_k: int = 4
    total_tokens: int = 12

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
    """

    def __init__(self, target: ov.CompiledModel, head: ov.CompiledModel, settings: TreeSettings = TreeSettings()):
        self.target = TreeDecoderSession(target.create_infer_request())
        self.head = TreeSession(head)
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
    ) -> np.ndarray:
        """Generate up to `max_new_tokens` after `prompt` (1D int64); same contract as `speculative_decode`."""
        rng = rng if rng is not None else np.random.default_rng()
        stats = stats if stats is not None else DecodingStats()
        prompt = np.asarray(prompt, dtype=np.int64)
        output = GeneratedSequence(prompt, max_new_tokens, eos_token_ids, should_stop, on_tokens, stats)
        self.target.reset()
        self.head.reset()

        request = self.target.run(_rows(input_ids=prompt, position_ids=np.arange(len(prompt))))
        stats.target_calls += 1
        pending = choose_token(request.get_tensor("logits").data[0, -1], sampling, rng)
        # Pairs for the head: the target's feature at each cached position, with the token that followed it.
        pair_features = request.get_tensor("hidden_states").data[0].copy()
        pair_tokens = np.concatenate([prompt[1:], [pending]])

        while not output.append(pending):
            tree = self._draft(pair_tokens, pair_features, output.length)
            tree = tree.truncated(output.room)
            root = output.length - 1
            tokens = np.concatenate([[pending], tree.tokens])
            visible = np.ones((len(tokens), self.target.length + len(tokens)), dtype=bool)
            visible[:, self.target.length :] = tree.visibility()
            request = self.target.run(
                _rows(input_ids=tokens, position_ids=root + np.concatenate([[0], tree.depths])), visible
            )
            stats.target_calls += 1
            target_logits = request.get_tensor("logits").data[0]
            if sampling is None:
                path, pending = greedy_tree_accept(tree, target_logits)
            else:
                path, pending = sampling_tree_accept(tree, sampling.probabilities(target_logits), rng)
            kept_rows = np.concatenate([[0], np.asarray(path, dtype=np.int64) + 1])
            pair_features = request.get_tensor("hidden_states").data[0][kept_rows]
            self.target.keep(root, kept_rows)
            accepted = tree.tokens[path] if path else np.zeros(0, dtype=np.int64)
            pair_tokens = np.concatenate([accepted, [pending]])
            stats.drafted_tokens += len(tree)
            stats.accepted_tokens += len(path)
            stats.accepted_lengths.append(len(path))
            if output.extend(accepted):
                break
        return output.new_tokens()

    def _draft(self, pair_tokens: np.ndarray, pair_features: np.ndarray, length: int) -> DraftTree:
        """Feed the head the new (feature, token) pairs, then grow an EAGLE-2 tree below the root (the token at
        `length - 1`). The head's cache is left holding the pairs only."""
        settings, head = self.settings, self.head
        start = head.length  # == length - 1 - len(pair_tokens)
        request = head.run(_rows(input_ids=pair_tokens, features=pair_features,
                                 position_ids=np.arange(start, start + len(pair_tokens))))
        committed = head.length
        root_log_probs = log_softmax(request.get_tensor("logits").data[0, -1:])
        parent_features = request.get_tensor("hidden_states").data[0, -1:].copy()

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
            request = head.run(
                _rows(input_ids=candidates.tokens[frontier], features=parent_features[frontier_parent_rows],
                      position_ids=np.full(count, length - 3 + depth)),
                visible,
            )
            log_probs = log_softmax(request.get_tensor("logits").data[0])
            parent_features = request.get_tensor("hidden_states").data[0].copy()
            children = candidates.add_children(frontier, candidates.scores[frontier], log_probs, settings.top_k,
                                               depth=depth)
            frontier = candidates.best(children, settings.top_k)
            # A child's parent is frontier row (child index // top_k) of this call.
            frontier_parent_rows = (frontier - children[0]) // min(settings.top_k, log_probs.shape[-1])
        head.rollback(committed)
        return candidates.select(settings.total_tokens)


def _rows(**arrays) -> Dict[str, np.ndarray]:
    """Model inputs for one sequence: each array gets a leading batch axis (ids as int64, features as f32)."""
    rows = {}
    for name, value in arrays.items():
        value = np.asarray(value)
        rows[name] = (value.astype(np.float32, copy=False) if name == "features" else value.astype(np.int64))[None]
    return rows


