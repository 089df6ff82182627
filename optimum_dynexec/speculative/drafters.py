"""Drafters: everything that proposes tokens for the target to verify, behind one small interface.

The decoding loop (`decoding.speculative_decode`) only calls `begin`, `propose` and `accepted`; it does not know
whether a draft model, prompt lookup or an EAGLE head (`eagle.EagleDrafter`) is behind them. Each gets
what the target computed at the prefill and at every verification, for the drafters that draft from it (EAGLE
drafts from the target's hidden states), as transformers' candidate generators get the model's outputs.
"""

from abc import ABC, abstractmethod
from typing import Optional

import numpy as np

from .kv_cache import DecoderSession
from .sampling import SamplingSettings, sample
from .targets import TargetOutputs
from .tree import NO_PROPOSAL, DraftTree

_SINGLE_TOKEN_CATCH_UP = 4

SCHEDULES = ("heuristic", "heuristic_transient", "constant")


class DraftLength:
    """How many tokens to draft next, adapted to how many the target accepted.

    `"heuristic"` (transformers' rule, extended down to zero): +2 after a fully accepted draft, -1 otherwise. At
    zero the loop decodes plainly, which makes unpredictable text cost what plain decoding costs; every
    `probe_interval` plain steps one token is drafted again to notice when the text turns predictable, and the
    interval doubles (up to 64) while probes keep failing. `"heuristic_transient"` restarts from the initial value
    at each `generate()` call; `"constant"` never adapts.
    """

    def __init__(self, initial: int, maximum: int, schedule: str = "heuristic"):
        if schedule not in SCHEDULES:
            raise ValueError(f"`num_assistant_tokens_schedule` must be one of {SCHEDULES}, got {schedule!r}.")
        if not isinstance(initial, int) or initial < 1:
            raise ValueError(f"The number of draft tokens must be a positive integer, got {initial!r}.")
        self.initial = initial
        self.maximum = max(maximum, initial)
        self.schedule = schedule
        self.current = initial
        self._plain_steps = 0
        self._probe_interval = 4

    def begin(self) -> None:
        if self.schedule == "heuristic_transient":
            self.current = self.initial
            self._plain_steps = 0
            self._probe_interval = 4

    def next_length(self) -> int:
        if self.current > 0:
            return self.current
        self._plain_steps += 1
        if self._plain_steps >= self._probe_interval:
            self._plain_steps = 0
            return 1
        return 0

    def update(self, proposed: int, accepted: int) -> None:
        if self.schedule == "constant" or proposed == 0:
            return
        if accepted == proposed:
            self.current = min(self.current + 2, self.maximum) if self.current else 1
            self._probe_interval = 4
        elif self.current > 0:
            self.current -= 1
        else:
            self._probe_interval = min(2 * self._probe_interval, 64)


class Drafter(ABC):
    """Proposes tokens to follow the sequence so far; hears back which of them the target accepted."""

    def begin(self, prompt: np.ndarray, computed: TargetOutputs, sampling: Optional[SamplingSettings],
              rng: np.random.Generator) -> None:
        """A new generation starts from `prompt`; `computed` is what the target's prefill computed (the last prompt
        row's logits and, where the graph outputs them, every prompt row's features); `sampling=None` means greedy
        decoding."""
        self.sampling = sampling
        self.rng = rng

    @abstractmethod
    def propose(self, sequence: np.ndarray, limit: int) -> DraftTree:
        """A proposal to follow `sequence` (the whole sequence so far, prompt included; its last token is the
        proposal's root), at most `limit` deep (what the generation can still keep); `NO_PROPOSAL` for none."""

    def accepted(self, proposal: DraftTree, path: np.ndarray, computed: TargetOutputs) -> None:
        """The target verified `proposal` and kept the nodes `path` (root down); `computed` is what that call
        computed for the root and every node."""


class ChainDrafter(Drafter):
    """A drafter of chains whose length adapts to how many tokens the target accepts (`DraftLength`)."""

    def __init__(self, draft_length: DraftLength):
        self.draft_length = draft_length

    def begin(self, prompt, computed, sampling, rng):
        super().begin(prompt, computed, sampling, rng)
        self.draft_length.begin()

    def _count(self, limit: int) -> int:
        return min(self.draft_length.next_length(), limit)

    def accepted(self, proposal, path, computed):
        self.draft_length.update(len(proposal), len(path))


