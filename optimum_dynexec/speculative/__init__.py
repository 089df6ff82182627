"""Speculative generation for OpenVINO causal LMs: draft (a model, prompt lookup), verify, keep the accepted prefix."""

from .modeling import OVSpeculativeModelForCausalLM

__all__ = ["OVSpeculativeModelForCausalLM"]
