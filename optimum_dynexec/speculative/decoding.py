"""The speculative decoding loop: draft, verify in one target call, keep the accepted prefix, repeat.

Tensors in, tensors out: numpy token ids and OpenVINO infer requests, no framework objects in the hot loop.
Invariant: the target's cache holds every token of `sequence` but the last one, which is fed with the drafts.
"""

from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

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
) -> np.ndarray:
    """Generate up to `max_new_tokens` after `prompt`; return the new tokens (1D int64).

    Args:
        target: the session of the model whose output this must equal.
        drafter: proposes tokens; `None` decodes plainly (one target call per token).
        sampling: `None` for greedy decoding; else the distribution to sample from (speculative sampling).
        should_stop: called with the whole sequence after each new token; `True` ends generation there.
        on_tokens: called with each block of newly kept tokens (streaming).
    """
    rng = rng if rng is not None else np.random.default_rng()
    stats = stats if stats is not None else DecodingStats()
    eos = np.asarray(list(eos_token_ids), dtype=np.int64)
    sequence = np.empty(len(prompt) + max_new_tokens + 1, dtype=np.int64)
    sequence[: len(prompt)] = prompt
    length = len(prompt)

    target.reset()
    if drafter is not None:
        drafter.begin(prompt, sampling, rng)
    logits = target.append(prompt)[-1:]
    stats.target_calls += 1
    pending = _choose(logits, sampling, rng)

    while True:
        # Emit the token chosen by the target, then stop or continue.
        sequence[length] = pending
        length += 1
        stats.new_tokens += 1
        if on_tokens is not None:
            on_tokens(sequence[length - 1 : length])
        if _finished(sequence, length, len(prompt), max_new_tokens, eos, should_stop):
            break

        draft = drafter.propose(sequence[:length]) if drafter is not None else None
        draft_tokens = draft.tokens[: max(0, max_new_tokens - (length - len(prompt)) - 1)] if draft else None
        if draft_tokens is None or len(draft_tokens) == 0:
            logits = target.append(sequence[length - 1 : length])
            stats.target_calls += 1
            pending = _choose(logits, sampling, rng)
            if draft is not None:
                drafter.update(0, 0)
            continue

        verify_tokens = np.concatenate([sequence[length - 1 : length], draft_tokens])
        target_logits = target.append(verify_tokens)
        stats.target_calls += 1
        if sampling is None:
            accepted_length, pending = greedy_accept(draft_tokens, target_logits)
        else:
            draft_probs = None if draft.probs is None else draft.probs[: len(draft_tokens)]
            accepted_length, pending = speculative_accept(
                draft_tokens, draft_probs, sampling.probabilities(target_logits), rng
            )
        target.rollback(length + accepted_length)
        drafter.update(len(draft_tokens), accepted_length)
        stats.drafted_tokens += len(draft_tokens)
        stats.accepted_tokens += accepted_length
        stats.accepted_lengths.append(accepted_length)

        # Accepted drafts go through the same emit/stop checks as any token, one by one, so EOS or a stopping
        # criterion in the middle of a draft ends the output exactly where plain decoding would.
        for token in draft_tokens[:accepted_length]:
            sequence[length] = token
            length += 1
            stats.new_tokens += 1
            if on_tokens is not None:
                on_tokens(sequence[length - 1 : length])
            if _finished(sequence, length, len(prompt), max_new_tokens, eos, should_stop):
                return sequence[len(prompt) : length].copy()

    return sequence[len(prompt) : length].copy()


def _choose(logits: np.ndarray, sampling: Optional[SamplingSettings], rng: np.random.Generator) -> int:
    if sampling is None:
        return int(logits[-1].argmax())
    return sample(sampling.probabilities(logits[-1:])[0], rng)


def _finished(sequence, length, prompt_length, max_new_tokens, eos, should_stop) -> bool:
    if length - prompt_length >= max_new_tokens:
        return True
    if len(eos) and (eos == sequence[length - 1]).any():
        return True
    return should_stop is not None and should_stop(sequence[:length])
