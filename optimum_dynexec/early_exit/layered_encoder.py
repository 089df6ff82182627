"""A transformers sequence classifier seen as a stack: embeddings, then one layer at a time, then its classifier.

Training (every exit sees the hidden states of its layer) and export (one OpenVINO segment per layer) both go
through this one view, so what is trained is exactly what is exported. One small adapter per model family says
where that family keeps its embeddings, layers and classifier.
"""

from typing import Callable, Dict

import torch
from torch import nn

SUPPORTED_MODEL_TYPES = ("bert", "roberta", "xlm-roberta", "camembert", "albert", "distilbert", "electra")
_SAME_LAYOUT = {"xlm-roberta": "roberta", "camembert": "roberta"}


def additive_attention_mask(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[batch, seq] 0/1 mask -> [batch, 1, 1, seq] additive mask that eager attention adds to the scores."""
    keep = attention_mask[:, None, None, :].to(dtype)
    return (1.0 - keep) * torch.finfo(dtype).min


class LayeredEncoder(nn.Module):
    """Wraps a `*ForSequenceClassification` model of a supported family.

    `embed(input_ids, token_type_ids)` -> hidden states; `run_layer(index, hidden, attention_mask)` -> hidden
    states after layer `index` (0-based); `classify(hidden, attention_mask)` -> the model's own logits.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        model_type = model.config.model_type
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise ValueError(
                f"Early exit supports the model types {SUPPORTED_MODEL_TYPES}; got {model_type!r}. "
                "Pass a BERT, RoBERTa (XLM-R, CamemBERT), ALBERT, DistilBERT or ELECTRA sequence classifier."
            )
        self.model = model
        self.model_type = model_type
        self.num_layers = model.config.num_hidden_layers
        self.hidden_size = model.config.hidden_size
        family = _SAME_LAYOUT.get(model_type, model_type)
        self._embed, self._layer, self._classify = _FAMILIES[family](model)
        self.uses_token_type_ids = model_type in ("bert", "albert", "electra")

    def embed(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor = None) -> torch.Tensor:
        return self._embed(input_ids, token_type_ids)

    def run_layer(self, index: int, hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = additive_attention_mask(attention_mask, hidden_states.dtype)
        output = self._layer(index)(hidden_states, mask)
        return output[0] if isinstance(output, tuple) else output

    def classify(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self._classify(hidden_states)


def _bert(model):
    def embed(input_ids, token_type_ids):
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        return model.bert.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)

    def classify(hidden):
        return model.classifier(model.dropout(model.bert.pooler(hidden)))

    return embed, lambda index: model.bert.encoder.layer[index], classify


def _roberta(model):
    backbone = model.roberta if hasattr(model, "roberta") else model.base_model

    def embed(input_ids, token_type_ids):
        # RoBERTa derives position ids from input_ids (padding_idx), so right/left padding is handled as in HF.
        return backbone.embeddings(input_ids=input_ids)

    return embed, lambda index: backbone.encoder.layer[index], lambda hidden: model.classifier(hidden)


def _albert(model):
    albert = model.albert
    config = model.config

    def embed(input_ids, token_type_ids):
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        embedded = albert.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
        return albert.encoder.embedding_hidden_mapping_in(embedded)

    def layer(index):
        # ALBERT shares weights: layer `index` runs the group that HF's AlbertTransformer assigns to it.
        group = int(index / (config.num_hidden_layers / config.num_hidden_groups))
        return albert.encoder.albert_layer_groups[group]

    def classify(hidden):
        pooled = albert.pooler_activation(albert.pooler(hidden[:, 0]))
        return model.classifier(model.dropout(pooled))

    return embed, layer, classify


def _distilbert(model):
    def embed(input_ids, token_type_ids):
        return model.distilbert.embeddings(input_ids)

    def classify(hidden):
        pooled = nn.functional.relu(model.pre_classifier(hidden[:, 0]))
        return model.classifier(model.dropout(pooled))

    return embed, lambda index: model.distilbert.transformer.layer[index], classify


def _electra(model):
    electra = model.electra

    def embed(input_ids, token_type_ids):
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        embedded = electra.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
        # A checkpoint whose embedding size differs from its hidden size projects up, as ElectraModel does.
        return electra.embeddings_project(embedded) if hasattr(electra, "embeddings_project") else embedded

    return embed, lambda index: electra.encoder.layer[index], lambda hidden: model.classifier(hidden)


_FAMILIES: Dict[str, Callable] = {"bert": _bert, "roberta": _roberta, "albert": _albert, "distilbert": _distilbert,
                                  "electra": _electra}
