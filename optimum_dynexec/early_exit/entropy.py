"""The exit gate's one formula: the normalised, temperature-scaled entropy of each exit, and the layer it lets a row
leave at. The runtime (`modeling.py`) decides with it and the calibration (`calibration.py`) simulates with it, so a
threshold certified there decides here exactly as it was simulated."""

from typing import Sequence

import numpy as np


def normalised_entropies(layer_logits: np.ndarray, temperatures: Sequence[float]) -> np.ndarray:
    """[layers, examples, labels] logits -> [layers, examples] entropy / log(labels) of softmax(logits / T)."""
    scaled = layer_logits / np.asarray(temperatures, dtype=np.float64)[:, None, None]
    scaled = scaled - scaled.max(axis=-1, keepdims=True)
    log_probabilities = scaled - np.log(np.exp(scaled).sum(axis=-1, keepdims=True))
    entropy = -(np.exp(log_probabilities) * log_probabilities).sum(axis=-1)
    return entropy / np.log(max(layer_logits.shape[-1], 2))


def exit_layers_at(entropies: np.ndarray, threshold: float) -> np.ndarray:
    """1-based exit layer of every example: the first layer with entropy < threshold, else the last layer."""
    num_layers = entropies.shape[0]
    below = entropies[:-1] < threshold
    first = np.where(below.any(axis=0), below.argmax(axis=0) + 1, num_layers)
    return first
