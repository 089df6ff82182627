"""Entropy-gated early exit for OpenVINO sequence classifiers (BERT, RoBERTa, ALBERT, DistilBERT, ELECTRA)."""

from .config import EarlyExitConfig
from .export import export_early_exit
from .modeling import EarlyExitSequenceClassifierOutput, OVEarlyExitModelForSequenceClassification

__all__ = [
    "EarlyExitConfig",
    "EarlyExitSequenceClassifierOutput",
    "OVEarlyExitModelForSequenceClassification",
    "export_early_exit",
]
