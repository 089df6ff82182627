"""StepSaver: predict, per prompt, the fewest denoising steps an OpenVINO Stable Diffusion pipeline needs."""

import importlib

# Public names, imported on first use: the pipeline pulls in diffusers, torch and optimum-intel, which the light
# submodules (`defaults`, read by optimum-cli at every start-up) and the predictor's training do not need.
_PUBLIC = {
    "OVStepSaverStableDiffusionPipeline": ".pipeline",
    "StepSaverPipelineOutput": ".pipeline",
    "StepPredictor": ".predictor",
    "StepPredictorConfig": ".predictor",
}

__all__ = list(_PUBLIC)


def __getattr__(name):
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_PUBLIC))
