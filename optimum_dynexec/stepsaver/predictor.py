"""Prompt -> the fewest denoising steps that still give a converged image.

The predictor is a small BERT-style regressor (trained from scratch by `training.py`) exported to OpenVINO as an
`OVModelForSequenceClassification` with a single output: a conservative quantile of log(num_inference_steps). Working
in log-steps makes "5 steps too many" at 10 steps count as much as "50 too many" at 100, which matches how quality
saturates with steps. Its folder (`step_predictor/` inside a StepSaver pipeline) holds the OpenVINO model, the
tokenizer it was trained with, and `step_predictor_config.json` describing the output.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence, Union

import numpy as np

STEP_PREDICTOR_CONFIG_NAME = "step_predictor_config.json"


@dataclass
class StepPredictorConfig:
    """What the predictor's single output means and how its labels were made (kept for reproducibility)."""

    output: str = "log_num_inference_steps"
    quantile: float = 0.8
    labels: dict = field(default_factory=dict)

    @classmethod
    def from_json_file(cls, path: Path) -> "StepPredictorConfig":
        values = json.loads(Path(path).read_text())
        return cls(**{key: values[key] for key in cls.__dataclass_fields__ if key in values})

    def to_json_file(self, path: Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=2) + "\n")


class StepPredictor:
    """Predicts, for each prompt, the number of denoising steps after which its image has converged.

    Args:
        model: an `OVModelForSequenceClassification` with one regression output (log of the step count).
        tokenizer: the tokenizer the model was trained with.
        config: a `StepPredictorConfig` describing the output.

    Load one with `StepPredictor.from_pretrained(directory)`; `OVStepSaverStableDiffusionPipeline.from_pretrained`
    does this for its `step_predictor/` folder.
    """

    def __init__(self, model, tokenizer, config: Optional[StepPredictorConfig] = None):
        self.model = model
        self.tokenizer = tokenizer
        self.config = config or StepPredictorConfig()
        if self.config.output != "log_num_inference_steps":
            raise ValueError(
                f"Unsupported step predictor output {self.config.output!r}; this version reads "
                "'log_num_inference_steps'. Retrain the predictor with `optimum-cli dynexec train-step-predictor`."
            )

    @classmethod
    def from_pretrained(
        cls,
        model_id: Union[str, Path],
        *,
        device: str = "CPU",
        ov_config: Optional[dict] = None,
        quantization_config=None,
        load_in_8bit: bool = False,
        compile: bool = True,
    ) -> "StepPredictor":
        """Load a predictor folder written by `save_pretrained` (or by `train-step-predictor`).

        `quantization_config` / `load_in_8bit` are passed to optimum-intel unchanged, so the predictor quantizes like
        any other OpenVINO model.
        """
        from optimum.intel import OVModelForSequenceClassification
        from transformers import AutoTokenizer

        model_id = Path(model_id)
        config_path = model_id / STEP_PREDICTOR_CONFIG_NAME
        if not config_path.is_file():
            raise ValueError(
                f"{model_id} is not a step predictor folder (no {STEP_PREDICTOR_CONFIG_NAME}). Train one with "
                "`optimum-cli dynexec train-step-predictor --labels <labels.json> --output <dir>`."
            )
        model = OVModelForSequenceClassification.from_pretrained(
            model_id,
            device=device,
            ov_config=ov_config,
            quantization_config=quantization_config,
            load_in_8bit=load_in_8bit,
            compile=compile,
        )
        tokenizer = AutoTokenizer.from_pretrained(model_id)
        return cls(model, tokenizer, StepPredictorConfig.from_json_file(config_path))

    def save_pretrained(self, save_directory: Union[str, Path]) -> None:
        """Write the OpenVINO model, the tokenizer and `step_predictor_config.json` to `save_directory`."""
        save_directory = Path(save_directory)
        save_directory.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(save_directory)
        self.tokenizer.save_pretrained(save_directory)
        self.config.to_json_file(save_directory / STEP_PREDICTOR_CONFIG_NAME)

    def predict_log_steps(self, prompts: Sequence[str]) -> np.ndarray:
        """The raw model output: the predicted quantile of log(num_inference_steps), one per prompt."""
        if isinstance(prompts, str):
            prompts = [prompts]
        if not all(isinstance(prompt, str) for prompt in prompts):
            raise TypeError("`prompts` must be a string or a list of strings.")
        inputs = self.tokenizer(list(prompts), padding=True, truncation=True, return_tensors="np")
        # The exported model takes exactly the inputs it was traced with; CLIP tokenizers add none a BERT lacks.
        inputs = {name: value for name, value in inputs.items() if name in self.model.input_names}
        logits = self.model(**inputs).logits
        return np.asarray(logits, dtype=np.float64).reshape(len(prompts), -1)[:, 0]

    def predict(self, prompts: Union[str, Sequence[str]]) -> List[int]:
        """Predicted number of denoising steps per prompt (rounded up; not clamped, the pipeline clamps)."""
        return [max(1, math.ceil(math.exp(value) - 1e-6)) for value in self.predict_log_steps(prompts)]

    def __call__(self, prompts: Union[str, Sequence[str]]) -> List[int]:
        return self.predict(prompts)
