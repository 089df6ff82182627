"""The exit gate's one formula: the normalised, temperature-scaled entropy of each exit, and the layer it lets a row
leave at. The runtime (`modeling.py`) decides with it and the calibration (`calibration.py`) simulates with it, so a
threshold certified there decides here exactly as it was simulated."""

from typing import Sequence

import numpy as np


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """log softmax over the last axis, computed in float64 with the max subtracted first (no overflow)."""
    shifted = np.asarray(logits, dtype=np.float64)
    shifted = shifted - shifted.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def normalised_entropies(layer_logits: np.ndarray, temperatures: Sequence[float]) -> np.ndarray:
    """[layers, examples, labels] logits -> [layers, examples] entropy / log(labels) of softmax(logits / T)."""
    log_probabilities = log_softmax(layer_logits / np.asarray(temperatures, dtype=np.float64)[:, None, None])
    entropy = -(np.exp(log_probabilities) * log_probabilities).sum(axis=-1)
    return entropy / np.log(max(layer_logits.shape[-1], 2))


def exit_layers_at(entropies: np.ndarray, threshold: float) -> np.ndarray:
    """1-based exit layer of every example: the first layer with entropy < threshold, else the last layer."""
    num_layers = entropies.shape[0]
    below = entropies[:-1] < threshold
    first = np.where(below.any(axis=0), below.argmax(axis=0) + 1, num_layers)
    return first
