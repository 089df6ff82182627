"""The one JSON config of early exit: which layers have exits, how they pool, their temperatures, the threshold.

It lives next to the model as `early_exit_config.json`, both in a trained PyTorch checkpoint (beside
`exits/exit_heads.safetensors`) and in an exported OpenVINO folder (beside the `exits/` segments).
"""

import decimal
import json
import math
import numbers
import reprlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import List, Optional

EARLY_EXIT_CONFIG_NAME = "early_exit_config.json"
EXITS_DIR_NAME = "exits"
EXIT_HEADS_WEIGHTS_NAME = "exit_heads.safetensors"
POOLING_CHOICES = ("mean", "cls")
FORMAT_VERSION = 1
REBUILD_HINT = (
    "Re-create it: re-export the model (`optimum-cli export dynexec --task text-classification --model "
    "<train-exits checkpoint> <output>` or `OVEarlyExitModelForSequenceClassification.from_pretrained(checkpoint, "
    "export=True).save_pretrained(<output>)`), or re-save a loaded model with `save_pretrained`; in a train-exits "
    "checkpoint, re-run `optimum-cli dynexec train-exits`."
)


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
        calibration: how `calibrate-exits --save-threshold` chose the threshold (criterion, epsilon, delta, rows,
            the inference precision it holds at, the guarantee); it describes `entropy_threshold` only while that
            still equals the record's `threshold` (a threshold set by hand afterwards is not covered). {} if none.
    """

    num_layers: int
    num_labels: int
    pooling: str = "mean"
    exit_temperatures: Optional[List[float]] = None
    entropy_threshold: float = 0.0
    training: dict = field(default_factory=dict)
    calibration: dict = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def __post_init__(self):
        for name in ("num_layers", "num_labels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
        if self.pooling not in POOLING_CHOICES:
            raise ValueError(f"`pooling` must be one of {POOLING_CHOICES}, got {self.pooling!r}.")
        if self.exit_temperatures is None:
            self.exit_temperatures = [1.0] * self.num_layers
        if not isinstance(self.exit_temperatures, (list, tuple)) or len(self.exit_temperatures) != self.num_layers:
            raise ValueError(
                f"`exit_temperatures` needs one value per layer ({self.num_layers}), got {self.exit_temperatures!r}."
            )
        # A zero, negative or NaN temperature would turn every entropy into NaN: no row would ever exit early.
        if not all(_is_real(value) and math.isfinite(value) and value > 0 for value in self.exit_temperatures):
            raise ValueError(f"`exit_temperatures` must be positive numbers, got {self.exit_temperatures!r}.")
        self.exit_temperatures = [float(value) for value in self.exit_temperatures]
        # Stored as a float: a numpy scalar would not survive `json.dump` in `save`.
        self.entropy_threshold = validate_entropy_threshold(self.entropy_threshold)
        if not isinstance(self.training, dict):
            raise ValueError(f"`training` must be a dict (the training record), got {type(self.training).__name__}.")
        if not isinstance(self.calibration, dict):
            raise ValueError(
                f"`calibration` must be a dict (the calibration record), got {type(self.calibration).__name__}."
            )
        if self.format_version != FORMAT_VERSION:
            raise ValueError(
                f"`format_version` {self.format_version!r} is not the one this version of optimum-dynexec reads "
                f"({FORMAT_VERSION}): upgrade optimum-dynexec or re-export the model with this version."
            )

    def save(self, directory) -> None:
        """Write `early_exit_config.json` into `directory` atomically."""
        from ..utils.io import write_text_atomically

        text = json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"
        write_text_atomically(Path(directory) / EARLY_EXIT_CONFIG_NAME, text)

    @classmethod
    def load(cls, directory) -> "EarlyExitConfig":
        path = Path(directory) / EARLY_EXIT_CONFIG_NAME
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found: this folder has no early exits. Train them first with "
                "`optimum-cli dynexec train-exits --model ... --dataset ... --output ...`."
            )
        try:
            with open(path, encoding="utf-8") as stream:
                values = json.load(stream)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"{path} is not valid JSON (truncated or damaged?): {error}. {REBUILD_HINT}") from None
        if not isinstance(values, dict):
            raise ValueError(f"{path} must hold a JSON object, got {type(values).__name__}. {REBUILD_HINT}")
        known = {name for name in cls.__dataclass_fields__}
        missing = [name for name in ("num_layers", "num_labels") if name not in values]
        if missing:
            raise ValueError(f"{path} lacks {missing}. {REBUILD_HINT}")
        try:
            return cls(**{key: value for key, value in values.items() if key in known})
        except (TypeError, ValueError) as error:
            raise ValueError(f"{path} holds an invalid setting: {error} {REBUILD_HINT}") from None


def validate_entropy_threshold(entropy_threshold) -> float:
    """Return `entropy_threshold` as a float, or raise a TypeError/ValueError that says what is allowed.

    Any real number is accepted (int, float, `Fraction`, `Decimal`, numpy scalars, 0-d numpy arrays or torch tensors);
    bools, NaN and values outside [0, 1] are not.
    """
    value = entropy_threshold
    if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):  # numpy scalars, 0-d arrays and tensors
        value = value.item()
    if not _is_real(value):
        raise TypeError(
            "`entropy_threshold` must be a real number in [0, 1] such as 0.3 (normalised entropy), got "
            f"{type(entropy_threshold).__name__} {reprlib.repr(entropy_threshold)}."
        )
    value = float(value)
    if not 0.0 <= value <= 1.0:  # also refuses NaN
        raise ValueError(
            f"`entropy_threshold` must be in [0, 1] (entropy divided by log(num_labels)); got {value}. "
            "Use 0 to disable early exit, larger values to exit earlier."
        )
    return value


def _is_real(value) -> bool:
    # bool is an Integral, but True as a threshold is far more likely a mistake than "exit everything at layer 1".
    return isinstance(value, (numbers.Real, decimal.Decimal)) and not isinstance(value, bool)


# What tells the two kinds of early-exit folder apart, by file name alone.
EXPORTED_FILES = ("openvino_model.xml", EARLY_EXIT_CONFIG_NAME)
CHECKPOINT_FILES = (EARLY_EXIT_CONFIG_NAME, f"{EXITS_DIR_NAME}/{EXIT_HEADS_WEIGHTS_NAME}")


def early_exit_folder_kind(model, argument: str = "--model") -> str:
    """"exported" for an early-exit OpenVINO folder, "checkpoint" for a `train-exits` checkpoint; ValueError naming
    `argument` and the fix for anything else. Reads only file names: it runs before any model loads."""
    folder = Path(model).expanduser()
    if not folder.is_dir():
        raise ValueError(
            f"{argument} {model!r} is not a folder ({folder.absolute()}): pass the folder written by `optimum-cli "
            "export dynexec --task text-classification` or by `optimum-cli dynexec train-exits`."
        )
    if all((folder / name).is_file() for name in EXPORTED_FILES):
        return "exported"
    if all((folder / name).is_file() for name in CHECKPOINT_FILES):
        return "checkpoint"
    raise ValueError(
        f"{argument} {model!r} holds neither an exported early-exit model ({' + '.join(EXPORTED_FILES)}, from "
        f"`optimum-cli export dynexec --task text-classification`) nor trained exits ({' + '.join(CHECKPOINT_FILES)}, "
        "from `optimum-cli dynexec train-exits`)."
    )
