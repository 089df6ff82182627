"""The exit head put after an encoder layer: pool the tokens, one tanh dense layer, a linear classifier."""

import torch
from torch import nn


class ExitHead(nn.Module):
    """Classifier on the hidden states of one intermediate layer.

    `pooling="mean"` averages the real tokens only (the attention mask weights the sum), so padding a row
    inside a batch does not change its features; `pooling="cls"` takes the first token like BERT's pooler.
    """

    def __init__(self, hidden_size: int, num_labels: int, pooling: str = "mean", dropout: float = 0.1):
        super().__init__()
        self.pooling = pooling
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_size, num_labels)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.pooling == "mean":
            weights = attention_mask.unsqueeze(-1).to(hidden_states.dtype)
            pooled = (hidden_states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
        else:
            pooled = hidden_states[:, 0]
        return self.classifier(self.dropout(torch.tanh(self.dense(pooled))))


def build_exit_heads(hidden_size: int, num_labels: int, num_layers: int, pooling: str) -> nn.ModuleList:
    """One head per layer except the last (whose exit is the model's own classifier)."""
    return nn.ModuleList(ExitHead(hidden_size, num_labels, pooling) for _ in range(num_layers - 1))
