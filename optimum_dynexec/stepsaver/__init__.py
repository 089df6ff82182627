"""StepSaver: predict, per prompt, the fewest denoising steps an OpenVINO Stable Diffusion pipeline needs."""

from .pipeline import OVStepSaverStableDiffusionPipeline, StepSaverPipelineOutput
from .predictor import StepPredictor, StepPredictorConfig

__all__ = ["OVStepSaverStableDiffusionPipeline", "StepPredictor", "StepPredictorConfig", "StepSaverPipelineOutput"]
