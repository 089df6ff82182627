"""The statistical check of the sampling tests: do observed outcome counts follow exact probabilities?

A check passes when its p-value is above `SIGNIFICANCE`; the tests also check that it tells a wrong sampler apart.
"""

from collections import Counter

import numpy as np
from scipy import stats

SIGNIFICANCE = 1e-3


def goodness_of_fit(counts: Counter, probabilities: dict) -> float:
    """Chi-square p-value of observed outcome counts against exact outcome probabilities.

    An outcome of probability 0 that was observed gives 0. Outcomes expected fewer than 5 times are pooled into one
    cell so the chi-square approximation holds.
    """
    if any(probabilities.get(outcome, 0.0) == 0.0 for outcome in counts):
        return 0.0
    total = sum(counts.values())
    observed, expected, pooled_observed, pooled_expected = [], [], 0, 0.0
    for outcome, probability in probabilities.items():
        if probability * total < 5:
            pooled_observed += counts.get(outcome, 0)
            pooled_expected += probability * total
        else:
            observed.append(counts.get(outcome, 0))
            expected.append(probability * total)
    if pooled_expected > 0:
        observed.append(pooled_observed)
        expected.append(pooled_expected)
    expected = np.array(expected) * total / sum(expected)  # absorb float rounding of the probabilities
    return float(stats.chisquare(observed, expected).pvalue)