class DraftModelDrafter(ChainDrafter):
    """Assisted generation: a small OpenVINO causal LM with the target's vocabulary drafts token by token.

    Drafting stops early when the draft's own confidence in its next token drops below
    `confidence_threshold` (transformers' `assistant_confidence_threshold`): a token it doubts is likely to be
    rejected, and on a CPU every drafted token costs time.
    """

    def __init__(self, session: DecoderSession, draft_length: DraftLength, confidence_threshold: float = 0.0):
        super().__init__(draft_length)
        self.session = session
        self.confidence_threshold = confidence_threshold
        self._cached_tokens = np.zeros(0, dtype=np.int64)

    def begin(self, prompt, computed, sampling, rng):
        super().begin(prompt, computed, sampling, rng)
        self._cached_tokens = np.zeros(max(1024, 2 * len(prompt)), dtype=np.int64)
        held = self.session.start(prompt)  # what the draft's cache still holds of the prompt
        self._cached_tokens[:held] = prompt[:held]

    def propose(self, sequence: np.ndarray, limit: int) -> DraftTree:
        count = self._count(limit)
        if count == 0:
            return NO_PROPOSAL
        logits = self._catch_up(sequence)
        tokens = np.empty(count, dtype=np.int64)
        probs = None if self.sampling is None else []
        for index in range(count):
            if self.sampling is None:
                token = int(logits.argmax())
                confident = self.confidence_threshold <= 0 or _top_probability(logits) >= self.confidence_threshold
            else:
                row_probs = self.sampling.probabilities(logits[None])[0]
                token = sample(row_probs, self.rng)
                probs.append(row_probs)
                confident = self.confidence_threshold <= 0 or row_probs.max() >= self.confidence_threshold
            tokens[index] = token
            if index + 1 == count or not confident:
                count = index + 1
                break
            logits = self._feed(np.array([token], dtype=np.int64))[-1]
        return DraftTree.chain(tokens[:count], None if probs is None else np.stack(probs))

    def _catch_up(self, sequence: np.ndarray) -> np.ndarray:
        """Bring the draft's cache to `sequence[:-1]`... and feed the rest; return the logits after `sequence`."""
        cached = self.session.length
        common = _common_prefix_length(self._cached_tokens[:cached], sequence[:cached])
        # Keep at least one token to feed, so there are logits for the position after `sequence`.
        common = min(common, len(sequence) - 1)
        self.session.rollback(common)
        missing = sequence[common:]
        if len(missing) > _SINGLE_TOKEN_CATCH_UP:
            return self._feed(missing, last_logits_only=True)[-1]
        # A few tokens go one call each: OpenVINO's CPU plugin re-plans a request whenever its input shape
        # changes, which costs the changed call and the next one about as much as a whole single-token draft
        # step (measured by lab/experiments/call_costs.py).
        for index in range(len(missing)):
            logits = self._feed(missing[index : index + 1])
        return logits[-1]

    def _feed(self, tokens: np.ndarray, last_logits_only: bool = False) -> np.ndarray:
        start = self.session.length
        if start + len(tokens) > len(self._cached_tokens):
            self._cached_tokens = np.concatenate([self._cached_tokens, np.zeros_like(self._cached_tokens)])
        self._cached_tokens[start : start + len(tokens)] = tokens
        return self.session.append(tokens, last_logits_only)


class PromptLookupDrafter(ChainDrafter):
    """Prompt lookup decoding: copy what followed the latest n-gram's earliest earlier occurrence in the sequence.

    Free to draft (no model call), so it pays off whenever the output repeats its input: edits, extraction,
    summaries quoting the source. Matches the longest n-gram first, from `max_matching_ngram_size` down to 1.
    """

    def __init__(self, draft_length: DraftLength, max_matching_ngram_size: int = 2):
        super().__init__(draft_length)
        if not isinstance(max_matching_ngram_size, int) or max_matching_ngram_size < 1:
            raise ValueError(
                f"`max_matching_ngram_size` must be a positive integer, got {max_matching_ngram_size!r}."
            )
        self.max_matching_ngram_size = max_matching_ngram_size

    def propose(self, sequence: np.ndarray, limit: int) -> DraftTree:
        count = self._count(limit)
        if count == 0:
            return NO_PROPOSAL
        length = len(sequence)
        for ngram_size in range(min(self.max_matching_ngram_size, length - 1), 0, -1):
            ngram = sequence[length - ngram_size :]
            windows = np.lib.stride_tricks.sliding_window_view(sequence[: length - 1], ngram_size)
            matches = np.flatnonzero((windows == ngram).all(axis=1))
            if len(matches):
                start = matches[0] + ngram_size
                return DraftTree.chain(sequence[start : min(start + count, length)].copy())
        return NO_PROPOSAL


def _top_probability(logits: np.ndarray) -> float:
    shifted = np.exp(logits - logits.max())
    return float(1.0 / shifted.sum())


def _common_prefix_length(a: np.ndarray, b: np.ndarray) -> int:
    overlap = min(len(a), len(b))
    differs = np.flatnonzero(a[:overlap] != b[:overlap])
    return int(differs[0]) if len(differs) else overlap
