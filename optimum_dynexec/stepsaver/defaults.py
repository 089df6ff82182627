"""StepSaver settings and their defaults, free of heavy imports.

optimum-cli builds every subcommand's arguments at each start-up, and the `--help` texts of `label-steps` and
`train-step-predictor` show these defaults: keeping them here lets that happen without importing numpy, torch or
diffusers. `labels.py` and `training.py` import them from this module.
"""

from dataclasses import dataclass

DEFAULT_CANDIDATE_STEPS = (4, 6, 8, 10, 12, 15, 18, 22, 26, 30, 35, 40, 50, 60, 75)
DEFAULT_REFERENCE_STEPS = 100
# The range the pipeline clamps predicted step counts to, unless given or saved otherwise.
DEFAULT_MIN_INFERENCE_STEPS = 4
DEFAULT_MAX_INFERENCE_STEPS = 100
DEFAULT_SSIM_THRESHOLD = 0.97  # the operating point measured in docs/benchmarks.md (StepSaver)


@dataclass
class PredictorTrainingArguments:
    """How `training.train_step_predictor` trains the step predictor (model size, optimisation, quantile)."""

    quantile: float = 0.8
    hidden_size: int = 64
    num_layers: int = 2
    epochs: int = 60
    batch_size: int = 32
    learning_rate: float = 2e-3
    weight_decay: float = 0.01
    validation_fraction: float = 0.15
    seed: int = 0

    def validate(self) -> None:
        if not 0.0 < self.quantile < 1.0:
            raise ValueError(f"`quantile` must be strictly between 0 and 1, got {self.quantile}.")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ValueError(f"`validation_fraction` must be in [0, 1), got {self.validation_fraction}.")
