"""The speculative decoding loop, one for every drafter: draft, verify in one target call, accept, repeat.

    prefill   target.prefill(prompt) -> the first new token; drafter.begin(prompt, what the target computed)
    draft     drafter.propose(sequence, room) -> a proposal (`tree.DraftTree`; a chain is a tree with one branch)
    verify    target.verify(sequence, proposal) -> the target's logits for the root and every node
    accept    acceptance.accept -> the accepted path and the target's own next token
    keep      target.keep(path); drafter.accepted(proposal, path, what the target computed)

The drafter is a draft model, prompt lookup or an EAGLE head (`drafters.py`, `eagle/drafter.py`); the target keeps
its KV cache in a session that scores chains or trees (`targets.py`). Tensors in, tensors out: numpy token ids and
OpenVINO infer requests, no framework objects in the loop.
"""

from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence, Tuple

import numpy as np

from .acceptance import accept
from .drafters import Drafter
from .sampling import SamplingSettings, sample
from .targets import Target
from .tree import NO_PROPOSAL


@dataclass
class DecodingStats:
    """What one generation did: how many target calls, how many drafts proposed and accepted."""

    new_tokens: int = 0
    target_calls: int = 0
    drafted_tokens: int = 0
    accepted_tokens: int = 0
    accepted_lengths: list = field(default_factory=list)

    def record(self, drafted: int, accepted: int) -> None:
        """One verification of `drafted` tokens, `accepted` of which the target kept."""
        self.drafted_tokens += drafted
        self.accepted_tokens += accepted
        self.accepted_lengths.append(accepted)

    @property
    def mean_accepted_length(self) -> float:
        """Tokens gained per verification call (accepted drafts + the target's own token)."""
        verifications = len(self.accepted_lengths)
        return (sum(self.accepted_lengths) + verifications) / verifications if verifications else 0.0


@dataclass(frozen=True)
class BannedTokens:
    """Tokens the target may not choose, as transformers' logits processors rule them out: EOS before the
    `min_new_tokens`-th new token (`min_new_tokens`, `min_length`), `always` at every step (`suppress_tokens`),
    `at_first` as the first new token (`begin_suppress_tokens`).

    They are applied to the target's logits before anything reads them, so the target's greedy choices and sampled
    distributions are exactly those of plain decoding with the same processors; a drafted token that is banned is
    then rejected by verification like any other token the target would not choose.
    """

    eos_until: int = 0
    eos_ids: Tuple[int, ...] = ()
    always: Tuple[int, ...] = ()
    at_first: Tuple[int, ...] = ()

    def __bool__(self) -> bool:
        return bool((self.eos_until > 0 and self.eos_ids) or self.always or self.at_first)

    def apply(self, logits: np.ndarray, first_index: int, offsets: Optional[np.ndarray] = None) -> np.ndarray:
        """Set banned logits to -inf in place and return `logits` (`[n, vocab]`). Row `r` chooses the new token
        number `first_index + offsets[r]` (0-based; `offsets` defaults to `0, 1, ..., n - 1`)."""
        vocab_size = logits.shape[-1]
        index = first_index + (np.arange(len(logits)) if offsets is None else np.asarray(offsets))
        for tokens, rows in ((self.eos_ids, index < self.eos_until), (self.at_first, index == 0),
                             (self.always, np.ones(len(logits), dtype=bool))):
            tokens = [token for token in tokens if 0 <= token < vocab_size]
            if tokens and rows.any():
                logits[np.ix_(np.flatnonzero(rows), tokens)] = -np.inf
        return logits


