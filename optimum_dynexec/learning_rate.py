"""The learning-rate schedule of this package's own training loops (fixture models, EAGLE heads)."""

import math


def warmup_cosine(step: int, steps: int, peak: float, warmup_steps: int, floor: float) -> float:
    """Linear warm-up to `peak` over `warmup_steps`, then cosine decay to `floor * peak` at `steps`.

    A floor above zero keeps the last steps learning: the recipes that use it stop at a step budget, not at
    convergence."""
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, steps - warmup_steps)
    return peak * (floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress)))
