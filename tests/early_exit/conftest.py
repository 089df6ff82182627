"""Fixtures of the early-exit tests: the tiny BERT with trained exits, exported once per process
(`helpers.tiny_classifiers`), loaded at f32 once per test module."""

import pytest
from helpers.tiny_classifiers import exported_folder
from transformers import AutoTokenizer

from optimum_dynexec.early_exit import OVEarlyExitModelForSequenceClassification

F32 = {"INFERENCE_PRECISION_HINT": "f32"}


@pytest.fixture(scope="module")
def folder():
    return exported_folder("bert")


@pytest.fixture(scope="module")
def model(folder):
    return OVEarlyExitModelForSequenceClassification.from_pretrained(str(folder), ov_config=F32)


@pytest.fixture(scope="module")
def tokenizer(folder):
    return AutoTokenizer.from_pretrained(folder)
