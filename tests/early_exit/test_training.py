"""Training exit heads: the layered view matches the model, training learns, schemes freeze what they claim."""

import json

import pytest
import torch
from safetensors.torch import load_file
from helpers.tiny_classifiers import FAMILIES, base_classifier, synthetic_task, trained_checkpoint

from optimum_dynexec.early_exit.checkpoint import load_exit_checkpoint
from optimum_dynexec.early_exit.config import EarlyExitConfig
from optimum_dynexec.early_exit.layered_encoder import LayeredEncoder
from optimum_dynexec.early_exit.training import (
    ExitTrainingArguments,
    forward_all_layers,
)


def _padded_batch(folder, texts):
    from transformers import AutoTokenizer

    return dict(AutoTokenizer.from_pretrained(folder)(texts, padding=True, return_tensors="pt"))


@pytest.mark.parametrize("family", FAMILIES + ("camembert", "xlm-roberta"))
def test_layered_view_reproduces_the_model_logits(family):
    from transformers import AutoModelForSequenceClassification

    folder = base_classifier(family)
    model = AutoModelForSequenceClassification.from_pretrained(folder, attn_implementation="eager").eval()
    encoder = LayeredEncoder(model)
    batch = _padded_batch(folder, ["the red rose", "a of and to in is it for on the sky sea blue"])
    batch.pop("token_type_ids", None) if family in ("roberta", "camembert", "xlm-roberta", "distilbert") else None
    with torch.no_grad():
        expected = model(**batch).logits
        layered = forward_all_layers(encoder, heads=None, batch=batch, with_exits=False)[-1]
    assert torch.allclose(layered, expected, atol=1e-5)


def test_joint_training_writes_a_checkpoint_whose_early_exits_learned():
    folder = trained_checkpoint("bert", "joint")
    config = EarlyExitConfig.load(folder)
    assert (config.num_layers, config.num_labels, config.pooling) == (3, 3, "mean")
    assert len(config.exit_temperatures) == 3 and all(t > 0 for t in config.exit_temperatures)
    heads = load_file(str(folder / "exits" / "exit_heads.safetensors"))
    assert {name.split(".")[0] for name in heads} == {"0", "1"}  # layers 1 and 2; layer 3 is the model's own
    accuracy = config.training["validation_accuracy_per_layer"]
    # Chance is 1/3; the keyword task is learnable from layer 1 by mean-pooled exits trained with the backbone.
    assert accuracy[0] > 0.6 and accuracy[1] > 0.6, accuracy
    assert json.loads((folder / "config.json").read_text())["id2label"] == {"0": "alpha", "1": "beta", "2": "gamma"}


def test_two_stage_training_leaves_the_classifier_untouched():
    from transformers import AutoModelForSequenceClassification

    joint = trained_checkpoint("bert", "joint")  # a fine-tuned classifier with the task's labels
    before = AutoModelForSequenceClassification.from_pretrained(joint).state_dict()
    from optimum_dynexec.early_exit.training import train_exits

    output = joint.parent / "two-stage-on-joint"
    train_exits(str(joint), *synthetic_task(64, 3), *synthetic_task(30, 4), output,
                ExitTrainingArguments(scheme="two-stage", epochs=1, batch_size=16))
    after = AutoModelForSequenceClassification.from_pretrained(output).state_dict()
    assert all(torch.equal(before[name], after[name]) for name in before)
    old_heads = load_file(str(joint / "exits" / "exit_heads.safetensors"))
    new_heads = load_file(str(output / "exits" / "exit_heads.safetensors"))
    assert not all(torch.equal(old_heads[name], new_heads[name]) for name in old_heads)


def test_loading_a_checkpoint_restores_heads_and_config():
    encoder, heads, config = load_exit_checkpoint(trained_checkpoint("bert", "joint"))
    assert len(heads) == config.num_layers - 1 == encoder.num_layers - 1


@pytest.mark.parametrize(
    "arguments, message",
    [({"scheme": "pabee"}, "scheme"), ({"pooling": "max"}, "pooling"), ({"distillation_weight": 2}, "distillation")],
)
def test_bad_training_arguments_name_the_argument(arguments, message):
    with pytest.raises(ValueError, match=message):
        ExitTrainingArguments(**arguments)


def test_unsupported_family_is_refused_with_the_supported_list():
    from transformers import GPT2Config, GPT2ForSequenceClassification

    model = GPT2ForSequenceClassification(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50))
    with pytest.raises(ValueError, match="BERT, RoBERTa .*, ALBERT, DistilBERT or ELECTRA"):
        LayeredEncoder(model)
