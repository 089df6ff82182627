"""Speculative generation for OpenVINO causal LMs: draft (a model, prompt lookup, an EAGLE head), verify, keep the
accepted tokens."""

from .eagle import EagleHead, load_eagle_head, save_eagle_head
from .eagle_decoding import TreeSettings
from .modeling import OVSpeculativeModelForCausalLM

__all__ = ["OVSpeculativeModelForCausalLM", "TreeSettings", "EagleHead", "load_eagle_head", "save_eagle_head"]
