"""Turning logits into the distribution that `generate(do_sample=True, ...)` samples from.

The warpers follow transformers' order and semantics (temperature, then top-k, then top-p), so the speculative
loop samples from exactly the distribution plain sampling would, which is what makes speculative sampling exact.
"""

from dataclasses import dataclass
from typing import Optional

import numpy as np


@dataclass(frozen=True)
class SamplingSettings:
    """`temperature`, `top_k`, `top_p` as in `transformers.GenerationConfig`; `None` or neutral values disable them."""

    temperature: float = 1.0
    top_k: Optional[int] = None
    top_p: Optional[float] = None

    def __post_init__(self):
        if not self.temperature > 0:
            raise ValueError(f"`temperature` must be a strictly positive float, got {self.temperature}.")
        if self.top_k is not None and (not isinstance(self.top_k, int) or self.top_k < 0):
            raise ValueError(f"`top_k` must be a non-negative integer, got {self.top_k}.")
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"`top_p` must be a float in (0, 1], got {self.top_p}.")

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Rows of logits `[n, vocab]` -> rows of probabilities after temperature, top-k and top-p."""
        scores = logits.astype(np.float64) / self.temperature
        vocab_size = scores.shape[-1]
        if self.top_k and self.top_k < vocab_size:
            kth_largest = np.partition(scores, vocab_size - self.top_k, axis=-1)[:, vocab_size - self.top_k, None]
            scores = np.where(scores < kth_largest, -np.inf, scores)
        probs = _softmax(scores)
        if self.top_p is not None and self.top_p < 1.0:
            # transformers: drop the tokens whose ascending cumulative probability is <= 1 - top_p, keep >= 1 token.
            order = np.argsort(probs, axis=-1, kind="stable")
            cumulative = np.cumsum(np.take_along_axis(probs, order, axis=-1), axis=-1)
            drop_sorted = cumulative <= 1.0 - self.top_p
            drop_sorted[:, -1] = False
            drop = np.zeros_like(drop_sorted)
            np.put_along_axis(drop, order, drop_sorted, axis=-1)
            scores = np.where(drop, -np.inf, scores)
            probs = _softmax(scores)
        return probs


def _softmax(scores: np.ndarray) -> np.ndarray:
    shifted = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def sample(probs: np.ndarray, rng: np.random.Generator) -> int:
    """Draw one token id from a probability vector."""
    cumulative = np.cumsum(probs)
    return int(min(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"), len(probs) - 1))