class GeneratedSequence:
    """The prompt and the tokens generated after it, with the rules that end generation and the tokens the target
    may not choose (`BannedTokens`).

    Every kept token goes through `append`, one by one, so EOS or a stopping criterion in the middle of an
    accepted draft ends the output exactly where plain decoding would. Shared by every decoding loop.
    """

    def __init__(self, prompt: np.ndarray, max_new_tokens: int, eos_token_ids: Sequence[int],
                 should_stop: Optional[Callable[[np.ndarray], bool]],
                 on_tokens: Optional[Callable[[np.ndarray], None]], stats: DecodingStats,
                 banned: Optional[BannedTokens] = None):
        self._buffer = np.empty(len(prompt) + max_new_tokens + 1, dtype=np.int64)
        self._buffer[: len(prompt)] = prompt
        self.prompt_length = self.length = len(prompt)
        self.max_new_tokens = max_new_tokens
        self._eos = np.asarray(list(eos_token_ids), dtype=np.int64)
        self._should_stop = should_stop
        self._on_tokens = on_tokens
        self._stats = stats
        self._banned = banned if banned else None

    def restrict(self, logits: np.ndarray, offsets: Optional[np.ndarray] = None) -> np.ndarray:
        """The target's logits `[n, vocab]` with the banned tokens at -inf (in place); row `r` chooses the token
        after `offsets[r]` more tokens than the sequence holds now (default `0, 1, ..., n - 1`)."""
        if self._banned is None:
            return logits
        return self._banned.apply(logits, self.length - self.prompt_length, offsets)

    @property
    def tokens(self) -> np.ndarray:
        """The whole sequence so far (a view)."""
        return self._buffer[: self.length]

    @property
    def room(self) -> int:
        """How many draft tokens a verification may still keep: the target adds one token of its own after them."""
        return max(0, self.max_new_tokens - (self.length - self.prompt_length) - 1)

    def append(self, token: int) -> bool:
        """Keep `token`; return True when generation must end after it."""
        self._buffer[self.length] = token
        self.length += 1
        self._stats.new_tokens += 1
        if self._on_tokens is not None:
            self._on_tokens(self._buffer[self.length - 1 : self.length])
        if self.length - self.prompt_length >= self.max_new_tokens:
            return True
        if len(self._eos) and (self._eos == token).any():
            return True
        return self._should_stop is not None and self._should_stop(self.tokens)

    def extend(self, tokens: np.ndarray) -> bool:
        """Keep `tokens` one by one; return True (and keep no more) as soon as generation must end."""
        return any(self.append(token) for token in tokens)

    def new_tokens(self) -> np.ndarray:
        return self._buffer[self.prompt_length : self.length].copy()


def speculative_decode(
    target: Target,
    drafter: Optional[Drafter],
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
    """Generate up to `max_new_tokens` after `prompt` (1D int64); return the new tokens (1D int64).

    Args:
        target: the model whose output this must equal (`targets.SequenceTarget` or `targets.TreeTarget`).
        drafter: proposes tokens (`drafters.Drafter`); `None` decodes plainly (one target call per token).
        sampling: `None` for greedy decoding; else the distribution to sample from (speculative sampling).
        should_stop: called with the whole sequence after each new token; `True` ends generation there.
        on_tokens: called with each block of newly kept tokens (streaming).
        banned: tokens the target may not choose (`min_new_tokens`, `suppress_tokens`, ...).
    """
    rng = rng if rng is not None else np.random.default_rng()
    stats = stats if stats is not None else DecodingStats()
    prompt = np.asarray(prompt, dtype=np.int64)
    output = GeneratedSequence(prompt, max_new_tokens, eos_token_ids, should_stop, on_tokens, stats, banned)

    # Prefill: the target reads the prompt and chooses the first new token; the drafter sees what it computed.
    computed = target.prefill(prompt)
    stats.target_calls += 1
    if drafter is not None:
        drafter.begin(prompt, computed, sampling, rng)
    pending = choose_token(output.restrict(computed.logits[-1:])[-1], sampling, rng)

    while not output.append(pending):
        # Draft: a tree (or chain) below the target's latest token, no deeper than the generation can keep.
        room = output.room
        proposal = drafter.propose(output.tokens, room) if drafter is not None and room else NO_PROPOSAL
        # Verify: the target scores the root and every drafted node in one call.
        computed = target.verify(output.tokens, proposal)
        stats.target_calls += 1
        offsets = None if proposal.is_chain else np.concatenate([[0], proposal.depths])
        # Accept: the longest path the target agrees with, then the target's own next token.
        path, pending = accept(proposal, output.restrict(computed.logits, offsets), sampling, rng)
        target.keep(path)
        if drafter is not None:
            drafter.accepted(proposal, path, computed)
        if len(proposal):
            stats.record(len(proposal), len(path))
        if output.extend(proposal.tokens[path]):
            break

    return output.new_tokens()


def choose_token(logits: np.ndarray, sampling: Optional[SamplingSettings], rng: np.random.Generator) -> int:
    """The target's own next token from one row of logits: argmax, or a draw from the warped distribution."""
    if sampling is None:
        return int(logits.argmax())
    return sample(sampling.probabilities(logits[None])[0], rng)
