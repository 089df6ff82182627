"""optimum-dynexec: dynamic execution (speculative generation, early exit, StepSaver) for OpenVINO models."""

import importlib

# Public names, imported on first use: each capability pulls in its own stack (diffusers only for StepSaver).
_PUBLIC = {
    "OVSpeculativeModelForCausalLM": "optimum_dynexec.speculative",
    "OVEarlyExitModelForSequenceClassification": "optimum_dynexec.early_exit",
    "OVStepSaverStableDiffusionPipeline": "optimum_dynexec.stepsaver",
}

__all__ = list(_PUBLIC)


def __getattr__(name):
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'optimum_dynexec' has no attribute {name!r}")
