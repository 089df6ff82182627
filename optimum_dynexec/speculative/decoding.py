"""The speculative decoding loop: draft, verify in one target call, keep the accepted prefix, repeat.

Tensors in, tensors out: numpy token ids and OpenVINO infer requests, no framework objects in the hot loop.
Invariant: the target's cache holds every token of `sequence` but the last one, which is fed with the drafts.
"""

from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence, Tuple

import numpy as np

from .drafters import Drafter
from .kv_cache import DecoderSession
from .sampling import SamplingSettings, sample
from .verify import greedy_accept, speculative_accept


@dataclass
class DecodingStats:
    """What one generation did: how many target calls, how many drafts proposed and accepted."""

    new_tokens: int = 0
    target_calls: int = 0
    drafted_tokens: int = 0
    accepted_tokens: int = 0
    accepted_lengths: list = field(default_factory=list)

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
    target: DecoderSession,
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
    """Generate up to `max_new_tokens` after `prompt`; return the new tokens (1D int64).

    Args:
        target: the session of the model whose output this must equal.
        drafter: proposes tokens; `None` decodes plainly (one target call per token).
        sampling: `None` for greedy decoding; else the distribution to sample from (speculative sampling).
        should_stop: called with the whole sequence after each new token; `True` ends generation there.
        on_tokens: called with each block of newly kept tokens (streaming).
        banned: tokens the target may not choose (`min_new_tokens`, `suppress_tokens`, ...).
    """
    rng = rng if rng is not None else np.random.default_rng()
    stats = stats if stats is not None else DecodingStats()
    output = GeneratedSequence(prompt, max_new_tokens, eos_token_ids, should_stop, on_tokens, stats, banned)

    held = target.start(prompt)
    if drafter is not None:
        drafter.begin(prompt, sampling, rng)
    logits = output.restrict(target.append(prompt[held:], last_logits_only=True))
    stats.target_calls += 1
    pending = choose_token(logits[-1], sampling, rng)

    while not output.append(pending):
        room = output.room
        draft = drafter.propose(output.tokens, room) if drafter is not None and room else None
        draft_tokens = draft.tokens[:room] if draft else None
        last_token = output.tokens[-1:]
        if draft_tokens is None or len(draft_tokens) == 0:
            logits = output.restrict(target.append(last_token))
            stats.target_calls += 1
            pending = choose_token(logits[-1], sampling, rng)
            if draft is not None:
                drafter.update(0, 0)
            continue

        target_logits = output.restrict(target.append(np.concatenate([last_token, draft_tokens])))
        stats.target_calls += 1
        if sampling is None:
            accepted_length, pending = greedy_accept(draft_tokens, target_logits)
        else:
            draft_probs = None if draft.probs is None else draft.probs[: len(draft_tokens)]
            accepted_length, pending = speculative_accept(
                draft_tokens, draft_probs, sampling.probabilities(target_logits), rng
            )
        target.rollback(output.length + accepted_length)
        drafter.update(len(draft_tokens), accepted_length)
        stats.drafted_tokens += len(draft_tokens)
        stats.accepted_tokens += accepted_length
        stats.accepted_lengths.append(accepted_length)
        if output.extend(draft_tokens[:accepted_length]):
            break

    return output.new_tokens()


class ChainSpeculator:
    """A target session and a drafter proposing one chain of tokens per verification (draft model, prompt lookup).

    Has the same `decode` as `EagleSpeculator` (tree drafts), so the model class runs either the same way.
    """

    def __init__(self, target: DecoderSession, drafter: Optional[Drafter]):
        self.target = target
        self.drafter = drafter

    def decode(self, prompt: np.ndarray, max_new_tokens: int, eos_token_ids: Sequence[int] = (),
               sampling: Optional[SamplingSettings] = None, rng: Optional[np.random.Generator] = None,
               should_stop: Optional[Callable[[np.ndarray], bool]] = None,
               on_tokens: Optional[Callable[[np.ndarray], None]] = None,
               stats: Optional[DecodingStats] = None, banned: Optional[BannedTokens] = None) -> np.ndarray:
        """`speculative_decode` on this target and drafter."""
        return speculative_decode(self.target, self.drafter, prompt, max_new_tokens, eos_token_ids, sampling, rng,
                                  should_stop, on_tokens, stats, banned)


def choose_token(logits: np.ndarray, sampling: Optional[SamplingSettings], rng: np.random.Generator) -> int:
    """The target's own next token from one row of logits: argmax, or a draw from the warped distribution."""
    if sampling is None:
        return int(logits.argmax())
    return sample(sampling.probabilities(logits[None])[0], rng)
