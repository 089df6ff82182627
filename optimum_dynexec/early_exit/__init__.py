"""Entropy-gated early exit for OpenVINO sequence classifiers (BERT, RoBERTa, ALBERT, DistilBERT, ELECTRA)."""

from .config import EarlyExitConfig
from .export import export_early_exit
from .modeling import EarlyExitCallStats, EarlyExitSequenceClassifierOutput, OVEarlyExitModelForSequenceClassification

__all__ = [
    "EarlyExitCallStats",
    "EarlyExitConfig",
    "EarlyExitSequenceClassifierOutput",
    "OVEarlyExitModelForSequenceClassification",
    "export_early_exit",
]
