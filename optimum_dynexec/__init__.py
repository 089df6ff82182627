"""optimum-dynexec: dynamic execution (speculative generation, early exit, StepSaver) for OpenVINO models."""
