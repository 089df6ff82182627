"""The one JSON config of early exit: which layers have exits, how they pool, their temperatures, the threshold.

It lives next to the model as `early_exit_config.json`, both in a trained PyTorch checkpoint (beside
`exits/exit_heads.safetensors`) and in an exported OpenVINO folder (beside the `exits/` segments).
"""

import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import List, Optional

EARLY_EXIT_CONFIG_NAME = "early_exit_config.json"
EXITS_DIR_NAME = "exits"
EXIT_HEADS_WEIGHTS_NAME = "exit_heads.safetensors"
POOLING_CHOICES = ("mean", "cls")
FORMAT_VERSION = 1


@dataclass
class EarlyExitConfig:
    """Settings of an early-exit classifier.

    Args:
        num_layers: number of encoder layers; layers `1 .. num_layers - 1` carry an exit head, layer `num_layers`
            ends in the model's own classifier.
        num_labels: number of classes.
        pooling: how an exit head summarises the tokens: `"mean"` (masked mean, padding-invariant) or `"cls"`.
        exit_temperatures: one softmax temperature per layer (`num_layers` values) used only by the entropy
            gate; fitted on validation data so that entropies of different layers are comparable.
        entropy_threshold: a row leaves at the first layer whose normalised prediction entropy
            (entropy / log(num_labels), in [0, 1]) is strictly below this value. 0 never exits early.
        training: free-form record of how the exits were trained (scheme, losses, per-layer accuracy).
    """

    num_layers: int
    num_labels: int
    pooling: str = "mean"
    exit_temperatures: Optional[List[float]] = None
    entropy_threshold: float = 0.0
    training: dict = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def __post_init__(self):
        if self.pooling not in POOLING_CHOICES:
            raise ValueError(f"`pooling` must be one of {POOLING_CHOICES}, got {self.pooling!r}.")
        if self.exit_temperatures is None:
            self.exit_temperatures = [1.0] * self.num_layers
        if len(self.exit_temperatures) != self.num_layers:
            raise ValueError(
                f"`exit_temperatures` needs one value per layer ({self.num_layers}), got {len(self.exit_temperatures)}."
            )
        validate_entropy_threshold(self.entropy_threshold)

    def save(self, directory) -> None:
        """Write `early_exit_config.json` into `directory` atomically."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        handle, staging = tempfile.mkstemp(prefix=".early_exit_config.", dir=directory)
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(asdict(self), stream, indent=2, sort_keys=True)
            stream.write("\n")
        os.replace(staging, directory / EARLY_EXIT_CONFIG_NAME)

    @classmethod
    def load(cls, directory) -> "EarlyExitConfig":
        path = Path(directory) / EARLY_EXIT_CONFIG_NAME
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found: this folder has no early exits. Train them first with "
                "`optimum-cli dynexec train-exits --model ... --dataset ... --output ...`."
            )
        with open(path, encoding="utf-8") as stream:
            values = json.load(stream)
        known = {name for name in cls.__dataclass_fields__}
        return cls(**{key: value for key, value in values.items() if key in known})


def validate_entropy_threshold(entropy_threshold) -> float:
    """Return `entropy_threshold` as a float, or raise a ValueError that says what is allowed."""
    if isinstance(entropy_threshold, bool) or not isinstance(entropy_threshold, (int, float)):
        raise TypeError(
            f"`entropy_threshold` must be a number in [0, 1] (normalised entropy), got {type(entropy_threshold).__name__}."
        )
    if not (0.0 <= float(entropy_threshold) <= 1.0) or math.isnan(entropy_threshold):
        raise ValueError(
            f"`entropy_threshold` must be in [0, 1] (entropy divided by log(num_labels)); got {entropy_threshold}. "
            "Use 0 to disable early exit, larger values to exit earlier."
        )
    return float(entropy_threshold)
