"""optimum-dynexec: dynamic execution (speculative generation, early exit, StepSaver) for OpenVINO models."""

from .speculative import OVSpeculativeModelForCausalLM

__all__ = ["OVSpeculativeModelForCausalLM"]
