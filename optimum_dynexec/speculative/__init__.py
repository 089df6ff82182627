"""Speculative generation for OpenVINO causal LMs: draft (a model, prompt lookup, an EAGLE head), verify, keep the
accepted tokens. The loop is `decoding.speculative_decode`; `modeling.OVSpeculativeModelForCausalLM` is the
Hugging Face-facing class."""

from .config import EXACT_PRECISION_CONFIG
from .eagle import EagleHead, TreeSettings, load_eagle_head, save_eagle_head
from .modeling import OVSpeculativeModelForCausalLM

__all__ = ["OVSpeculativeModelForCausalLM", "TreeSettings", "EagleHead", "load_eagle_head", "save_eagle_head",
           "EXACT_PRECISION_CONFIG"]
